//! One conference room across the cluster: two callers of one conference name, one on each
//! voice node of a Kafka cluster, meet in one room held by one node (named in the log); the
//! other node links its caller to it, and they hear each other. A REST participant update
//! sent for the linked caller reaches the room.

use std::time::{Duration, SystemTime};

use dialtone_media::codec::Codec;
use dialtone_tests::rtp::loudest_second;
use dialtone_tests::{eventually, Dialtone, NodeOptions, RtpSink, Sipp, TwimlApp};
use serde_json::Value;

const NUMBER: &str = "+14155550177";
const LIVENESS: &str = "[cluster]\nheartbeat_ms = 300\nlease_ms = 1500\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callers_on_two_nodes_meet_in_one_room() {
    let node = |id: &str, first| NodeOptions {
        extra_toml: LIVENESS.to_owned(),
        ..NodeOptions::member("rooms", id, first)
    };
    let one = Dialtone::start_node(node("voice-1", None)).await;
    let two = Dialtone::start_node(node("voice-2", Some(&one))).await;

    let app = TwimlApp::start().await;
    app.set_auth_token(&one.auth_token);
    // No beep and a silent wait: what a caller hears is the other caller, or nothing.
    app.twiml(
        "/voice",
        r#"<Response><Dial><Conference beep="false" waitUrl="">standup</Conference></Dial></Response>"#,
    );
    one.provision(NUMBER, &app.url("/voice"), None).await;
    // The second node learns the number, and each node the other's heartbeat, from the log.
    eventually(20, "the second node to know the number", || async {
        let (_, numbers) = two.get("IncomingPhoneNumbers.json").await;
        (numbers["incoming_phone_numbers"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let sinks = [RtpSink::start(), RtpSink::start()];
    let mut callers = Vec::new();
    for (i, (node, sink)) in [&one, &two].into_iter().zip(&sinks).enumerate() {
        let caller = Sipp::scenario("inbound_call.xml")
            .key("dialed", NUMBER)
            .key("rtp_port", sink.port)
            .pause_ms(8_000 - 1_000 * i as u64)
            .run(node.sip_addr());
        callers.push(tokio::spawn(caller));
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }

    // One room, in progress, with both callers, whichever node took them.
    let (room, participants) = eventually(10, "one room with both callers", || async {
        let (_, rooms) = one
            .get("Conferences.json?FriendlyName=standup&Status=in-progress")
            .await;
        let rooms = rooms["conferences"].as_array().cloned().unwrap_or_default();
        let [room] = rooms.as_slice() else {
            return None;
        };
        let sid = room["sid"].as_str()?.to_owned();
        let (_, body) = one
            .get(&format!("Conferences/{sid}/Participants.json"))
            .await;
        let list = body["participants"].as_array().cloned().unwrap_or_default();
        (list.len() == 2).then_some((room.clone(), list))
    })
    .await;
    let all_joined = SystemTime::now();
    let conference_sid = room["sid"].as_str().unwrap().to_owned();
    let (_, rooms) = two.get("Conferences.json?FriendlyName=standup").await;
    assert_eq!(
        rooms["conferences"].as_array().map(Vec::len),
        Some(1),
        "the other node opened no room of its own: {rooms}"
    );

    // The log names the room's owner (its `conference.started`, as the read model holds
    // it); the calls are owned by the nodes they came in on.
    let owner: String = rusqlite::Connection::open(two.read_models_path())
        .unwrap()
        .query_row(
            "SELECT owner_node FROM conferences WHERE sid = ?1",
            [&conference_sid],
            |r| r.get(0),
        )
        .unwrap();
    assert!(owner == "voice-1" || owner == "voice-2", "{owner}");
    let mut call_owners = Vec::new();
    for participant in &participants {
        let call = participant["call_sid"].as_str().unwrap();
        let call_events = one.call_events(call).await;
        call_owners.push((
            call.to_owned(),
            call_events[0]["data"]["owner_node"]
                .as_str()
                .unwrap()
                .to_owned(),
        ));
    }
    let mut nodes: Vec<&str> = call_owners.iter().map(|(_, n)| n.as_str()).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, ["voice-1", "voice-2"], "{call_owners:?}");
    let (linked, _) = call_owners
        .iter()
        .find(|(_, n)| *n != owner)
        .expect("a caller of the other node");
    let (holder, linker) = if owner == "voice-1" {
        (&one, &two)
    } else {
        (&two, &one)
    };
    let seated = holder.metrics().await;
    assert!(
        seated.contains("dialtone_room_links_total{result=\"seated\"} 1"),
        "{seated}"
    );
    let linked_metrics = linker.metrics().await;
    assert!(
        linked_metrics.contains("dialtone_room_links_total{result=\"linked\"} 1"),
        "{linked_metrics}"
    );

    // A REST update of the linked caller goes through its node to the room's.
    let (code, body) = one
        .post(
            &format!("Conferences/{conference_sid}/Participants/{linked}.json"),
            &[("Hold", "false")],
        )
        .await;
    assert_eq!(code, 200, "{body}");

    for (i, caller) in callers.into_iter().enumerate() {
        let run = caller.await.unwrap();
        run.assert_success(&format!("caller {i}"), if i == 0 { &one } else { &two });
    }
    for (i, sink) in sinks.iter().enumerate() {
        let heard = loudest_second(&sink.audio_since(
            Codec::Pcma,
            8,
            all_joined + Duration::from_millis(300),
        ));
        assert!(
            heard > 500.0,
            "caller {i} heard nobody (RMS {heard:.0})\n{}\n{}",
            one.log(),
            two.log()
        );
    }

    // Both leave the one room, which then ends.
    let ended = eventually(20, "the room to end", || async {
        let (_, room) = one.get(&format!("Conferences/{conference_sid}.json")).await;
        (room["status"] == "completed").then_some(room)
    })
    .await;
    assert_eq!(ended["reason_conference_ended"], "last-participant-left");
    // The linked caller's call goes on after its <Dial> and completes on its own node.
    let call = eventually(20, "the linked call to complete", || async {
        let (_, call) = one.get(&format!("Calls/{linked}.json")).await;
        (call["status"] == "completed").then_some(call)
    })
    .await;
    let events = one.call_events(linked).await;
    let completed: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "dialtone.call.completed")
        .collect();
    assert_eq!(completed.len(), 1, "{call}");
}
