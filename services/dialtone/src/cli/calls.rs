//! `dialtone calls history CA…`: one call's timeline, read from the log: offset from the
//! start, event, key facts, the child legs it dialed, and its charge.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use dialtone_events::describe::{short_type, summary};
use dialtone_events::{Payload, RecordedEvent};
use dialtone_projections::billing::{format_micros, get_leg, BillingProjection};
use dialtone_projections::calls::CallsProjection;
use dialtone_projections::replay::{rate_events, sort_log_order, Replay, Until};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::source::{LogArgs, Source};

/// Legs dialed from legs dialed from … at most this deep.
const MAX_DEPTH: usize = 4;

struct Leg {
    sid: String,
    events: Vec<RecordedEvent>,
    charge: Option<Charge>,
    children: Vec<Leg>,
}

type LegFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Leg>> + Send + 'a>>;

/// A leg's events and, recursively, the legs it dialed.
fn read_leg<'a>(source: &'a Source, sid: &'a str, depth: usize) -> LegFuture<'a> {
    Box::pin(async move {
        let events = source.log.read_stream(sid, 1).await?;
        let mut children = Vec::new();
        if depth < MAX_DEPTH {
            for recorded in &events {
                if let Ok(Payload::DialStarted(dial)) = recorded.event.payload() {
                    for child in &dial.child_call_sids {
                        children.push(read_leg(source, child.as_str(), depth + 1).await?);
                    }
                }
            }
        }
        Ok(Leg {
            sid: sid.to_owned(),
            events,
            charge: None,
            children,
        })
    })
}

/// The charge of every leg, from a replay of its events and the rate tables (never from the
/// read models' billing).
#[derive(Clone)]
struct Charge {
    minutes: u64,
    category: String,
    per_minute_micros: i64,
    price_micros: i64,
    currency: String,
    rated_by: String,
}

async fn charges(source: &Source, legs: &[&Leg]) -> anyhow::Result<Vec<Option<Charge>>> {
    let read_models = source.read_models();
    let mut events = rate_events(source.log.as_ref(), read_models.as_ref(), &Until::Now).await?;
    for leg in legs {
        events.extend(leg.events.iter().cloned());
    }
    sort_log_order(&mut events);
    let config = source.config.rate_table()?;
    let sids: Vec<String> = legs.iter().map(|l| l.sid.clone()).collect();
    let charges = tokio::task::spawn_blocking(move || {
        let mut replay = Replay::new(vec![
            Box::new(CallsProjection::new()),
            Box::new(BillingProjection::new(config)),
        ])?;
        replay.apply(&events)?;
        sids.iter()
            .map(|sid| {
                Ok(get_leg(replay.connection(), sid)?
                    .and_then(|leg| leg.charge)
                    .map(|c| Charge {
                        minutes: c.minutes,
                        category: c.category,
                        per_minute_micros: c.per_minute_micros,
                        price_micros: c.price_micros,
                        currency: c.currency,
                        rated_by: c.rated_by,
                    }))
            })
            .collect::<Result<Vec<_>, dialtone_projections::ProjectionError>>()
    })
    .await??;
    Ok(charges)
}

fn flatten<'a>(leg: &'a Leg, out: &mut Vec<&'a Leg>) {
    out.push(leg);
    for child in &leg.children {
        flatten(child, out);
    }
}

fn offset_ms(start: OffsetDateTime, t: OffsetDateTime) -> i64 {
    (t - start).whole_milliseconds() as i64
}

fn charge_line(charge: &Option<Charge>) -> String {
    match charge {
        Some(c) => format!(
            "{} min {} × {} {} = {} {} (rated by {})",
            c.minutes,
            c.category,
            format_micros(c.per_minute_micros, 6),
            c.currency,
            format_micros(c.price_micros, 6),
            c.currency,
            c.rated_by
        ),
        None => "none (not answered, or not ended yet)".to_owned(),
    }
}

fn fill_charges(leg: &mut Leg, charges: &mut impl Iterator<Item = Option<Charge>>) {
    leg.charge = charges.next().flatten();
    for child in &mut leg.children {
        fill_charges(child, charges);
    }
}

fn print_leg(leg: &Leg, start: OffsetDateTime, indent: usize) {
    let pad = " ".repeat(indent);
    let first = leg.events.first().map(|r| &r.event);
    let header = first
        .map(|e| format!("{} · account {}", summary(e), e.accountsid))
        .unwrap_or_default();
    println!("{pad}call {} · {header}", leg.sid);
    for recorded in &leg.events {
        let event = &recorded.event;
        println!(
            "{pad}  {:>+10.3}s  {:<34} {}",
            offset_ms(start, event.time) as f64 / 1000.0,
            short_type(&event.event_type),
            summary(event)
        );
    }
    println!("{pad}  charge: {}", charge_line(&leg.charge));
    for child in &leg.children {
        println!();
        print_leg(child, start, indent + 4);
    }
}

fn leg_json(leg: &Leg, start: OffsetDateTime) -> Value {
    let events: Vec<Value> = leg
        .events
        .iter()
        .map(|r| {
            json!({
                "offset_ms": offset_ms(start, r.event.time),
                "type": r.event.event_type,
                "summary": summary(&r.event),
                "event": serde_json::from_str::<Value>(&r.event.to_json()).unwrap_or(Value::Null),
            })
        })
        .collect();
    let charge = leg.charge.as_ref().map(|c| {
        json!({
            "minutes": c.minutes,
            "category": c.category,
            "per_minute_micros": c.per_minute_micros,
            "price_micros": c.price_micros,
            "price": format_micros(c.price_micros, 6),
            "currency": c.currency,
            "rated_by": c.rated_by,
        })
    });
    let children: Vec<Value> = leg.children.iter().map(|c| leg_json(c, start)).collect();
    json!({
        "call_sid": leg.sid,
        "account_sid": leg.events.first().map(|r| r.event.accountsid.clone()),
        "events": events,
        "charge": charge,
        "children": children,
    })
}

pub async fn history(
    call_sid: &str,
    json_output: bool,
    args: &LogArgs,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        dialtone_events::sid::CallSid::parse(call_sid).is_ok(),
        "{call_sid:?} is not a call SID (CA followed by 32 hex digits)"
    );
    let source = args.open().await?;
    let mut root = read_leg(&source, call_sid, 0).await?;
    let Some(start) = root.events.first().map(|r| r.event.time) else {
        eprintln!("no call {call_sid} in the log");
        return Ok(ExitCode::from(1));
    };
    let mut legs = Vec::new();
    flatten(&root, &mut legs);
    let charges = charges(&source, &legs).await?;
    fill_charges(&mut root, &mut charges.into_iter());
    if json_output {
        println!("{}", leg_json(&root, start));
    } else {
        print_leg(&root, start, 0);
    }
    Ok(ExitCode::SUCCESS)
}
