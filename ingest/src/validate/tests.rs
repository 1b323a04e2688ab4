#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn limits() -> Limits {
    Limits { max_batch_events: 100, max_event_bytes: 32 * 1024, max_future: Duration::hours(24) }
}

fn shop() -> ClientId {
    ClientId::new("shop").unwrap()
}

fn now() -> DateTime<Utc> {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

fn good() -> Value {
    json!({
        "event_id": "0b3c2a52-7a8e-4a4e-9d0e-5d1f2c3b4a59",
        "timestamp": "2026-11-26T13:00:00+01:00",
        "client_id": "shop",
        "anon_id": "a_1",
        "event_type": "page_view",
        "props": {"page": "/"},
        "context": {"ip": "203.0.113.1", "ua": "curl/8", "locale": "fr-FR"}
    })
}

fn parse(v: &Value) -> Result<Vec<ValidEvent>, Vec<Problem>> {
    parse_batch(v.to_string().as_bytes(), &shop(), &limits(), now())
}

fn fields(problems: &[Problem]) -> Vec<(Option<usize>, &str)> {
    problems.iter().map(|p| (p.index, p.field.as_str())).collect()
}

#[test]
fn a_single_event_and_a_batch_are_accepted_and_time_is_normalised_to_utc() {
    let one = parse(&good()).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].timestamp, "2026-11-26T12:00:00Z".parse::<DateTime<Utc>>().unwrap());
    assert_eq!(one[0].anon_id.as_deref(), Some("a_1"));
    let batch = parse(&json!([good(), good(), good()])).unwrap();
    assert_eq!(batch.len(), 3);
}

#[test]
fn every_problem_is_listed_by_index_and_field() {
    let mut bad = good();
    bad["event_id"] = json!("not-a-uuid");
    bad["timestamp"] = json!("yesterday");
    bad["client_id"] = json!("other-shop");
    bad["event_type"] = json!("9 lives!");
    bad["props"] = json!([1, 2]);
    bad["surprise"] = json!(true);
    let mut no_ids = good();
    no_ids.as_object_mut().unwrap().remove("anon_id");
    let problems = parse(&json!([good(), bad, no_ids])).unwrap_err();
    let mut got = fields(&problems);
    got.sort();
    assert_eq!(
        got,
        vec![
            (Some(1), "client_id"),
            (Some(1), "event_id"),
            (Some(1), "event_type"),
            (Some(1), "props"),
            (Some(1), "surprise"),
            (Some(1), "timestamp"),
            (Some(2), "user_id"),
        ]
    );
    let client = problems.iter().find(|p| p.field == "client_id").unwrap();
    assert!(client.reason.contains("authenticated client `shop`"), "{}", client.reason);
}

#[test]
fn required_fields_and_wrong_types_are_named() {
    let problems = parse(&json!({"client_id": 7, "anon_id": 5, "context": "x"})).unwrap_err();
    let mut got = fields(&problems);
    got.sort();
    assert_eq!(
        got,
        vec![
            (Some(0), "anon_id"),
            (Some(0), "client_id"),
            (Some(0), "context"),
            (Some(0), "event_id"),
            (Some(0), "event_type"),
            (Some(0), "timestamp"),
        ]
    );
    assert!(problems.iter().any(|p| p.field == "client_id" && p.reason == "must be a string, got a number"));
}

#[test]
fn far_future_timestamps_are_refused_and_near_future_ones_kept() {
    let mut ev = good();
    ev["timestamp"] = json!("2026-11-27T11:59:00Z");
    assert!(parse(&ev).is_ok());
    ev["timestamp"] = json!("2026-11-27T12:00:01Z");
    let p = parse(&ev).unwrap_err();
    assert_eq!(fields(&p), vec![(Some(0), "timestamp")]);
    assert!(p[0].reason.contains("in the future"), "{}", p[0].reason);
}

#[test]
fn times_outside_four_digit_years_in_utc_are_refused() {
    // Found by fuzz/ (`validate`): this is -0001-12-31T00:01:00Z, which RFC 3339 cannot write, so
    // the accepted event could not be sent again as it was kept.
    let mut ev = good();
    ev["timestamp"] = json!("0000-01-01T00:00:00+23:59");
    let p = parse(&ev).unwrap_err();
    assert_eq!(fields(&p), vec![(Some(0), "timestamp")]);
    assert!(p[0].reason.contains("outside the years 0000 to 9999"), "{}", p[0].reason);
    for ok in ["0000-01-01T00:00:00Z", "0000-01-01T00:00:00-23:59"] {
        ev["timestamp"] = json!(ok);
        let kept = parse(&ev).unwrap()[0].timestamp;
        assert!(DateTime::parse_from_rfc3339(&kept.to_rfc3339()).is_ok(), "{ok} is kept as {kept}");
    }
}

#[test]
fn request_level_problems() {
    let l = limits();
    let go = |body: &[u8]| parse_batch(body, &shop(), &l, now()).unwrap_err();
    assert_eq!(fields(&go(b"")), vec![(None, "body")]);
    assert_eq!(fields(&go(b"[]")), vec![(None, "body")]);
    assert!(go(b"{\"event_id\": ").first().unwrap().reason.starts_with("invalid JSON at line 1"));
    assert!(go(b"[1, 2").first().unwrap().reason.starts_with("invalid JSON"));
    let too_many = Value::Array(vec![good(); 101]);
    assert!(go(too_many.to_string().as_bytes())[0].reason.contains("at most 100"));
    // Invalid UTF-8 inside a string.
    let mut body = good().to_string().into_bytes();
    let at = body.windows(3).position(|w| w == b"a_1").unwrap();
    body[at] = 0xff;
    assert!(go(&body)[0].reason.contains("invalid JSON"), "{:?}", go(&body));
}

#[test]
fn non_objects_in_a_batch_are_named_by_index() {
    let p = parse(&json!([good(), 42, "x", null])).unwrap_err();
    assert_eq!(fields(&p), vec![(Some(1), "event"), (Some(2), "event"), (Some(3), "event")]);
}

#[test]
fn oversized_events_and_huge_strings_are_refused() {
    let mut ev = good();
    ev["props"] = json!({"blob": "x".repeat(40_000)});
    let p = parse(&json!([good(), ev])).unwrap_err();
    assert_eq!(fields(&p), vec![(Some(1), "event")]);
    assert!(p[0].reason.contains("exceeds the limit of 32768 bytes"));
    let mut ev = good();
    ev["user_id"] = json!("u".repeat(300));
    assert_eq!(fields(&parse(&ev).unwrap_err()), vec![(Some(0), "user_id")]);
}

#[test]
fn deep_nesting_is_refused_without_blowing_the_stack() {
    let mut nested = json!(1);
    for _ in 0..40 {
        nested = json!({ "n": nested });
    }
    let mut ev = good();
    ev["props"] = nested;
    assert_eq!(fields(&parse(&ev).unwrap_err()), vec![(Some(0), "props")]);
    // Far deeper than serde_json's recursion limit: an error, not a crash.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let p = parse_batch(deep.as_bytes(), &shop(), &limits(), now()).unwrap_err();
    assert_eq!(fields(&p), vec![(Some(0), "event")]);
    let body =
        good().to_string().replace(r#"{"page":"/"}"#, &format!("{}1{}", r#"{"a":"#.repeat(5000), "}".repeat(5000)));
    let p = parse_batch(body.as_bytes(), &shop(), &limits(), now()).unwrap_err();
    assert_eq!(fields(&p), vec![(Some(0), "props")]);
    assert!(p[0].reason.contains("nested deeper than 32"), "{}", p[0].reason);
}

#[test]
fn context_fields_are_type_checked() {
    let mut ev = good();
    ev["context"] = json!({"ip": "999.1.1.1", "ua": 5});
    let problems = parse(&ev).unwrap_err();
    let mut got = fields(&problems);
    got.sort();
    assert_eq!(got, vec![(Some(0), "context.ip"), (Some(0), "context.ua")]);
}

#[test]
fn props_and_context_are_kept_exactly_as_sent() {
    // Found by fuzz/ (`validate`): a float parsed and written again could come back one ulp off.
    // The collector keeps `props` and `context` as the text it received, so nothing is rewritten.
    let sent = good().to_string().replace(r#""page":"/""#, r#""x":2.4501477011564028e-308, "y": 1.0"#);
    let got = parse_batch(sent.as_bytes(), &shop(), &limits(), now()).unwrap();
    assert_eq!(got[0].props.get(), r#"{"x":2.4501477011564028e-308, "y": 1.0}"#);
    assert_eq!(got[0].context_ip.as_deref(), Some("203.0.113.1"));
    assert_eq!(got[0].context_ua.as_deref(), Some("curl/8"));
}

#[test]
fn props_and_context_that_no_parser_reads_back_are_refused() {
    // Found by fuzz/ (`validate`): kept as text, these were accepted, but every consumer failed
    // to parse them (`JsonObject::to_map` read `{}`).
    let with = |field: &str, text: &str| {
        let mut ev = good();
        ev.as_object_mut().unwrap().remove("context");
        ev["props"] = json!("here");
        let body = ev.to_string().replace(r#""props":"here""#, &format!(r#""{field}":{text}"#));
        parse_batch(body.as_bytes(), &shop(), &limits(), now())
    };
    for (field, text) in [
        ("props", r#"{"x": 12345678901234567890123456789e5308}"#),
        ("props", r#"{"a": [{"s": "\ud800"}]}"#),
        ("context", r#"{"\udc00": 1}"#),
        ("context", r#"{"ip": "203.0.113.1", "n": -1e400}"#),
    ] {
        let p = with(field, text).unwrap_err();
        assert_eq!(fields(&p), vec![(Some(0), field)], "{text}");
        assert!(p[0].reason.starts_with("invalid JSON"), "{}", p[0].reason);
    }
    let fine = r#"{"big": 123456789012345678901234567890, "z": -0.0, "e": "\ud83d\ude00", "t": [true, null]}"#;
    let got = with("props", fine).unwrap();
    assert_eq!(got[0].props.get(), fine);
    assert_eq!(got[0].props.to_map()["e"], json!("\u{1f600}"));
}

#[test]
fn escaped_keys_and_strings_are_understood() {
    let body = r#"{"event_id":"0b3c2a52-7a8e-4a4e-9d0e-5d1f2c3b4a59","timestamp":"2026-11-26T12:00:00Z",
        "client_id":"sh\u006fp","anon_id":"a\"1","event_typ\u0065":"page_view",
        "context":{"\u0069p":"203.0.113.2"}}"#;
    let got = parse_batch(body.as_bytes(), &shop(), &limits(), now()).unwrap();
    assert_eq!(got[0].anon_id.as_deref(), Some("a\"1"));
    assert_eq!(got[0].event_type, "page_view");
    assert_eq!(got[0].context_ip.as_deref(), Some("203.0.113.2"));
}

prop_compose! {
    fn arb_event()(
        id in any::<u128>().prop_filter("non-nil", |i| *i != 0),
        secs in 0i64..4_000_000_000,
        nanos in 0u32..1_000_000_000,
        offset_min in -720i32..=720,
        user in proptest::option::of("[a-zA-Z0-9_@.-]{1,40}"),
        anon in "[a-z0-9]{1,32}",
        session in proptest::option::of("[a-z0-9]{1,32}"),
        event_type in "[a-z][a-z0-9_.:-]{0,63}",
        props in proptest::collection::btree_map("[a-z]{1,8}", any::<i64>(), 0..6),
        text in "\\PC{0,50}",
    ) -> Value {
        let offset = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
        let ts = DateTime::from_timestamp(secs, nanos).unwrap().with_timezone(&offset);
        let mut v = json!({
            "event_id": Uuid::from_u128(id).to_string(),
            "timestamp": ts.to_rfc3339(),
            "client_id": "shop",
            "anon_id": anon,
            "event_type": event_type,
            "props": props,
            "context": {"text": text},
        });
        if let Some(u) = user { v["user_id"] = json!(u); }
        if let Some(s) = session { v["session_id"] = json!(s); }
        v
    }
}

proptest! {
    #[test]
    fn valid_events_round_trip(ev in arb_event()) {
        let far_future = "2100-01-01T00:00:00Z".parse().unwrap();
        let parsed = parse_batch(ev.to_string().as_bytes(), &shop(), &limits(), far_future).unwrap();
        let got = &parsed[0];
        prop_assert_eq!(got.event_id.to_string(), ev["event_id"].as_str().unwrap());
        let sent = DateTime::parse_from_rfc3339(ev["timestamp"].as_str().unwrap()).unwrap();
        prop_assert_eq!(got.timestamp, sent.with_timezone(&Utc));
        prop_assert_eq!(got.user_id.as_deref(), ev.get("user_id").and_then(Value::as_str));
        prop_assert_eq!(got.anon_id.as_deref(), ev["anon_id"].as_str());
        prop_assert_eq!(got.session_id.as_deref(), ev.get("session_id").and_then(Value::as_str));
        prop_assert_eq!(&got.event_type, ev["event_type"].as_str().unwrap());
        prop_assert_eq!(&Value::Object(got.props.to_map()), &ev["props"]);
        prop_assert_eq!(&Value::Object(got.context.to_map()), &ev["context"]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_batch(&body, &shop(), &limits(), now());
    }
}

#[test]
fn duplicate_members_take_the_last_value_like_any_json_reader() {
    // Duplicates leave the one-pass reader for the general one; the result must not change.
    let body = good().to_string().replace(r#""event_type":"page_view""#, r#""event_type":"a","event_type":"b""#);
    assert!(body.contains(r#""event_type":"a","event_type":"b""#), "{body}");
    let got = parse_batch(body.as_bytes(), &shop(), &limits(), now()).unwrap();
    assert_eq!(got[0].event_type, "b");
    // And null is the same as absent on both paths.
    let mut ev = good();
    ev["session_id"] = Value::Null;
    assert_eq!(parse(&ev).unwrap()[0].session_id, None);
    ev["surprise"] = json!(1);
    assert_eq!(fields(&parse(&ev).unwrap_err()), vec![(Some(0), "surprise")]);
}
