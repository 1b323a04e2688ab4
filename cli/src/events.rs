//! `livora events …`: what arrived in the lake.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use livora_common::ClientId;
use livora_ingest::lake::{LakeReader, store};

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Counts a client's events in the lake, by event type.
    Count {
        /// The client.
        #[arg(long)]
        client: ClientId,
        /// Only events at or after this time: RFC 3339, or a duration ago (`1h`, `7d`).
        #[arg(long)]
        since: Option<String>,
    },
    /// Prints a client's latest events in the lake.
    Tail {
        /// The client.
        #[arg(long)]
        client: ClientId,
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// Prints a client's quarantined records: refused requests and undecodable records.
    Quarantine {
        /// The client (`_unknown` for records whose client could not be read).
        #[arg(long)]
        client: String,
        /// How many, newest last.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
}

pub async fn run(config: &Config, command: EventsCommand) -> Result<()> {
    let reader = LakeReader::new(store::open(&config.lake_root(), &config.lake)?);
    match command {
        EventsCommand::Count { client, since } => {
            let since = since.as_deref().map(parse_since).transpose()?;
            let events = reader.events(client.as_str(), since).await?;
            let mut by_type = std::collections::BTreeMap::<&str, u64>::new();
            for e in &events {
                *by_type.entry(e.event_type.as_str()).or_default() += 1;
            }
            println!("{} events", events.len());
            for (t, n) in by_type {
                println!("  {t:<24} {n}");
            }
        }
        EventsCommand::Tail { client, lines } => {
            let mut events = reader.events(client.as_str(), None).await?;
            events.sort_by_key(|e| e.timestamp_micros);
            for e in events.iter().rev().take(lines).rev() {
                let ts = DateTime::from_timestamp_micros(e.timestamp_micros).unwrap_or_default();
                println!(
                    "{}  {:<20} {}",
                    ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    e.event_type,
                    e.event_id
                );
            }
        }
        EventsCommand::Quarantine { client, lines } => {
            let mut rows = reader.quarantine(&client).await?;
            rows.sort_by_key(|r| r.received_at_micros);
            println!("{} quarantined records", rows.len());
            for r in rows.iter().rev().take(lines).rev() {
                let ts = DateTime::from_timestamp_micros(r.received_at_micros).unwrap_or_default();
                println!("{}  {:<10} {}", ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), r.stage, r.reason);
            }
        }
    }
    Ok(())
}

/// `since` as RFC 3339 or as a duration before now.
fn parse_since(s: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let Ok(ago) = humantime::parse_duration(s) else {
        bail!("--since `{s}` is neither an RFC 3339 time nor a duration such as 1h or 7d");
    };
    let ago = chrono::Duration::from_std(ago).context("--since is too far back")?;
    Ok(Utc::now() - ago)
}
