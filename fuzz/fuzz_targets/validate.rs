//! Fuzzes the `POST /v1/events` body parser and validator with arbitrary bytes.
//!
//! Properties: it never panics, and whatever it accepts survives a round trip — the accepted
//! events, written back as JSON, are accepted again unchanged.

#![no_main]

use chrono::{DateTime, Duration, Utc};
use libfuzzer_sys::fuzz_target;
use livora_common::ClientId;
use livora_ingest::validate::{Limits, ValidEvent, parse_batch};
use serde_json::{Value, json};

fn to_json(e: &ValidEvent, client: &ClientId) -> Value {
    let mut v = json!({
        "event_id": e.event_id.to_string(),
        "timestamp": e.timestamp.to_rfc3339(),
        "client_id": client.as_str(),
        "event_type": e.event_type,
        "props": e.props.to_map(),
        "context": e.context.to_map(),
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
    let again = Value::Array(events.iter().map(|e| to_json(e, &client)).collect()).to_string();
    match parse_batch(again.as_bytes(), &client, &limits, now) {
        Ok(reparsed) => assert_eq!(reparsed, events, "accepted events must round-trip"),
        // Re-encoding may only grow an event past the size limit (added defaults, a longer
        // timestamp), never change what is accepted.
        Err(problems) => assert!(
            problems.iter().all(|p| p.field == "event" && p.reason.contains("exceeds the limit")),
            "accepted events, written back, must be accepted again: {problems:?}\n{again}"
        ),
    }
});
