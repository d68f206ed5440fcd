//! `dialtone events tail`: the log's events as they are appended, read from the log itself
//! (every account: an operator's tool), filtered like the stream API.

use std::collections::VecDeque;
use std::process::ExitCode;

use dialtone_events::describe::{short_type, summary};
use dialtone_events::envelope::format_time;
use dialtone_events::{Cursor, Filter, RecordedEvent};
use dialtone_streams::StreamFilter;

use super::source::LogArgs;

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Only this account's events.
    #[arg(long)]
    pub account: Option<String>,
    /// Only these types (exact, or a family such as `dialtone.call.*`; repeatable).
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Only this stream (`CA…`, `PN…`, …).
    #[arg(long)]
    pub subject: Option<String>,
    /// Start after this position (an event id of the stream API, `0` for the beginning).
    #[arg(long)]
    pub from: Option<String>,
    /// Without --from: how many of the latest events to show first.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub lines: usize,
    /// Keep going: print events as they are appended (Ctrl-C stops).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// One JSON object per line: `{"position":…,"event":{CloudEvent}}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub log: LogArgs,
}

fn print(recorded: &RecordedEvent, position: &str, json: bool) {
    let event = &recorded.event;
    if json {
        println!(
            "{{\"position\":{},\"event\":{}}}",
            serde_json::Value::from(position),
            event.to_json()
        );
    } else {
        println!(
            "{position:>10}  {}  {:<34} {}  {}",
            format_time(event.time),
            short_type(&event.event_type),
            event.subject,
            summary(event)
        );
    }
}

pub async fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let filter = StreamFilter::parse(
        args.types.iter().map(String::as_str),
        args.subject.as_deref(),
    )?;
    let source = args.log.open().await?;
    let log = source.log.clone();
    let wanted = |r: &RecordedEvent| {
        args.account
            .as_deref()
            .is_none_or(|a| a == r.event.accountsid)
            && filter.matches(&r.event)
    };
    let mut cursor = match &args.from {
        Some(token) => log.parse_position(token)?,
        None => Cursor::start(),
    };
    // Catch up to the head: everything after --from, or the last --lines events.
    let head = log.head().await?;
    let mut latest: VecDeque<(RecordedEvent, String)> = VecDeque::new();
    let reached = |cursor: &Cursor| {
        head.0
            .iter()
            .all(|(partition, next)| cursor.next_offset(partition) >= *next)
    };
    if args.from.is_some() || !args.follow || args.lines > 0 {
        while !reached(&cursor) {
            let page = log.read_all(&cursor, 5_000).await?;
            if page.is_empty() {
                break;
            }
            for recorded in page {
                cursor.advance(&recorded.position);
                if !wanted(&recorded) {
                    continue;
                }
                let position = log.position_token(&cursor);
                if args.from.is_some() {
                    print(&recorded, &position, args.json);
                } else {
                    latest.push_back((recorded, position));
                    if latest.len() > args.lines {
                        latest.pop_front();
                    }
                }
            }
        }
    } else {
        cursor = head;
    }
    for (recorded, position) in &latest {
        print(recorded, position, args.json);
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut subscription = log.subscribe(cursor.clone(), Filter::all()).await?;
    loop {
        tokio::select! {
            next = subscription.next() => match next {
                Some(Ok(recorded)) => {
                    cursor.advance(&recorded.position);
                    if wanted(&recorded) {
                        print(&recorded, &log.position_token(&cursor), args.json);
                    }
                }
                Some(Err(error)) => return Err(error.into()),
                None => return Ok(ExitCode::SUCCESS),
            },
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}
