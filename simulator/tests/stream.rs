//! The stream's contract: determinism, order, range, uniqueness and the wire shape of every event.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeZone, Utc};
use livora_common::ClientId;
use livora_simulator::{Device, IP_RANGES, Segment, SimConfig, Simulator, product, user_agents};
use proptest::prelude::*;
use serde_json::Value;

fn config(users: u32, days: u32, seed: u64) -> SimConfig {
    SimConfig::new(ClientId::new("shop-test").expect("valid"), users, days, seed)
}

fn run(config: SimConfig) -> Vec<Value> {
    Simulator::new(config).events().collect()
}

fn s<'a>(e: &'a Value, key: &str) -> &'a str {
    e[key].as_str().unwrap_or_else(|| panic!("{key} is not a string in {e}"))
}

fn millis(e: &Value) -> i64 {
    DateTime::parse_from_rfc3339(s(e, "timestamp")).expect("RFC 3339").timestamp_millis()
}

fn is_hex16(x: &str) -> bool {
    x.len() == 16 && x.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks order, range and id uniqueness; returns the number of events.
fn check_order_range_ids(events: &[Value], config: &SimConfig) -> usize {
    let (start, end) = (config.start.timestamp_millis(), config.end().timestamp_millis());
    let mut ids = HashSet::new();
    let mut last = i64::MIN;
    for e in events {
        let t = millis(e);
        assert!(t >= last, "out of order: {e}");
        assert!((start..end).contains(&t), "outside [{start}, {end}): {e}");
        last = t;
        let id = uuid::Uuid::parse_str(s(e, "event_id")).expect("uuid");
        assert_eq!(id.get_version_num(), 4);
        assert!(ids.insert(id), "duplicate event_id {id}");
    }
    events.len()
}

#[test]
fn same_config_gives_a_byte_identical_stream() {
    let text = |events: Vec<Value>| events.iter().map(Value::to_string).collect::<Vec<_>>();
    let a = text(run(config(300, 7, 9)));
    let b = text(run(config(300, 7, 9)));
    assert!(a.len() > 1_000, "only {} events", a.len());
    assert_eq!(a, b);
}

#[test]
fn different_seeds_give_different_streams() {
    let a = run(config(300, 7, 1));
    let b = run(config(300, 7, 2));
    assert_ne!(a, b);
    let ids: HashSet<_> = a.iter().map(|e| s(e, "event_id").to_owned()).collect();
    assert!(b.iter().all(|e| !ids.contains(s(e, "event_id"))), "seeds share event ids");
    let anons: HashSet<_> = a.iter().map(|e| s(e, "anon_id").to_owned()).collect();
    assert!(b.iter().all(|e| !anons.contains(s(e, "anon_id"))), "seeds share devices");
}

#[test]
fn timestamps_are_ordered_in_range_and_in_millisecond_rfc3339() {
    // A start that is neither midnight nor a whole second.
    let start =
        Utc.with_ymd_and_hms(2026, 3, 28, 13, 47, 12).single().expect("valid") + chrono::Duration::milliseconds(345);
    let config = SimConfig { start, ..config(400, 5, 3) };
    let events = run(config.clone());
    assert!(check_order_range_ids(&events, &config) > 1_000);
    for e in &events {
        let ts = s(e, "timestamp");
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    }
}

#[test]
fn empty_runs_have_no_events() {
    assert!(run(config(0, 10, 1)).is_empty());
    assert!(run(config(100, 0, 1)).is_empty());
}

const TOP_LEVEL: [&str; 9] =
    ["event_id", "timestamp", "client_id", "user_id", "anon_id", "session_id", "event_type", "props", "context"];
const TYPES: [&str; 12] = [
    "session_start",
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "purchase",
    "signup",
    "login",
    "campaign_click",
    "email_open",
];

fn check_product_line(line: &Value, with_quantity: bool) {
    let p = product(s(line, "product_id")).unwrap_or_else(|| panic!("unknown product in {line}"));
    assert_eq!(s(line, "category"), p.category);
    assert_eq!(line["price"].as_f64(), Some(p.price()));
    if with_quantity {
        assert!(line["quantity"].as_u64().is_some_and(|q| q >= 1), "{line}");
    }
}

fn check_props(e: &Value) {
    let p = &e["props"];
    match s(e, "event_type") {
        "session_start" => assert!(s(p, "landing").starts_with('/') && !s(p, "referrer").is_empty()),
        "page_view" => assert!(!s(p, "page").is_empty() && s(p, "path").starts_with('/')),
        "product_view" => check_product_line(p, false),
        "add_to_cart" | "remove_from_cart" => check_product_line(p, true),
        "search" => assert!(!s(p, "query").is_empty() && p["results"].is_u64()),
        "checkout_start" => assert!(p["cart_value"].as_f64().is_some_and(|v| v > 0.0) && p["items"].is_u64()),
        "purchase" => {
            assert!(s(p, "order_id").starts_with("o_"));
            assert_eq!(s(p, "currency"), "EUR");
            let items = p["items"].as_array().expect("items");
            assert!(!items.is_empty());
            items.iter().for_each(|l| check_product_line(l, true));
            let subtotal: f64 =
                items.iter().map(|l| l["price"].as_f64().unwrap_or(0.0) * l["quantity"].as_f64().unwrap_or(0.0)).sum();
            let revenue = p["revenue"].as_f64().expect("revenue");
            assert!((revenue * 100.0 - (revenue * 100.0).round()).abs() < 1e-6, "2 decimals: {revenue}");
            assert!(revenue > 0.0 && revenue <= subtotal + 1e-9, "{e}");
            assert_eq!(p.get("coupon").is_some(), revenue < subtotal - 1e-9, "coupon ⇔ discount: {e}");
        }
        "signup" => assert!(!s(p, "method").is_empty() && !s(p, "source").is_empty()),
        "login" => assert!(!s(p, "method").is_empty()),
        "campaign_click" | "email_open" => {
            assert!(s(p, "campaign_id").starts_with("cmp_"));
            assert!(["email", "whatsapp", "sms", "push"].contains(&s(p, "channel")));
        }
        other => panic!("unexpected event type {other}"),
    }
}

#[test]
fn every_event_has_the_wire_shape() {
    let config = config(500, 7, 5);
    let events = run(config.clone());
    let campaign_sessions: HashSet<&str> =
        events.iter().filter(|e| e["event_type"] == "campaign_click").map(|e| s(e, "session_id")).collect();
    let mut seen_types = HashSet::new();
    for e in &events {
        let obj = e.as_object().expect("object");
        assert!(obj.keys().all(|k| TOP_LEVEL.contains(&k.as_str())), "unexpected key in {e}");
        assert_eq!(s(e, "client_id"), config.client_id.as_str());
        assert!(s(e, "anon_id").strip_prefix("a_").is_some_and(is_hex16), "{e}");
        assert!(s(e, "session_id").strip_prefix("s_").is_some_and(is_hex16), "{e}");
        if let Some(u) = obj.get("user_id") {
            let u = u.as_str().expect("string user_id");
            assert!(u.len() == 8 && u.starts_with("u_") && u[2..].bytes().all(|b| b.is_ascii_digit()), "{u}");
        }
        let ty = s(e, "event_type");
        assert!(
            ty.len() <= 64
                && ty.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        );
        assert!(TYPES.contains(&ty), "{ty}");
        seen_types.insert(ty);
        assert!(e["props"].is_object() && e["context"].is_object(), "{e}");
        check_props(e);

        let ctx = &e["context"];
        let ip = s(ctx, "ip");
        let (net, host) = ip.rsplit_once('.').expect("dotted ip");
        assert!(IP_RANGES.contains(&net) && host.parse::<u8>().is_ok_and(|h| (1..=254).contains(&h)), "{ip}");
        assert!(s(ctx, "ua").starts_with("Mozilla/5.0"));
        assert!(["fr-FR", "de-DE", "en-GB", "es-ES", "it-IT", "nl-NL", "en-US"].contains(&s(ctx, "locale")));
        assert!(["web", "ios", "android"].contains(&s(ctx, "channel")));
        let utm = ["utm_source", "utm_medium", "utm_campaign"].map(|k| ctx.get(k).is_some());
        assert!(utm == [false; 3] || utm == [true; 3], "utm all or nothing: {e}");
        assert_eq!(utm[0], campaign_sessions.contains(s(e, "session_id")) && ty != "email_open", "{e}");
    }
    assert_eq!(seen_types.len(), TYPES.len(), "types never generated: {seen_types:?}");
}

#[test]
fn sessions_are_coherent_funnels() {
    let events = run(config(500, 7, 6));
    let mut sessions: HashMap<&str, Vec<&Value>> = HashMap::new();
    for e in &events {
        sessions.entry(s(e, "session_id")).or_default().push(e);
    }
    for (id, evs) in &sessions {
        let types: Vec<&str> = evs.iter().map(|e| s(e, "event_type")).collect();
        assert!(evs.iter().all(|e| e["anon_id"] == evs[0]["anon_id"]), "session {id} spans devices");
        if types == ["email_open"] {
            continue;
        }
        assert_eq!(types[0], "session_start", "session {id}: {types:?}");
        assert_eq!(types.iter().filter(|t| **t == "session_start").count(), 1, "{types:?}");
        if let Some(buy) = types.iter().position(|t| *t == "purchase") {
            let before = &types[..buy];
            assert!(before.contains(&"checkout_start") && before.contains(&"add_to_cart"), "{types:?}");
            assert!(evs[buy].get("user_id").is_some(), "anonymous purchase in {id}");
        }
        // Once identified, always identified; identification mid-session is a login or signup.
        if let Some(first) = evs.iter().position(|e| e.get("user_id").is_some()) {
            assert!(evs[first..].iter().all(|e| e["user_id"] == evs[first]["user_id"]), "{id}");
            assert!(first == 0 || ["login", "signup"].contains(&types[first]), "{id}: {types:?}");
        }
    }
}

#[test]
fn visitors_get_a_user_id_only_by_signing_up() {
    let mut sim = Simulator::new(config(800, 10, 8));
    let events: Vec<Value> = sim.events().collect();
    let truth = sim.ground_truth();
    let mut by_anon: HashMap<&str, Vec<&Value>> = HashMap::new();
    for e in &events {
        by_anon.entry(s(e, "anon_id")).or_default().push(e);
    }
    let mut converted = 0;
    for t in truth.iter().filter(|t| t.segment == Segment::Visitor) {
        let evs = by_anon.get(t.anon_id.as_str()).map(Vec::as_slice).unwrap_or_default();
        let signups = evs.iter().filter(|e| e["event_type"] == "signup").count();
        assert_eq!(signups, usize::from(t.signed_up_at.is_some()), "{}", t.anon_id);
        match evs.iter().position(|e| e.get("user_id").is_some()) {
            Some(first) => {
                assert_eq!(s(evs[first], "event_type"), "signup", "{}", t.anon_id);
                assert_eq!(t.user_id.as_deref(), evs[first]["user_id"].as_str());
                converted += 1;
            }
            None => assert!(t.signed_up_at.is_none() && t.user_id.is_none(), "{}", t.anon_id),
        }
    }
    assert!(converted > 20, "only {converted} visitors signed up");
}

#[test]
fn user_agents_parse_as_their_device() {
    let parser = woothee::parser::Parser::new();
    for (device, ua) in user_agents() {
        let r = parser.parse(ua).unwrap_or_else(|| panic!("unparsed {ua}"));
        let expected: &[&str] = match device {
            Device::Bot => &["crawler"],
            Device::Desktop => &["pc"],
            _ => &["smartphone"],
        };
        assert!(expected.contains(&r.category), "{ua}: {}", r.category);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn any_small_run_is_ordered_in_range_and_unique(
        users in 0u32..40, days in 0u32..4, seed: u64, offset_ms in 0i64..(366 * 86_400_000),
    ) {
        let start = DateTime::from_timestamp_millis(1_767_225_600_000 + offset_ms).expect("valid");
        let config = SimConfig { start, ..config(users, days, seed) };
        let events = run(config.clone());
        check_order_range_ids(&events, &config);
    }
}
