//! Fuzzes the `POST /v1/events` body parser and validator with arbitrary bytes.
//!
//! Properties: it never panics; whatever it accepts can be read back (`props` and `context`, kept
//! as the text received, parse as JSON objects); and it survives a round trip — the accepted
//! events, written back as JSON, are accepted again with the same meaning. The same meaning, not
//! the same text: `props` and `context` are compared parsed, since writing them back drops the
//! sender's spacing and escapes.

#![no_main]

use chrono::{DateTime, Duration, Utc};
use libfuzzer_sys::fuzz_target;
use livora_common::{ClientId, JsonObject};
use livora_ingest::validate::{Limits, ValidEvent, parse_batch};
use serde_json::{Map, Value, json};

/// `props` or `context` parsed: what every consumer of the log and the lake will read.
fn parsed(o: &JsonObject, field: &str) -> Map<String, Value> {
    serde_json::from_str(o.get()).unwrap_or_else(|e| panic!("accepted {field} does not parse ({e}): {}", o.get()))
}

fn to_json(e: &ValidEvent, client: &ClientId) -> Value {
    let context = parsed(&e.context, "context");
    assert_eq!(e.context_ip.as_deref(), context.get("ip").and_then(Value::as_str), "context_ip");
    assert_eq!(e.context_ua.as_deref(), context.get("ua").and_then(Value::as_str), "context_ua");
    let mut v = json!({
        "event_id": e.event_id.to_string(),
        "timestamp": e.timestamp.to_rfc3339(),
        "client_id": client.as_str(),
        "event_type": e.event_type,
        "props": parsed(&e.props, "props"),
        "context": context,
    });
    for (field, value) in [("user_id", &e.user_id), ("anon_id", &e.anon_id), ("session_id", &e.session_id)] {
        if let Some(s) = value {
            v[field] = json!(s);
        }
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let client = ClientId::new("shop").expect("valid client id");
    let limits = Limits { max_batch_events: 100, max_event_bytes: 32 * 1024, max_future: Duration::hours(24) };
    let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).expect("valid time");
    let Ok(events) = parse_batch(data, &client, &limits, now) else { return };
    let written: Vec<Value> = events.iter().map(|e| to_json(e, &client)).collect();
    let again = Value::Array(written.clone()).to_string();
    match parse_batch(again.as_bytes(), &client, &limits, now) {
        Ok(reparsed) => {
            let rewritten: Vec<Value> = reparsed.iter().map(|e| to_json(e, &client)).collect();
            assert_eq!(rewritten, written, "accepted events must round-trip");
        }
        // Re-encoding may only grow an event past the size limit (added defaults, a longer
        // timestamp), never change what is accepted.
        Err(problems) => assert!(
            problems.iter().all(|p| p.field == "event" && p.reason.contains("exceeds the limit")),
            "accepted events, written back, must be accepted again: {problems:?}\n{again}"
        ),
    }
});
