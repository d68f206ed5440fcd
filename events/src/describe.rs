//! One line of key facts per event, for people: `dialtone calls history`, `events tail` and
//! the console's timelines. The JSON stays the record; this is only its reading aid.

use crate::envelope::Event;
use crate::payload::{ApplicationCreated, ApplicationUpdated, DtmfSource, Payload};

fn quoted(text: &str, max: usize) -> String {
    let mut short: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        short.push('…');
    }
    format!("{short:?}")
}

fn opt<T: std::fmt::Display>(label: &str, value: &Option<T>) -> String {
    value
        .as_ref()
        .map(|v| format!(", {label} {v}"))
        .unwrap_or_default()
}

/// The event's type without the `dialtone.` prefix (`call.answered`).
pub fn short_type(event_type: &str) -> &str {
    event_type.strip_prefix("dialtone.").unwrap_or(event_type)
}

/// The key facts of `event` on one line (no type, no time).
pub fn summary(event: &Event) -> String {
    let payload = match event.payload() {
        Ok(payload) => payload,
        Err(error) => return format!("(undecodable: {error})"),
    };
    match payload {
        Payload::CallInitiated(p) => format!(
            "{} {} → {}, owner {}{}{}{}",
            p.direction.as_str(),
            p.from,
            p.to,
            p.owner_node,
            opt("SIP Call-ID", &p.sip_call_id),
            opt("from", &p.source_addr),
            opt("parent", &p.parent_call_sid)
        ),
        Payload::CallRinging(p) => p.sip_code.map(|c| format!("SIP {c}")).unwrap_or_default(),
        Payload::CallAnswered(p) => p.codec.map(|c| format!("codec {c}")).unwrap_or_default(),
        Payload::WebhookRequested(p) => format!(
            "#{} {} {} {} ({} params{})",
            p.request_id,
            format!("{:?}", p.purpose).to_lowercase(),
            p.method.as_str(),
            p.url,
            p.params.len(),
            if p.attempt > 1 {
                format!(", attempt {}", p.attempt)
            } else {
                String::new()
            }
        ),
        Payload::WebhookResponded(p) => {
            let status = p
                .status
                .map(|s| format!("HTTP {s}"))
                .unwrap_or_else(|| "no response".to_owned());
            format!(
                "#{} {status} in {} ms{}{}{}",
                p.request_id,
                p.latency_ms,
                opt("type", &p.content_type),
                p.body
                    .as_ref()
                    .map(|b| format!(", {} bytes", b.len()))
                    .unwrap_or_default(),
                opt("error", &p.error)
            )
        }
        Payload::TwimlFailed(p) => {
            format!("error {} ({}) at {}: {}", p.code, p.class, p.url, p.message)
        }
        Payload::TwimlWarning(p) => {
            format!("warning {}: {}{}", p.code, p.message, opt("verb", &p.verb))
        }
        Payload::VerbStarted(p) => format!("<{}> #{}", p.verb, p.index),
        Payload::VerbFinished(p) => format!("<{}> #{}: {}", p.verb, p.index, p.outcome),
        Payload::DtmfReceived(p) => format!(
            "digit {} ({})",
            p.digit,
            match p.source {
                DtmfSource::Rfc4733 => "rfc4733",
                DtmfSource::Inband => "in-band",
                DtmfSource::SipInfo => "SIP INFO",
            }
        ),
        Payload::GatherCompleted(p) => format!("digits {:?}, {}", p.digits, p.reason),
        Payload::RecordingStarted(p) => format!(
            "{} ({}, {} channel(s))",
            p.recording_sid, p.source, p.channels
        ),
        Payload::RecordingCompleted(p) => format!(
            "{} {}, {} ms{}",
            p.recording_sid,
            p.status,
            p.duration_ms,
            opt("error", &p.error_code)
        ),
        Payload::RecordingDeleted(p) => format!("{}", p.recording_sid),
        Payload::DialStarted(p) => format!(
            "{} → legs {}",
            p.targets.join(", "),
            p.child_call_sids
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Payload::DialAnswered(p) => format!("by {}", p.child_call_sid),
        Payload::DialCompleted(p) => format!(
            "{}, {} s{}{}",
            p.dial_call_status,
            p.duration_s,
            if p.bridged { ", bridged" } else { "" },
            opt("leg", &p.child_call_sid)
        ),
        Payload::CallRedirected(p) => format!("{} {} (by {})", p.method.as_str(), p.url, p.by),
        Payload::CallRejected(p) => format!("{}, SIP {}", p.reason, p.sip_code),
        Payload::CallCompleted(p) => format!(
            "{}, {} s answered ({} ms), hung up by {}{}",
            p.status.as_str(),
            p.duration_s,
            p.answered_ms,
            p.hangup_by,
            opt("SIP", &p.sip_code)
        ),
        Payload::CallbackDelivered(p) => format!(
            "{} → {} HTTP {} after {} attempt(s)",
            p.event, p.url, p.status, p.attempts
        ),
        Payload::CallbackFailed(p) => format!(
            "{} → {} given up after {} attempt(s): {}",
            p.event, p.url, p.attempts, p.error
        ),
        Payload::MediaSay(p) => {
            format!("say {} ({}, {})", quoted(&p.text, 60), p.voice, p.language)
        }
        Payload::MediaPlay(p) => match (&p.url, &p.digits) {
            (Some(url), _) => format!("play {url}"),
            (None, Some(digits)) => format!("play digits {digits}"),
            _ => "play".to_owned(),
        },
        Payload::MediaPause(p) => format!("pause {} ms", p.length_ms),
        Payload::MediaGather(p) => format!(
            "gather (timeout {} ms, finish on {:?}{})",
            p.timeout_ms,
            p.finish_on_key,
            opt("digits", &p.num_digits)
        ),
        Payload::MediaRecord(p) => {
            format!("record {} (max {} ms)", p.recording_sid, p.max_length_ms)
        }
        Payload::MediaBridge(p) => format!("bridge with {}", p.other_call_sid),
        Payload::MediaHangup(p) => format!("hang up{}", opt("reason", &p.reason)),
        Payload::MediaStop(p) => format!("stop{}", opt("reason", &p.reason)),
        Payload::NumberProvisioned(p) => format!(
            "{} → {}",
            p.config.phone_number,
            p.config.voice_url.as_deref().unwrap_or("(no voice URL)")
        ),
        Payload::NumberUpdated(p) => format!(
            "{} → {}",
            p.config.phone_number,
            p.config.voice_url.as_deref().unwrap_or("(no voice URL)")
        ),
        Payload::NumberReleased(p) => p.phone_number,
        Payload::AccountCredited(p) => format!(
            "{} {}{}",
            crate::describe::micros(p.amount_micros),
            p.currency,
            p.reference
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        Payload::AccountBillingPlanSet(p) => match p.credit_limit_micros {
            Some(limit) => format!(
                "{}, credit limit {}",
                p.plan,
                crate::describe::micros(limit)
            ),
            None => p.plan,
        },
        Payload::NumberStocked(p) => format!(
            "{} ({} {}) in stock",
            p.phone_number, p.iso_country, p.number_type
        ),
        Payload::AccountCreated(p) => format!("{:?}", p.friendly_name),
        Payload::AccountTokenRotated(_) => "auth token rotated".to_owned(),
        Payload::AccountUpdated(p) => format!(
            "{}{}",
            p.friendly_name
                .as_ref()
                .map(|n| format!("name {n:?} "))
                .unwrap_or_default(),
            p.status
                .as_ref()
                .map(|s| format!("status {s}"))
                .unwrap_or_default()
        ),
        Payload::ApiKeyCreated(p) => format!("key {} {:?}", p.key_sid, p.friendly_name),
        Payload::ApiKeyUpdated(p) => format!("key {} {:?}", p.key_sid, p.friendly_name),
        Payload::ApiKeyDeleted(p) => format!("key {} deleted", p.key_sid),
        Payload::ApplicationCreated(ApplicationCreated {
            application_sid,
            config,
        })
        | Payload::ApplicationUpdated(ApplicationUpdated {
            application_sid,
            config,
        }) => format!(
            "application {application_sid} {:?}{}",
            config.friendly_name,
            opt("voice", &config.voice_url)
        ),
        Payload::ApplicationDeleted(p) => format!("application {} deleted", p.application_sid),
        Payload::RatePublished(p) => format!(
            "{} prices in {} from {}",
            p.prices.len(),
            p.currency,
            crate::envelope::format_time(p.effective_from)
        ),
        Payload::ConferenceStarted(p) => format!("{:?}", p.friendly_name),
        Payload::ParticipantJoined(p) => {
            format!("{}{}", p.call_sid, if p.muted { " (muted)" } else { "" })
        }
        Payload::ParticipantLeft(p) => p.call_sid.to_string(),
        Payload::ParticipantUpdated(p) => {
            format!("{} muted {} hold {}", p.call_sid, p.muted, p.hold)
        }
        Payload::ConferenceEnded(p) => p.reason,
        Payload::CallControlRequested(p) => {
            format!("{} on {} ({:?})", p.call_sid, p.owner_node, p.action)
        }
        Payload::CommandCompleted(p) => format!(
            "{} by {}{}",
            if p.ok { "done" } else { "refused" },
            p.node,
            opt("", &p.error)
        ),
        Payload::SinkCreated(p) => format!("{} → {}", p.sink_type, p.destination),
        Payload::SinkUpdated(p) => format!("{:?}", p.description),
        Payload::SinkDeleted(_) => String::new(),
        Payload::SubscriptionCreated(p) => format!(
            "{} ← {}",
            p.sink_sid,
            p.types
                .iter()
                .map(|t| t.event_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Payload::SubscriptionUpdated(_) | Payload::SubscriptionDeleted(_) => String::new(),
        Payload::SinkDelivered(p) => format!(
            "{} event(s) HTTP {} in {} ms after {} attempt(s)",
            p.events, p.status, p.latency_ms, p.attempts
        ),
        Payload::SinkFailed(p) => format!(
            "{} event(s) given up after {} attempt(s): {}",
            p.events, p.attempts, p.error
        ),
        Payload::NodeHeartbeat(p) => format!("{} lease {} ms", p.node, p.lease_ms),
        Payload::NodeStopped(p) => p.node,
        Payload::CallAdopted(p) => format!(
            "{} → {} ({}), owner last seen {}",
            p.owner_node,
            p.by_node,
            p.reason,
            p.last_heartbeat
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        ),
        Payload::Unknown { data, .. } => quoted(&data.to_string(), 80),
    }
}

/// Micro-units as a decimal (`1150000` → `1.15`).
fn micros(value: i64) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let magnitude = value.unsigned_abs();
    let fraction = format!("{:06}", magnitude % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    let fraction = if fraction.len() < 2 {
        format!("{fraction:0<2}")
    } else {
        fraction.to_owned()
    };
    format!("{sign}{}.{fraction}", magnitude / 1_000_000)
}
