//! Feature definitions as code.
//!
//! A feature repository is a folder of TOML files. Each file may hold any of four tables of
//! arrays — `[[entity]]`, `[[source]]`, `[[feature_view]]` (with its `[[feature_view.feature]]`s)
//! and `[[feature_service]]` — so a team can group definitions as it likes. [`load_repo`] reads
//! every `*.toml` file under the folder, checks every rule and reports **every** problem with the
//! file and line it comes from; what it returns is a [`Repo`] of resolved definitions, which is
//! what the registry stores.
//!
//! A view whose source is the event log computes **streaming aggregations**; a view whose source is
//! a Parquet table serves its columns (a **batch view**, loaded online by materialization). Both
//! may add `days_since` features, computed when read from a timestamp feature of the same view.
//!
//! # Windows
//! An aggregation over `window = W` with `hop = h` buckets events by `floor(event_time / h)`; its
//! value at time `t` aggregates the `W / h` buckets that end with the one holding `t`, i.e. the
//! events with `bucket_start(t) + h − W ≤ event_time ≤ t`. A tumbling window is the case `h = W`
//! (`kind = "tumbling"`). Without `hop`, the largest of 1d, 1h, 5m, 1m and 1s that cuts the window in
//! at least 24 buckets is used (1h → 1m, 24h → 1h, 7d → 1h, 30d → 1d); without `window`, the
//! aggregation runs over the entity's whole history. Stream and batch engines share this rule, so
//! they compute the same numbers.

mod load;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::value::ValueType;

pub use load::{DefinitionError, load_repo, parse_files};

/// The example shop feature repository (`feature-store/example-repo`), compiled in: the demo
/// registers it for the `demo` client.
pub const EXAMPLE_REPO: [(&str, &str); 9] = [
    ("entities.toml", include_str!("../../example-repo/entities.toml")),
    ("offers.toml", include_str!("../../example-repo/offers.toml")),
    ("sources.toml", include_str!("../../example-repo/sources.toml")),
    ("user_activity.toml", include_str!("../../example-repo/user_activity.toml")),
    ("user_interests.toml", include_str!("../../example-repo/user_interests.toml")),
    ("product_activity.toml", include_str!("../../example-repo/product_activity.toml")),
    ("customer_profile.toml", include_str!("../../example-repo/customer_profile.toml")),
    ("predictions.toml", include_str!("../../example-repo/predictions.toml")),
    ("services.toml", include_str!("../../example-repo/services.toml")),
];

/// `d` in the unit definitions are written in: `90d`, `36h`, `5m`, `30s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, len) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= len && ms.is_multiple_of(len) {
            return format!("{}{unit}", ms / len);
        }
    }
    format!("{ms}ms")
}

/// Every definition of a feature repository, resolved and checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Repo {
    /// Entities by name.
    pub entities: BTreeMap<String, Entity>,
    /// Sources by name.
    pub sources: BTreeMap<String, Source>,
    /// Feature views by name (a new version of a view is a view of its own: `user_activity@v2`).
    pub views: BTreeMap<String, FeatureView>,
    /// Feature services by name.
    pub services: BTreeMap<String, FeatureService>,
    /// The offers a next-best-offer model ranks, by name.
    #[serde(default)]
    pub offers: BTreeMap<String, Offer>,
}

/// Where a definition was written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The file, relative to the repository root.
    pub file: PathBuf,
    /// Its 1-based line.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Something features describe: a user, a product, a contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Its name.
    pub name: String,
    /// The column(s) that identify one (`user_id`).
    pub join_keys: Vec<String>,
    /// The type of the join key(s).
    pub value_type: ValueType,
    /// What it is.
    pub description: String,
    /// Where it is defined.
    pub origin: Origin,
}

/// Where a view's data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Its name.
    pub name: String,
    /// What kind of source.
    pub kind: SourceKind,
    /// What it holds.
    pub description: String,
    /// Where it is defined.
    pub origin: Origin,
}

/// The kinds of source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceKind {
    /// The client's event log; `event_types` filters it when not empty.
    EventLog {
        /// Only these event types reach the source's views (empty: all).
        event_types: Vec<String>,
    },
    /// A table of Parquet files in the client's offline store.
    Parquet {
        /// The table's folder, relative to the client's offline root.
        path: String,
        /// The column holding each row's event time.
        timestamp_field: String,
        /// The column holding when each row was written, if any (breaks event-time ties).
        created_timestamp_field: Option<String>,
    },
}

/// A named, typed group of features of one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureView {
    /// Its name, with `@vN` for versions after the first.
    pub name: String,
    /// The entity it describes.
    pub entity: String,
    /// Its source.
    pub source: String,
    /// How long a value stays valid after its event time; `None`: forever. Honoured online and
    /// in point-in-time retrieval.
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// Whether the view is served online.
    pub online: bool,
    /// Who answers for it.
    pub owner: String,
    /// Free-form labels.
    pub tags: BTreeMap<String, String>,
    /// What it holds.
    pub description: String,
    /// Streaming views: the event field holding the entity key (`user_id`, `props.product_id`).
    pub key_field: Option<String>,
    /// Streaming views: how late an event may arrive and still be counted in its window online.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// The features, in order.
    pub features: Vec<Feature>,
    /// Where it is defined.
    pub origin: Origin,
}

impl FeatureView {
    /// Whether the view is computed from the event log by streaming aggregation.
    pub fn is_streaming(&self) -> bool {
        self.features.iter().any(|f| matches!(f.kind, FeatureKind::Aggregation(_)))
    }

    /// The feature `name`, if the view has it.
    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }
}

/// One feature of a view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feature {
    /// Its name, unique in the view.
    pub name: String,
    /// Its type.
    pub value_type: ValueType,
    /// How it is computed.
    pub kind: FeatureKind,
    /// What it means.
    pub description: String,
}

/// How a feature gets its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    /// A column of the view's Parquet source.
    Column,
    /// A windowed aggregation of events.
    Aggregation(Aggregation),
    /// Days (fractional) from the timestamp feature `of` to the time of the read.
    DaysSince {
        /// A timestamp feature of the same view.
        of: String,
    },
}

/// A windowed aggregation of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregation {
    /// The function.
    pub function: AggFunction,
    /// The event field it reads (`props.revenue`, `timestamp`); `None` for `count`.
    pub field: Option<String>,
    /// Only events of these types count (empty: the source's events).
    pub event_types: Vec<String>,
    /// The window; `None`: the entity's whole history.
    pub window: Option<Window>,
}

/// A sliding (or, when `hop == size`, tumbling) window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The window's length.
    #[serde(with = "humantime_serde")]
    pub size: Duration,
    /// The bucket length; divides `size`.
    #[serde(with = "humantime_serde")]
    pub hop: Duration,
}

/// The aggregation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggFunction {
    /// Number of events (int64).
    Count,
    /// Sum of a numeric field (float64, or int64 when declared).
    Sum,
    /// Mean of a numeric field (float64; null over no events).
    Avg,
    /// Smallest value of a numeric field (null over no events).
    Min,
    /// Largest value of a numeric field (null over no events).
    Max,
    /// The field's value on the latest event (ties: the greatest event id).
    Last,
    /// Number of distinct values of the field (int64).
    DistinctCount,
}

impl AggFunction {
    /// The name used in definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
            Self::Last => "last",
            Self::DistinctCount => "distinct_count",
        }
    }
}

/// Something the shop can put in front of a customer (a promotion of some product categories):
/// what a next-best-offer model ranks. A customer accepts an offer by buying an item of one of
/// its categories (an item's `category` in a purchase event's `props.items`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Its name.
    pub name: String,
    /// The product categories whose purchase accepts it.
    pub categories: Vec<String>,
    /// What it is.
    pub description: String,
    /// Where it is defined.
    pub origin: Origin,
}

/// A named set of features that a model consumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureService {
    /// Its name.
    pub name: String,
    /// The features, as `(view, feature)`, in order (`view:*` expanded).
    pub features: Vec<(String, String)>,
    /// Who answers for it.
    pub owner: String,
    /// What it is for.
    pub description: String,
    /// Where it is defined.
    pub origin: Origin,
}
