#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use livora_common::{ClientId, Enrichment, Event, JsonObject};
use serde_json::value::RawValue;

use super::*;
use crate::definitions::parse_files;
use crate::value::Value;

pub(crate) const REPO: &str = r#"
[[entity]]
name = "user"
join_keys = ["user_id"]
value_type = "string"

[[source]]
name = "events"
kind = "event_log"

[[feature_view]]
name = "activity"
entity = "user"
source = "events"
allowed_lateness = "1h"

[[feature_view.feature]]
name = "views_1h"
aggregate = "count"
event_types = ["view"]
window = "1h"

[[feature_view.feature]]
name = "revenue_24h"
aggregate = "sum"
field = "props.revenue"
event_types = ["purchase"]
window = "24h"

[[feature_view.feature]]
name = "last_category"
aggregate = "last"
field = "props.category"

[[feature_view.feature]]
name = "sessions_1h"
aggregate = "distinct_count"
field = "session_id"
window = "1h"

[[feature_view.feature]]
name = "events"
aggregate = "count"
"#;

pub(crate) fn event(n: u128, at: &str, kind: &str, user: &str, props: &str) -> Event {
    let ts: DateTime<Utc> = at.parse().unwrap();
    Event {
        event_id: uuid::Uuid::from_u128(n),
        timestamp: ts,
        client_id: ClientId::new("shop").unwrap(),
        user_id: Some(user.into()),
        anon_id: None,
        session_id: Some(format!("s{}", n % 2)),
        event_type: kind.into(),
        props: JsonObject::new(RawValue::from_string(props.into()).unwrap()).unwrap(),
        context: JsonObject::new(RawValue::from_string("{}".into()).unwrap()).unwrap(),
        received_at: ts,
        enrichment: Enrichment::default(),
    }
}

fn aggregator() -> Aggregator {
    let repo = parse_files(&[(PathBuf::from("r.toml"), REPO.into())]).unwrap();
    let client = ClientId::new("shop").unwrap();
    let mut agg = Aggregator::new();
    agg.set_views(&client, CompiledView::all(&client, &repo));
    agg
}

fn t(s: &str) -> i64 {
    s.parse::<DateTime<Utc>>().unwrap().timestamp_micros()
}

fn values(rows: &[FeatureRow], user: &str) -> (i64, Vec<Value>) {
    let row = rows.iter().find(|r| r.key.key == user).unwrap_or_else(|| panic!("no row for {user}: {rows:?}"));
    (row.event_time, row.values.iter().map(|(_, v)| v.clone()).collect())
}

const EARLY: i64 = 0; // a wall clock far behind the events: only event time moves the windows

#[test]
fn windows_count_what_they_cover() {
    let mut agg = aggregator();
    agg.apply(&event(1, "2026-03-01T10:00:00Z", "view", "u1", r#"{"category":"shoes"}"#));
    agg.apply(&event(2, "2026-03-01T10:30:00Z", "purchase", "u1", r#"{"revenue":10.1,"category":"bags"}"#));
    agg.apply(&event(3, "2026-03-01T10:30:30Z", "view", "u1", r#"{}"#));
    let rows = agg.emit(EARLY);
    assert_eq!(
        values(&rows, "u1"),
        (
            t("2026-03-01T10:30:30Z"),
            vec![Value::Int64(2), Value::Float64(10.1), Value::String("bags".into()), Value::Int64(2), Value::Int64(3)]
        )
    );
    // 11:01: the 10:00 view left the 1h window (it covers 10:02..=11:01 with 1m hops).
    agg.apply(&event(4, "2026-03-01T11:01:00Z", "purchase", "u1", r#"{"revenue":"0.2"}"#));
    let rows = agg.emit(EARLY);
    let (_, v) = values(&rows, "u1");
    assert_eq!(v[0], Value::Int64(1));
    // The correctly rounded sum of the two doubles (Python's math.fsum([10.1, 0.2]) agrees).
    assert_eq!(v[1], Value::Float64(10.299999999999999));
    assert_eq!(v[2], Value::String("bags".into()), "a purchase without category leaves last as it was");
}

#[test]
fn timers_shrink_windows_without_events() {
    let mut agg = aggregator();
    agg.apply(&event(1, "2026-03-01T10:00:00Z", "view", "u1", "{}"));
    agg.apply(&event(2, "2026-03-01T10:20:00Z", "view", "u1", "{}"));
    assert_eq!(values(&agg.emit(EARLY), "u1").1[0], Value::Int64(2));
    // Nothing is due while the clock (latest event; the wall clock is far behind) stays at 10:20.
    assert!(agg.emit(EARLY).is_empty());
    // A wall clock past the windows: the 10:00 bucket leaves at 11:00, the 10:20 one at 11:20.
    let now = t("2026-03-01T13:00:00Z");
    let (at, v) = values(&agg.emit(now), "u1");
    assert_eq!((at, &v[0], &v[3]), (t("2026-03-01T11:00:00Z"), &Value::Int64(1), &Value::Int64(1)));
    let (at, v) = values(&agg.emit(now), "u1");
    assert_eq!((at, &v[0], &v[3]), (t("2026-03-01T11:20:00Z"), &Value::Int64(0), &Value::Int64(0)));
    // The lifetime count keeps the state; no further timer is pending.
    assert_eq!(v[4], Value::Int64(2));
    assert!(agg.emit(now).is_empty());
}

#[test]
fn late_events_within_lateness_count_in_their_window_and_later_ones_do_not() {
    let mut agg = aggregator();
    agg.apply(&event(1, "2026-03-01T12:00:00Z", "view", "u1", "{}"));
    agg.apply(&event(2, "2026-03-01T11:30:00Z", "view", "u1", "{}")); // 30 min late: counted
    agg.apply(&event(3, "2026-03-01T10:59:00Z", "view", "u1", "{}")); // 61 min late: too late
    let (at, v) = values(&agg.emit(EARLY), "u1");
    assert_eq!(at, t("2026-03-01T12:00:00Z"), "time never goes back");
    assert_eq!(v[0], Value::Int64(2));
    assert_eq!(v[4], Value::Int64(2));
    assert_eq!(agg.counters.late, 1);
}

#[test]
fn arrival_order_does_not_change_values() {
    let events = [
        event(1, "2026-03-01T10:00:00Z", "purchase", "u1", r#"{"revenue":0.1,"category":"a"}"#),
        event(2, "2026-03-01T10:10:00Z", "purchase", "u1", r#"{"revenue":0.7,"category":"b"}"#),
        event(3, "2026-03-01T10:10:00Z", "purchase", "u1", r#"{"revenue":1e-9,"category":"c"}"#),
        event(4, "2026-03-01T10:20:00Z", "view", "u1", r#"{}"#),
    ];
    let mut forward = aggregator();
    events.iter().for_each(|e| forward.apply(e));
    let mut backward = aggregator();
    events.iter().rev().for_each(|e| backward.apply(e));
    assert_eq!(forward.emit(EARLY), backward.emit(EARLY));
}

#[test]
fn events_without_the_key_or_of_other_clients_are_ignored() {
    let mut agg = aggregator();
    let mut anonymous = event(1, "2026-03-01T10:00:00Z", "view", "u1", "{}");
    anonymous.user_id = None;
    agg.apply(&anonymous);
    let mut other = event(2, "2026-03-01T10:00:00Z", "view", "u1", "{}");
    other.client_id = ClientId::new("other").unwrap();
    agg.apply(&other);
    assert!(agg.emit(EARLY).is_empty());
    assert!(agg.is_empty());
}
