//! Distribution sanity on a moderate run (2,000 people × 14 days, seed 42): the bands documented in
//! the crate doc, and the signals later models must be able to learn (churn, leads, favourites).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use chrono::{DateTime, Timelike};
use livora_common::ClientId;
use livora_simulator::{DAY_MS, Device, PersonTruth, Segment, SimConfig, Simulator, user_agents};
use serde_json::Value;

struct Run {
    start: i64,
    events: Vec<Value>,
    truth: Vec<PersonTruth>,
    /// Per session id: its events (in order).
    sessions: HashMap<String, Vec<usize>>,
}

fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        // `LIVORA_SIM_TEST_SEED` checks the bands hold for other seeds too.
        let seed = std::env::var("LIVORA_SIM_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(42);
        let config = SimConfig::new(ClientId::new("shop").expect("valid"), 2_000, 14, seed);
        let start = config.start.timestamp_millis();
        let mut sim = Simulator::new(config);
        let events: Vec<Value> = sim.events().collect();
        let mut sessions: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            sessions.entry(str_of(e, "session_id").to_owned()).or_default().push(i);
        }
        sessions.retain(|_, evs| events[evs[0]]["event_type"] == "session_start");
        Run { start, events, truth: sim.ground_truth(), sessions }
    })
}

fn str_of<'a>(e: &'a Value, key: &str) -> &'a str {
    e[key].as_str().unwrap_or_default()
}

fn ty(e: &Value) -> &str {
    str_of(e, "event_type")
}

fn millis(e: &Value) -> i64 {
    DateTime::parse_from_rfc3339(str_of(e, "timestamp")).expect("RFC 3339").timestamp_millis()
}

/// Day of the run of an event.
fn day(r: &Run, e: &Value) -> i64 {
    (millis(e) - r.start) / DAY_MS
}

fn ratio(a: usize, b: usize) -> f64 {
    a as f64 / b.max(1) as f64
}

fn session_has(r: &Run, evs: &[usize], t: &str) -> bool {
    evs.iter().any(|i| ty(&r.events[*i]) == t)
}

fn in_band(name: &str, value: f64, band: std::ops::RangeInclusive<f64>) {
    eprintln!("{name}: {value:.4} (band {band:?})");
    assert!(band.contains(&value), "{name} = {value} outside {band:?}");
}

#[test]
fn session_conversion_is_within_1_5_to_6_percent() {
    let r = run();
    let bought = r.sessions.values().filter(|s| session_has(r, s, "purchase")).count();
    assert!(r.sessions.len() > 2_000, "{} sessions", r.sessions.len());
    in_band("conversion", ratio(bought, r.sessions.len()), 0.015..=0.06);
}

#[test]
fn cart_abandonment_is_within_60_to_85_percent() {
    let r = run();
    let carts: Vec<_> = r.sessions.values().filter(|s| session_has(r, s, "add_to_cart")).collect();
    let bought = carts.iter().filter(|s| session_has(r, s, "purchase")).count();
    in_band("abandonment", 1.0 - ratio(bought, carts.len()), 0.60..=0.85);
}

#[test]
fn orders_are_small_baskets_around_60_eur() {
    let r = run();
    let orders: Vec<&Value> = r.events.iter().filter(|e| ty(e) == "purchase").map(|e| &e["props"]).collect();
    assert!(orders.len() > 50, "{} orders", orders.len());
    let mut revenue: Vec<f64> = orders.iter().filter_map(|p| p["revenue"].as_f64()).collect();
    revenue.sort_by(f64::total_cmp);
    let mean = revenue.iter().sum::<f64>() / revenue.len() as f64;
    in_band("mean order value", mean, 45.0..=90.0);
    assert!(revenue[revenue.len() / 2] < mean, "order values should be right-skewed");
    let lines: Vec<usize> = orders.iter().map(|p| p["items"].as_array().map_or(0, Vec::len)).collect();
    in_band(
        "share of orders with 1-3 lines",
        ratio(lines.iter().filter(|n| (1..=3).contains(*n)).count(), lines.len()),
        0.9..=1.0,
    );
}

#[test]
fn engaged_sessions_view_3_to_8_products() {
    let r = run();
    let views: Vec<usize> = r
        .sessions
        .values()
        .map(|s| s.iter().filter(|i| ty(&r.events[**i]) == "product_view").count())
        .filter(|n| *n >= 2)
        .collect();
    in_band("product views per browsing session", ratio(views.iter().sum(), views.len()), 3.0..=8.0);
}

#[test]
fn traffic_peaks_in_the_evening_and_at_the_weekend() {
    let r = run();
    let starts: Vec<&Value> = r.events.iter().filter(|e| ty(e) == "session_start").collect();
    let hour = |e: &Value| DateTime::from_timestamp_millis(millis(e)).map_or(0, |t| t.hour());
    let evening = starts.iter().filter(|e| (18..22).contains(&hour(e))).count();
    let night = starts.iter().filter(|e| (2..6).contains(&hour(e))).count();
    in_band("evening / night sessions", ratio(evening, night), 4.0..=30.0);
    // The run starts on a Monday: days 5, 6, 12, 13 are weekends.
    let weekend = starts.iter().filter(|e| day(r, e) % 7 >= 5).count() as f64 / 4.0;
    let weekday = starts.iter().filter(|e| day(r, e) % 7 < 5).count() as f64 / 10.0;
    in_band("weekend / weekday sessions per day", weekend / weekday, 1.02..=1.5);
}

#[test]
fn favourite_categories_dominate_views_and_purchases() {
    let r = run();
    let favs: HashMap<&str, &Vec<&str>> =
        r.truth.iter().map(|t| (t.anon_id.as_str(), &t.favourite_categories)).collect();
    let share = |event_type: &str| {
        let (mut fav, mut all) = (0, 0);
        for e in r.events.iter().filter(|e| ty(e) == event_type) {
            let f = favs[str_of(e, "anon_id")];
            let lines = match e["props"]["items"].as_array() {
                Some(items) => items.iter().collect(),
                None => vec![&e["props"]],
            };
            for l in lines {
                all += 1;
                fav += usize::from(f.contains(&str_of(l, "category")));
            }
        }
        ratio(fav, all)
    };
    in_band("favourite share of purchased items", share("purchase"), 0.5..=0.95);
    in_band("favourite share of product views (bots included)", share("product_view"), 0.5..=0.9);
}

#[test]
fn campaigns_start_sessions_and_lift_conversion() {
    let r = run();
    let (camp, organic): (Vec<_>, Vec<_>) = r.sessions.values().partition(|s| session_has(r, s, "campaign_click"));
    let share = |s: &[&Vec<usize>], t| ratio(s.iter().filter(|s| session_has(r, s, t)).count(), s.len());
    in_band("campaign sessions share", ratio(camp.len(), r.sessions.len()), 0.01..=0.15);
    let (c, o) = (share(&camp, "add_to_cart"), share(&organic, "add_to_cart"));
    eprintln!("campaign cart rate {c:.4} vs organic {o:.4}");
    assert!(c > 1.2 * o, "campaign cart rate {c} not above organic {o}");
    let (c, o) = (share(&camp, "purchase"), share(&organic, "purchase"));
    eprintln!("campaign conversion {c:.4} vs organic {o:.4}");
    assert!(c > o, "campaign conversion {c} not above organic {o}");
}

#[test]
fn bots_are_a_small_share_of_traffic() {
    let r = run();
    let bots: HashSet<&str> = user_agents().filter(|(d, _)| *d == Device::Bot).map(|(_, ua)| ua).collect();
    let n = r.events.iter().filter(|e| bots.contains(str_of(&e["context"], "ua"))).count();
    in_band("bot share of events", ratio(n, r.events.len()), 0.005..=0.04);
}

#[test]
fn churn_is_visible_week_over_week() {
    let r = run();
    // Customer anon id → whether they started declining; sessions in weeks 1 and 2.
    let declined: HashMap<&str, bool> = r
        .truth
        .iter()
        .filter(|t| !matches!(t.segment, Segment::Visitor | Segment::Bot))
        .map(|t| (t.anon_id.as_str(), t.decline_started_at.is_some()))
        .collect();
    let mut weeks: HashMap<&str, [usize; 2]> = HashMap::new();
    for e in r.events.iter().filter(|e| ty(e) == "session_start" && declined.contains_key(str_of(e, "anon_id"))) {
        weeks.entry(str_of(e, "anon_id")).or_default()[usize::from(day(r, e) >= 7)] += 1;
    }
    let active1: Vec<(&str, [usize; 2])> = weeks.into_iter().filter(|(_, w)| w[0] > 0).collect();
    let (gone, stayed): (Vec<_>, Vec<_>) = active1.iter().partition(|(_, w)| w[1] == 0);
    in_band("customers active in week 1, absent in week 2", ratio(gone.len(), active1.len()), 0.2..=0.5);
    let share_declined = |v: &[&(&str, [usize; 2])]| ratio(v.iter().filter(|(a, _)| declined[a]).count(), v.len());
    let (g, s) = (share_declined(&gone), share_declined(&stayed));
    eprintln!("declining/churned among absent {g:.3}, among present {s:.3}");
    assert!(g > 2.0 * s, "absence in week 2 is not driven by churn ({g} vs {s})");
}

/// Customer anon id → run day their decline started, if it did.
fn customer_declines(r: &Run) -> HashMap<&str, Option<i64>> {
    r.truth
        .iter()
        .filter(|t| !matches!(t.segment, Segment::Visitor | Segment::Bot))
        .map(|t| (t.anon_id.as_str(), t.decline_started_at.map(|d| (d.timestamp_millis() - r.start) / DAY_MS)))
        .collect()
}

#[test]
fn recency_predicts_churn() {
    let r = run();
    let declines = customer_declines(r);
    let mut last: HashMap<&str, i64> = HashMap::new();
    for e in r.events.iter().filter(|e| ty(e) == "session_start") {
        if declines.contains_key(str_of(e, "anon_id")) {
            last.insert(str_of(e, "anon_id"), day(r, e));
        }
    }
    // Recency at the end of the run (days since the last session) vs whether the customer declined.
    let (mut rec, mut n) = ([0i64; 2], [0usize; 2]);
    let (mut stale, mut fresh) = ((0, 0), (0, 0));
    for (anon, d) in &last {
        let (k, recency) = (usize::from(declines[anon].is_some()), 13 - d);
        rec[k] += recency;
        n[k] += 1;
        let bucket = if recency >= 7 { &mut stale } else { &mut fresh };
        bucket.0 += k;
        bucket.1 += 1;
    }
    let (rec_stay, rec_churn) = (rec[0] as f64 / n[0] as f64, rec[1] as f64 / n[1].max(1) as f64);
    eprintln!("decliners {}: mean recency {rec_churn:.2} d; others {}: {rec_stay:.2} d", n[1], n[0]);
    assert!(n[1] >= 30, "only {} decliners", n[1]);
    assert!(rec_churn > rec_stay + 2.0, "recency does not separate churners");
    let (stale, fresh) = (ratio(stale.0, stale.1), ratio(fresh.0, fresh.1));
    eprintln!("decline rate among customers silent for a week {stale:.3}, among recent ones {fresh:.3}");
    assert!(stale > 2.0 * fresh, "silence does not predict churn");
}

#[test]
fn activity_decays_before_churn() {
    let r = run();
    // Every human who started declining during the run, with the day they were first seen (a
    // visitor's first session is forced on their arrival day, so that day is left out).
    let mut first_day: HashMap<&str, i64> = HashMap::new();
    for e in r.events.iter().filter(|e| ty(e) == "session_start") {
        first_day.entry(str_of(e, "anon_id")).or_insert_with(|| day(r, e));
    }
    let declines: HashMap<&str, (i64, i64)> = r
        .truth
        .iter()
        .filter_map(|t| {
            let d0 = (t.decline_started_at?.timestamp_millis() - r.start) / DAY_MS;
            let from = if t.segment == Segment::Visitor { first_day.get(t.anon_id.as_str())? + 1 } else { 0 };
            (d0 - from >= 2 && d0 <= 8).then_some((t.anon_id.as_str(), (from, d0)))
        })
        .collect();
    // Sessions per day before the decline started vs in the 6 days of decline.
    let (mut before, mut after) = (0, 0);
    for e in r.events.iter().filter(|e| ty(e) == "session_start") {
        if let Some((from, d0)) = declines.get(str_of(e, "anon_id")) {
            let d = day(r, e);
            before += usize::from((*from..*d0).contains(&d));
            after += usize::from((*d0..d0 + 6).contains(&d));
        }
    }
    let days_before: i64 = declines.values().map(|(from, d0)| d0 - from).sum();
    let days_after = 6 * declines.len() as i64;
    let rate = (after as f64 / days_after as f64) / (before as f64 / days_before as f64);
    eprintln!("{} decliners: {before} sessions before, {after} after", declines.len());
    in_band("session rate while declining / before", rate, 0.0..=0.65);
}

#[test]
fn engaged_leads_convert_more() {
    let r = run();
    // Per visitor who signed up: engagement before sign-up, and purchase within 14 days after.
    let visitors: HashSet<&str> =
        r.truth.iter().filter(|t| t.segment == Segment::Visitor).map(|t| t.anon_id.as_str()).collect();
    let mut leads: HashMap<&str, (usize, Option<i64>, bool)> = HashMap::new();
    for e in r.events.iter().filter(|e| visitors.contains(str_of(e, "anon_id"))) {
        let l = leads.entry(str_of(e, "anon_id")).or_insert((0, None, false));
        match (ty(e), l.1) {
            ("product_view" | "add_to_cart" | "search", None) => l.0 += 1,
            ("signup", None) => l.1 = Some(millis(e)),
            ("purchase", Some(t)) if millis(e) - t < 14 * DAY_MS => l.2 = true,
            _ => {}
        }
    }
    let mut leads: Vec<_> = leads.into_values().filter(|l| l.1.is_some()).collect();
    leads.sort_by_key(|l| l.0);
    let (low, high) = leads.split_at(leads.len() / 2);
    let conv = |v: &[(usize, Option<i64>, bool)]| ratio(v.iter().filter(|l| l.2).count(), v.len());
    in_band("visitors who sign up", ratio(leads.len(), visitors.len()), 0.05..=0.3);
    in_band("lead conversion", conv(&leads), 0.1..=0.6);
    eprintln!("conversion of low-engagement leads {:.3}, high {:.3}", conv(low), conv(high));
    assert!(conv(high) > conv(low) + 0.1, "engagement does not predict lead conversion");
}
