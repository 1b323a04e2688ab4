//! Generates a run and prints its funnel statistics and the generation speed.
//!
//! `cargo run --release -p livora-simulator --example stats -- [users] [days] [seed]`

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use livora_common::ClientId;
use livora_simulator::{DAY_MS, SimConfig, Simulator};
use serde_json::Value;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let users = args.first().copied().unwrap_or(2_000) as u32;
    let days = args.get(1).copied().unwrap_or(14) as u32;
    let seed = args.get(2).copied().unwrap_or(42);
    let config = SimConfig::new(ClientId::new("demo")?, users, days, seed);
    let start = config.start.timestamp_millis();

    let began = Instant::now();
    let mut sim = Simulator::new(config);
    let mut bytes = 0usize;
    let events: Vec<Value> = sim.events().inspect(|e| bytes += e.to_string().len()).collect();
    let secs = began.elapsed().as_secs_f64();
    println!(
        "{} events ({:.1} MB JSON) in {secs:.2}s = {:.0} events/s (incl. serialisation)",
        events.len(),
        bytes as f64 / 1e6,
        events.len() as f64 / secs
    );

    let mut by_type: HashMap<&str, usize> = HashMap::new();
    let mut sessions: HashMap<&str, (bool, bool, bool, bool)> = HashMap::new(); // start, cart, purchase, campaign
    let mut revenue = Vec::new();
    let mut user_week: [HashSet<&str>; 2] = [HashSet::new(), HashSet::new()];
    for e in &events {
        let ty = e["event_type"].as_str().unwrap_or_default();
        *by_type.entry(ty).or_default() += 1;
        let s = sessions.entry(e["session_id"].as_str().unwrap_or_default()).or_default();
        match ty {
            "session_start" => s.0 = true,
            "add_to_cart" => s.1 = true,
            "purchase" => {
                s.2 = true;
                revenue.push(e["props"]["revenue"].as_f64().unwrap_or_default());
            }
            "campaign_click" => s.3 = true,
            _ => {}
        }
        if let Some(u) = e["user_id"].as_str() {
            let ts = chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str().unwrap_or_default())?;
            let week = ((ts.timestamp_millis() - start) / (7 * DAY_MS)) as usize;
            if week < 2 {
                user_week[week].insert(u);
            }
        }
    }
    let began = Instant::now();
    let n = Simulator::new(sim.config().clone()).count();
    let secs = began.elapsed().as_secs_f64();
    println!("generation alone (JSON values, no serialisation): {:.0} events/s", n as f64 / secs);
    let mut types: Vec<_> = by_type.into_iter().collect();
    types.sort();
    println!("{types:?}");
    let started: Vec<_> = sessions.values().filter(|s| s.0).collect();
    let carts = started.iter().filter(|s| s.1).count();
    let bought = started.iter().filter(|s| s.2).count();
    let camp: Vec<_> = started.iter().filter(|s| s.3).collect();
    println!(
        "sessions {} conversion {:.2}% cart sessions {:.1}% abandonment {:.1}% campaign sessions {} conv {:.2}%",
        started.len(),
        100.0 * bought as f64 / started.len() as f64,
        100.0 * carts as f64 / started.len() as f64,
        100.0 * (1.0 - bought as f64 / carts as f64),
        camp.len(),
        100.0 * camp.iter().filter(|s| s.2).count() as f64 / camp.len().max(1) as f64
    );
    revenue.sort_by(f64::total_cmp);
    let aov = revenue.iter().sum::<f64>() / revenue.len().max(1) as f64;
    println!("orders {} AOV {aov:.2} median {:.2}", revenue.len(), revenue.get(revenue.len() / 2).unwrap_or(&0.0));
    let gone = user_week[0].iter().filter(|u| !user_week[1].contains(*u)).count();
    println!(
        "identified active week 1: {} of which absent week 2: {:.1}%",
        user_week[0].len(),
        100.0 * gone as f64 / user_week[0].len().max(1) as f64
    );
    let truth = sim.ground_truth();
    let churned = truth.iter().filter(|t| t.churned_at.is_some()).count();
    let signed = truth.iter().filter(|t| t.signed_up_at.is_some()).count();
    let converted = truth
        .iter()
        .filter(|t| matches!((t.signed_up_at, t.first_purchase_at), (Some(s), Some(p)) if p >= s && (p - s).num_days() < 14))
        .count();
    println!("churned {churned}; leads {signed}, converted within 14 d {converted}");
    Ok(())
}
