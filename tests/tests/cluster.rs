//! Two nodes on one Kafka log, each running one role group (`--roles api,projector` and
//! `--roles edge,voice,media`): a REST command sent to the API node reaches the voice node
//! that owns the call, through the log; each process reports its roles on `/healthz` and
//! `/metrics`, and serves nothing else of a role it does not run.

use dialtone_tests::{eventually, Dialtone, NodeOptions, RtpSink, Sipp, TwimlApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_hangup_on_one_node_ends_a_call_owned_by_another() {
    let node = |id: &str, roles: &str, first| NodeOptions {
        roles: Some(roles.to_owned()),
        ..NodeOptions::member("cluster", id, first)
    };
    let api = Dialtone::start_node(node("node-api", "api,projector", None)).await;
    let edge = Dialtone::start_node(node("node-edge", "edge,voice,media", Some(&api))).await;

    // Each process says what it runs, for its load balancer and for Prometheus.
    let health = |node: &Dialtone| {
        let url = format!("{}/healthz", node.http_url);
        async move { reqwest::get(url).await.unwrap().text().await.unwrap() }
    };
    assert!(health(&api)
        .await
        .contains("roles: api,projector\nlog: kafka (ok)"));
    assert!(health(&edge)
        .await
        .contains("roles: voice\nlog: kafka (ok)"));
    assert!(api
        .metrics()
        .await
        .contains("dialtone_role{role=\"api\"} 1"));
    let edge_metrics = edge.metrics().await;
    assert!(
        edge_metrics.contains("dialtone_role{role=\"voice\"} 1"),
        "{edge_metrics}"
    );
    assert!(!edge_metrics.contains("dialtone_role{role=\"api\"}"));
    // The voice node serves no API.
    let (status, _) = edge.get("Calls.json").await;
    assert_eq!(status, 404);

    let app = TwimlApp::start().await;
    app.set_auth_token(&api.auth_token);
    app.twiml(
        "/voice",
        r#"<Response><Say>Please hold.</Say><Pause length="60"/></Response>"#,
    );
    api.provision("+14155550100", &app.url("/voice"), None)
        .await;
    // The edge node learns the number from the log (it answers no API to ask it).
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    // The call comes in at the edge node, which owns it.
    let rtp = RtpSink::start();
    let caller = Sipp::scenario("inbound_dialtone_hangs_up.xml")
        .key("dialed", "+14155550100")
        .key("rtp_port", rtp.port)
        .run(edge.sip_addr());
    let caller = tokio::spawn(caller);
    let call = eventually(30, "the API node to see the call answered", || async {
        api.calls()
            .await
            .into_iter()
            .find(|c| c["status"] == "in-progress")
    })
    .await;
    let sid = call["sid"].as_str().unwrap().to_owned();
    let events = api.call_events(&sid).await;
    assert_eq!(events[0]["data"]["owner_node"], "node-edge");

    // Hang it up through the other node's API.
    let (code, updated) = api
        .post(&format!("Calls/{sid}.json"), &[("Status", "completed")])
        .await;
    assert_eq!(code, 200, "{updated}\n{}", edge.log());
    let caller = caller.await.unwrap();
    caller.assert_success("the caller got no BYE", &edge);
    let ended = eventually(20, "the call to complete", || async {
        let (_, call) = api.get(&format!("Calls/{sid}.json")).await;
        (call["status"] == "completed").then_some(call)
    })
    .await;
    assert_eq!(ended["direction"], "inbound");
    let events = api.call_events(&sid).await;
    let completed = events.last().unwrap();
    assert_eq!(completed["type"], "dialtone.call.completed");
    assert_eq!(completed["data"]["hangup_by"], "api");
    assert_eq!(completed["source"], "dialtone://node-edge");

    // An outbound call through the API node, which has no voice role: a live voice node
    // places it.
    app.twiml("/outbound", r#"<Response><Say>Hello.</Say></Response>"#);
    let callee_rtp = RtpSink::start();
    let callee = Sipp::scenario("callee_answer.xml").key("rtp_port", callee_rtp.port);
    let to = format!("sip:callee@127.0.0.1:{}", callee.port());
    let callee = callee.spawn_uas();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let outbound = app.url("/outbound");
    let (code, call) = api
        .post(
            "Calls.json",
            &[
                ("To", to.as_str()),
                ("From", "+14155550100"),
                ("Url", outbound.as_str()),
            ],
        )
        .await;
    assert_eq!(code, 201, "{call}\n{}", edge.log());
    assert_eq!(call["status"], "queued");
    let sid = call["sid"].as_str().unwrap().to_owned();
    callee.await.unwrap().assert_success("the callee", &edge);
    eventually(20, "the outbound call to complete", || async {
        let (_, call) = api.get(&format!("Calls/{sid}.json")).await;
        (call["status"] == "completed").then_some(())
    })
    .await;
    let events = api.call_events(&sid).await;
    assert_eq!(events[0]["data"]["owner_node"], "node-edge");
    assert_eq!(events[0]["source"], "dialtone://node-api");
    assert!(
        events[1..]
            .iter()
            .all(|e| e["source"] == "dialtone://node-edge"),
        "{events:?}"
    );
    assert_eq!(app.requests_to("/outbound").len(), 1);
    // SIP credentials are never written to the log: such calls need a voice node's API.
    let (code, body) = api
        .post(
            "Calls.json",
            &[
                ("To", to.as_str()),
                ("From", "+14155550100"),
                ("Url", outbound.as_str()),
                ("SipAuthUsername", "u"),
                ("SipAuthPassword", "p"),
            ],
        )
        .await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("never written to the log"),
        "{body}"
    );
}
