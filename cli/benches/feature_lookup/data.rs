//! The benchmark's data: one `user_activity` row per user, with realistic typed values and a
//! recent event time (so every value is `PRESENT`), put into Livora's online store (redb or
//! Redis) and written to a CSV file for Feast.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use livora_common::ClientId;
use livora_feature_store::online::{OnlineConfig, RedbConfig, RedisConfig};
use livora_feature_store::{OnlineRow, RowKey, Value};
use livora_models::Column;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The feature view read: 25 features (23 stored, 2 `days_since` computed at read time).
pub(crate) const VIEW: &str = "user_activity";
/// Its entity.
const ENTITY: &str = "user";
/// Rows per write to the online store.
const WRITE_BATCH: usize = 1_000;
pub(crate) const DAY_US: i64 = 86_400_000_000;

/// The kind of a feature's value.
#[derive(Clone, Copy)]
enum Kind {
    Timestamp,
    Int,
    Float,
    Text,
    /// Computed by Livora at read time from the named timestamp; stored precomputed for Feast.
    DaysSince(&'static str),
}

/// The 25 features of `user_activity` (feature-store/example-repo), in the view's order.
const FEATURES: [(&str, Kind); 25] = [
    ("last_seen_at", Kind::Timestamp),
    ("days_since_last_seen", Kind::DaysSince("last_seen_at")),
    ("last_purchase_at", Kind::Timestamp),
    ("days_since_last_purchase", Kind::DaysSince("last_purchase_at")),
    ("orders_lifetime", Kind::Int),
    ("revenue_lifetime", Kind::Float),
    ("orders_30d", Kind::Int),
    ("revenue_30d", Kind::Float),
    ("avg_order_value_30d", Kind::Float),
    ("max_order_value_30d", Kind::Float),
    ("orders_7d", Kind::Int),
    ("product_views_1h", Kind::Int),
    ("product_views_24h", Kind::Int),
    ("product_views_7d", Kind::Int),
    ("add_to_carts_24h", Kind::Int),
    ("add_to_carts_7d", Kind::Int),
    ("checkouts_7d", Kind::Int),
    ("categories_viewed_7d", Kind::Int),
    ("last_viewed_category", Kind::Text),
    ("sessions_24h", Kind::Int),
    ("sessions_7d", Kind::Int),
    ("sessions_30d", Kind::Int),
    ("last_touch_channel", Kind::Text),
    ("campaign_clicks_30d", Kind::Int),
    ("email_opens_30d", Kind::Int),
];

const CATEGORIES: [&str; 8] = ["shoes", "outerwear", "dresses", "accessories", "bags", "knitwear", "denim", "sport"];
const CHANNELS: [&str; 6] = ["email", "push", "organic_search", "paid_search", "social", "direct"];

/// The references of the 25 features, `user_activity:<name>`, as both APIs take them.
pub(crate) fn feature_refs() -> Vec<String> {
    FEATURES.iter().map(|(name, _)| format!("{VIEW}:{name}")).collect()
}

/// How many features a lookup answers per entity.
pub(crate) const FEATURE_COUNT: usize = FEATURES.len();

/// The id of user `i`, as stored and as requested.
pub(crate) fn user_id(i: usize) -> String {
    format!("u-{i:07}")
}

/// The generated rows, `(user index, row)`; the row's values are the 23 stored features.
pub(crate) struct Rows {
    /// One row per user.
    pub(crate) rows: Vec<OnlineRow>,
}

impl Rows {
    /// `users` rows with event times in the last minute before `now` (µs since the epoch).
    pub(crate) fn generate(users: usize, now: i64, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let rows = (0..users).map(|_| row(&mut rng, now)).collect();
        Self { rows }
    }

    /// Writes the rows as CSV for Feast: `user_id,event_timestamp,<25 features>`, timestamps in
    /// µs since the epoch, the two `days_since` features precomputed as of `now`.
    pub(crate) fn write_csv(&self, path: &Path, now: i64) -> Result<()> {
        let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let header: Vec<&str> = FEATURES.iter().map(|(n, _)| *n).collect();
        writeln!(out, "user_id,event_timestamp,{}", header.join(","))?;
        for (i, row) in self.rows.iter().enumerate() {
            write!(out, "{},{}", user_id(i), row.event_time)?;
            for (name, kind) in FEATURES {
                let value = match kind {
                    Kind::DaysSince(of) => match row.get(of) {
                        Some(Value::Timestamp(t)) => Value::Float64((now - t) as f64 / DAY_US as f64),
                        _ => Value::Null,
                    },
                    _ => row.get(name).cloned().unwrap_or(Value::Null),
                };
                match value {
                    Value::Null => write!(out, ",")?,
                    Value::Bool(b) => write!(out, ",{b}")?,
                    Value::Int64(v) | Value::Timestamp(v) => write!(out, ",{v}")?,
                    Value::Float64(f) => write!(out, ",{f}")?,
                    // Categories and channels hold no comma or quote.
                    Value::String(s) => write!(out, ",{s}")?,
                }
            }
            writeln!(out)?;
        }
        out.flush()?;
        Ok(())
    }

    /// Writes every row, and the `extra` rows of other views (the model's `customer_profile`),
    /// to the online store `config` opens under `data_dir`, in batches, and closes it (redb
    /// admits one process: the server opens the file after this returns).
    pub(crate) async fn populate(
        &self,
        config: &OnlineConfig,
        data_dir: &Path,
        client: &ClientId,
        extra: &[(RowKey, OnlineRow)],
    ) -> Result<()> {
        let store = livora_feature_store::online::open(config, data_dir).await?;
        let rows = self.rows.iter().enumerate().map(|(i, row)| (RowKey::new(ENTITY, user_id(i), VIEW), row.clone()));
        let mut written = 0;
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        for row in rows.chain(extra.iter().cloned()) {
            batch.push(row);
            if batch.len() == WRITE_BATCH {
                written += store.write(client, &batch).await?;
                batch.clear();
            }
        }
        written += store.write(client, &batch).await?;
        let expected = self.rows.len() + extra.len();
        ensure!(written == expected, "wrote {written} of {expected} rows");
        Ok(())
    }
}

/// The model inputs among the 25 features of every row, as the server reads them online at
/// `now`: the numbers and texts, the `days_since` features computed, the timestamps left out (as
/// `livora train` leaves them out).
pub(crate) fn user_activity_inputs(rows: &Rows, now: i64) -> Vec<(&'static str, Column)> {
    FEATURES
        .iter()
        .filter_map(|&(name, kind)| {
            let column = match kind {
                Kind::Timestamp => return None,
                Kind::DaysSince(of) => Column::Numeric(
                    rows.rows
                        .iter()
                        .map(|r| match r.get(of) {
                            Some(Value::Timestamp(t)) => Some((now - t) as f64 / DAY_US as f64),
                            _ => None,
                        })
                        .collect(),
                ),
                Kind::Int | Kind::Float => {
                    Column::Numeric(rows.rows.iter().map(|r| r.get(name).and_then(number)).collect())
                }
                Kind::Text => Column::Categorical(
                    rows.rows
                        .iter()
                        .map(|r| match r.get(name) {
                            Some(Value::String(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .collect(),
                ),
            };
            Some((name, column))
        })
        .collect()
}

/// A stored value as a model input number (booleans as 1 / 0); `None` for text, timestamps and
/// nulls.
pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int64(i) => Some(*i as f64),
        Value::Float64(f) => Some(*f),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// One user's row: the 23 stored features.
fn row(rng: &mut SmallRng, now: i64) -> OnlineRow {
    let event_time = now - rng.random_range(0..60_000_000);
    let orders_lifetime: i64 = rng.random_range(0..60);
    let orders_30d = rng.random_range(0..=orders_lifetime.min(6));
    let avg = if orders_30d > 0 { (rng.random_range(1_500..25_000) as f64) / 100.0 } else { 0.0 };
    let views_7d: i64 = rng.random_range(0..300);
    let views_24h = rng.random_range(0..=views_7d.min(60));
    let sessions_30d: i64 = rng.random_range(1..40);
    let sessions_7d = rng.random_range(1..=sessions_30d.min(14));
    let mut values = Vec::with_capacity(FEATURES.len());
    for (name, kind) in FEATURES {
        let value = match (name, kind) {
            (_, Kind::DaysSince(_)) => continue,
            ("last_seen_at", _) => Value::Timestamp(event_time - rng.random_range(0..3 * DAY_US)),
            ("last_purchase_at", _) => Value::Timestamp(now - rng.random_range(DAY_US..400 * DAY_US)),
            ("orders_lifetime", _) => Value::Int64(orders_lifetime),
            ("orders_30d", _) => Value::Int64(orders_30d),
            ("orders_7d", _) => Value::Int64(orders_30d.min(rng.random_range(0..3))),
            ("revenue_lifetime", _) => Value::Float64(orders_lifetime as f64 * avg.max(42.0)),
            ("revenue_30d", _) => Value::Float64(orders_30d as f64 * avg),
            ("avg_order_value_30d", _) => Value::Float64(avg),
            ("max_order_value_30d", _) => Value::Float64(avg * 1.4),
            ("product_views_7d", _) => Value::Int64(views_7d),
            ("product_views_24h", _) => Value::Int64(views_24h),
            ("product_views_1h", _) => Value::Int64(views_24h.min(rng.random_range(0..8))),
            ("sessions_30d", _) => Value::Int64(sessions_30d),
            ("sessions_7d", _) => Value::Int64(sessions_7d),
            ("sessions_24h", _) => Value::Int64(sessions_7d.min(rng.random_range(0..4))),
            ("last_viewed_category", _) => Value::String(CATEGORIES[rng.random_range(0..CATEGORIES.len())].into()),
            ("last_touch_channel", _) => Value::String(CHANNELS[rng.random_range(0..CHANNELS.len())].into()),
            (_, Kind::Int) => Value::Int64(rng.random_range(0..30)),
            (_, Kind::Float) => Value::Float64(rng.random_range(0.0..100.0)),
            (_, Kind::Text) => Value::String("other".into()),
            (_, Kind::Timestamp) => Value::Timestamp(now - rng.random_range(0..DAY_US)),
        };
        values.push((name.to_owned(), value));
    }
    OnlineRow { event_time, created: event_time, values }
}

/// The embedded store, as the server opens it by default, but without fsync per batch (one
/// durable commit when it closes).
pub(crate) fn redb_config() -> OnlineConfig {
    OnlineConfig::Redb(RedbConfig { fsync: false, ..RedbConfig::default() })
}

/// Redis at `url`, under `key_prefix`.
pub(crate) fn redis_config(url: &str, key_prefix: &str) -> OnlineConfig {
    OnlineConfig::Redis(RedisConfig {
        url: url.to_owned(),
        key_prefix: key_prefix.to_owned(),
        ..RedisConfig::default()
    })
}

/// Deletes every Redis key under `key_prefix` (the run's rows); returns how many.
pub(crate) async fn delete_redis_prefix(url: &str, key_prefix: &str) -> Result<usize> {
    let client = redis::Client::open(url).context("bad redis url")?;
    let mut conn = client.get_multiplexed_async_connection().await.context("cannot connect to redis")?;
    let mut deleted = 0;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{key_prefix}*"))
            .arg("COUNT")
            .arg(5_000)
            .query_async(&mut conn)
            .await
            .context("SCAN failed")?;
        if !keys.is_empty() {
            let n: usize = redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await.context("UNLINK failed")?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
