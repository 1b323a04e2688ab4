//! Reading a feature repository: TOML files → checked [`Repo`], every problem with its place.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    AggFunction, Aggregation, Entity, Feature, FeatureKind, FeatureService, FeatureView, Offer, Origin, Repo, Source,
    SourceKind, Window,
};
use crate::value::ValueType;

/// One problem in a feature repository, with the file and line it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    /// The file, relative to the repository root.
    pub file: PathBuf,
    /// 1-based line (0 when the problem is with the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for DefinitionError {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    entity: Vec<Spanned<RawEntity>>,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
    #[serde(default)]
    feature_view: Vec<Spanned<RawView>>,
    #[serde(default)]
    feature_service: Vec<Spanned<RawService>>,
    #[serde(default)]
    offer: Vec<Spanned<RawOffer>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffer {
    name: Spanned<String>,
    categories: Vec<Spanned<String>>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    name: Spanned<String>,
    join_keys: Vec<String>,
    value_type: Spanned<ValueType>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default)]
    event_types: Vec<Spanned<String>>,
    path: Option<String>,
    timestamp_field: Option<String>,
    created_timestamp_field: Option<String>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawView {
    name: Spanned<String>,
    entity: Spanned<String>,
    source: Spanned<String>,
    ttl: Option<Spanned<String>>,
    #[serde(default = "yes")]
    online: bool,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    description: String,
    key_field: Option<Spanned<String>>,
    allowed_lateness: Option<Spanned<String>>,
    #[serde(default)]
    feature: Vec<Spanned<RawFeature>>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    name: Spanned<String>,
    #[serde(rename = "type")]
    value_type: Option<Spanned<ValueType>>,
    aggregate: Option<Spanned<AggFunction>>,
    field: Option<Spanned<String>>,
    #[serde(default)]
    event_types: Vec<Spanned<String>>,
    window: Option<Spanned<String>>,
    hop: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    days_since: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    features: Vec<Spanned<String>>,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    description: String,
}

/// Reads every `*.toml` file under `root` (recursively, in path order) and checks the whole.
pub fn load_repo(root: &Path) -> Result<Repo, Vec<DefinitionError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    collect(root, root, &mut files, &mut errors);
    if files.is_empty() && errors.is_empty() {
        errors.push(DefinitionError {
            file: root.to_path_buf(),
            line: 0,
            message: "no *.toml definition files found".into(),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    files.sort();
    parse_files(&files)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>, errors: &mut Vec<DefinitionError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(DefinitionError { file: dir.to_path_buf(), line: 0, message: format!("cannot read: {e}") });
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out, errors);
        } else if path.extension().is_some_and(|e| e == "toml") {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            match std::fs::read_to_string(&path) {
                Ok(text) => out.push((rel, text)),
                Err(e) => errors.push(DefinitionError { file: rel, line: 0, message: format!("cannot read: {e}") }),
            }
        }
    }
}

/// Parses and checks a repository given as `(relative path, text)` pairs.
pub fn parse_files(files: &[(PathBuf, String)]) -> Result<Repo, Vec<DefinitionError>> {
    let mut cx = Checker::default();
    let mut parsed = Vec::new();
    for (file, text) in files {
        match toml::from_str::<RawFile>(text) {
            Ok(raw) => parsed.push((file.clone(), text.as_str(), raw)),
            Err(e) => {
                let line = e.span().map_or(0, |s| line_of(text, s.start));
                cx.errors.push(DefinitionError { file: file.clone(), line, message: e.message().trim().to_string() });
            }
        }
    }
    // Entities and sources first, so that views in any file can name them.
    for (file, text, raw) in &parsed {
        let at = At { file, text };
        for e in &raw.entity {
            cx.entity(&at, e);
        }
        for s in &raw.source {
            cx.source(&at, s);
        }
    }
    for (file, text, raw) in &parsed {
        let at = At { file, text };
        for v in &raw.feature_view {
            cx.view(&at, v);
        }
    }
    for (file, text, raw) in &parsed {
        let at = At { file, text };
        for s in &raw.feature_service {
            cx.service(&at, s);
        }
        for o in &raw.offer {
            cx.offer(&at, o);
        }
    }
    if cx.errors.is_empty() { Ok(cx.repo) } else { Err(cx.errors) }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

struct At<'a> {
    file: &'a PathBuf,
    text: &'a str,
}

impl At<'_> {
    fn origin<T>(&self, s: &Spanned<T>) -> Origin {
        Origin { file: self.file.clone(), line: line_of(self.text, s.span().start) }
    }
}

#[derive(Default)]
struct Checker {
    repo: Repo,
    errors: Vec<DefinitionError>,
}

/// `[a-z][a-z0-9_]{0,62}`.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A view name: a name, optionally followed by `@v<N>` with N ≥ 2.
pub(crate) fn valid_view_name(name: &str) -> bool {
    match name.split_once('@') {
        None => valid_name(name),
        Some((base, version)) => {
            valid_name(base)
                && version.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n >= 2)
                && !version[1..].starts_with('0')
        }
    }
}

/// Event fields an aggregation may read.
pub(crate) fn valid_event_field(field: &str) -> bool {
    const TOP: [&str; 6] = ["event_id", "timestamp", "event_type", "user_id", "anon_id", "session_id"];
    if TOP.contains(&field) {
        return true;
    }
    let path = field.strip_prefix("props.").or_else(|| field.strip_prefix("context."));
    path.is_some_and(|p| p.split('.').all(|part| !part.is_empty() && part.len() <= 128))
}

fn valid_event_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/'))
}

fn duration(s: &Spanned<String>) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.get_ref())
        .map_err(|e| format!("`{}` is not a duration ({e}); write e.g. \"30m\", \"24h\", \"7d\"", s.get_ref()))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The default hop of a window: the largest of 1d, 1h, 5m, 1m, 1s that divides it in at least 24
/// buckets; a window too short for that is one bucket (tumbling).
pub(crate) fn default_hop(size: Duration) -> Duration {
    [DAY, HOUR, 5 * MINUTE, MINUTE, Duration::from_secs(1)]
        .into_iter()
        .find(|&h| size.as_micros().is_multiple_of(h.as_micros()) && size.as_micros() / h.as_micros() >= 24)
        .unwrap_or(size)
}

impl Checker {
    fn err<T>(&mut self, at: &At<'_>, s: &Spanned<T>, message: impl Into<String>) {
        let origin = at.origin(s);
        self.errors.push(DefinitionError { file: origin.file, line: origin.line, message: message.into() });
    }

    fn entity(&mut self, at: &At<'_>, e: &Spanned<RawEntity>) {
        let raw = e.get_ref();
        let name = raw.name.get_ref();
        if !valid_name(name) {
            self.err(at, &raw.name, format!("entity name `{name}` must match [a-z][a-z0-9_]{{0,62}}"));
            return;
        }
        if let Some(first) = self.repo.entities.get(name) {
            let msg = format!("duplicate entity `{name}` (first defined at {})", first.origin);
            self.err(at, &raw.name, msg);
            return;
        }
        if raw.join_keys.is_empty() {
            self.err(at, e, format!("entity `{name}`: join_keys must name at least one column"));
        }
        for k in &raw.join_keys {
            if !valid_name(k) {
                self.err(at, e, format!("entity `{name}`: join key `{k}` must match [a-z][a-z0-9_]{{0,62}}"));
            }
        }
        if matches!(raw.value_type.get_ref(), ValueType::Float64 | ValueType::Timestamp) {
            self.err(at, &raw.value_type, format!("entity `{name}`: value_type must be string, int64 or bool"));
        }
        self.repo.entities.insert(
            name.clone(),
            Entity {
                name: name.clone(),
                join_keys: raw.join_keys.clone(),
                value_type: *raw.value_type.get_ref(),
                description: raw.description.clone(),
                origin: at.origin(e),
            },
        );
    }

    fn source(&mut self, at: &At<'_>, s: &Spanned<RawSource>) {
        let raw = s.get_ref();
        let name = raw.name.get_ref();
        if !valid_name(name) {
            self.err(at, &raw.name, format!("source name `{name}` must match [a-z][a-z0-9_]{{0,62}}"));
            return;
        }
        if let Some(first) = self.repo.sources.get(name) {
            let msg = format!("duplicate source `{name}` (first defined at {})", first.origin);
            self.err(at, &raw.name, msg);
            return;
        }
        let kind = match raw.kind.get_ref().as_str() {
            "event_log" => {
                for field in [("path", raw.path.is_some()), ("timestamp_field", raw.timestamp_field.is_some())] {
                    if field.1 {
                        self.err(at, s, format!("source `{name}`: `{}` is only for parquet sources", field.0));
                    }
                }
                for t in &raw.event_types {
                    if !valid_event_type(t.get_ref()) {
                        self.err(at, t, format!("source `{name}`: `{}` is not a valid event type", t.get_ref()));
                    }
                }
                SourceKind::EventLog { event_types: raw.event_types.iter().map(|t| t.get_ref().clone()).collect() }
            }
            "parquet" => {
                if !raw.event_types.is_empty() {
                    self.err(at, s, format!("source `{name}`: `event_types` is only for event_log sources"));
                }
                let path = raw.path.clone().unwrap_or_else(|| format!("tables/{name}"));
                if path.starts_with('/') || path.split('/').any(|p| p == "..") {
                    self.err(at, s, format!("source `{name}`: path `{path}` must stay inside the offline root"));
                }
                SourceKind::Parquet {
                    path,
                    timestamp_field: raw.timestamp_field.clone().unwrap_or_else(|| "event_timestamp".into()),
                    created_timestamp_field: raw.created_timestamp_field.clone(),
                }
            }
            other => {
                self.err(at, &raw.kind, format!("source `{name}`: unknown kind `{other}` (event_log or parquet)"));
                return;
            }
        };
        self.repo.sources.insert(
            name.clone(),
            Source { name: name.clone(), kind, description: raw.description.clone(), origin: at.origin(s) },
        );
    }

    fn view(&mut self, at: &At<'_>, v: &Spanned<RawView>) {
        let raw = v.get_ref();
        let name = raw.name.get_ref().clone();
        if !valid_view_name(&name) {
            self.err(
                at,
                &raw.name,
                format!("view name `{name}` must match [a-z][a-z0-9_]{{0,62}}, optionally @v2, @v3…"),
            );
            return;
        }
        if let Some(first) = self.repo.views.get(&name) {
            let msg = format!("duplicate feature view `{name}` (first defined at {})", first.origin);
            self.err(at, &raw.name, msg);
            return;
        }
        let before = self.errors.len();
        let entity = self.repo.entities.get(raw.entity.get_ref()).cloned();
        if entity.is_none() {
            let msg = format!("view `{name}`: unknown entity `{}`", raw.entity.get_ref());
            self.err(at, &raw.entity, msg);
        }
        let source = self.repo.sources.get(raw.source.get_ref()).cloned();
        if source.is_none() {
            let msg = format!("view `{name}`: unknown source `{}`", raw.source.get_ref());
            self.err(at, &raw.source, msg);
        }
        let ttl = match &raw.ttl {
            None => None,
            Some(t) => match duration(t) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(at, t, format!("view `{name}`: ttl {e}"));
                    None
                }
            },
        };
        let allowed_lateness = match &raw.allowed_lateness {
            None => HOUR,
            Some(t) => duration(t).unwrap_or_else(|e| {
                self.err(at, t, format!("view `{name}`: allowed_lateness {e}"));
                HOUR
            }),
        };
        let streaming = matches!(source.as_ref().map(|s| &s.kind), Some(SourceKind::EventLog { .. }));
        let key_field = match (&raw.key_field, &entity) {
            (Some(k), _) if !streaming => {
                self.err(at, k, format!("view `{name}`: key_field is only for views of an event_log source"));
                None
            }
            (Some(k), _) => {
                if !valid_event_field(k.get_ref()) {
                    let msg = format!("view `{name}`: key_field `{}` is not an event field", k.get_ref());
                    self.err(at, k, msg);
                }
                Some(k.get_ref().clone())
            }
            (None, Some(e)) if streaming => {
                if e.join_keys.len() != 1 {
                    self.err(
                        at,
                        v,
                        format!(
                            "view `{name}`: entity `{}` has a composite key; streaming views need a single key",
                            e.name
                        ),
                    );
                }
                e.join_keys.first().map(|k| match k.as_str() {
                    "user_id" | "anon_id" | "session_id" | "event_id" => k.clone(),
                    _ => format!("props.{k}"),
                })
            }
            (None, _) => None,
        };
        if raw.feature.is_empty() {
            self.err(at, v, format!("view `{name}`: declares no [[feature_view.feature]]"));
        }
        let mut features: Vec<(Feature, &Spanned<RawFeature>)> = Vec::new();
        let mut failed = BTreeSet::new();
        for f in &raw.feature {
            match self.feature(at, &name, streaming, f) {
                Some(feature) if features.iter().any(|(x, _)| x.name == feature.name) => {
                    self.err(at, &f.get_ref().name, format!("view `{name}`: duplicate feature `{}`", feature.name));
                }
                Some(feature) => features.push((feature, f)),
                None => {
                    failed.insert(f.get_ref().name.get_ref().as_str());
                }
            }
        }
        // `days_since` must name a timestamp feature of this view (one that failed was reported).
        for (f, raw_f) in &features {
            if let FeatureKind::DaysSince { of } = &f.kind {
                if failed.contains(of.as_str()) {
                    continue;
                }
                match features.iter().map(|(x, _)| x).find(|x| &x.name == of) {
                    Some(t) if t.value_type == ValueType::Timestamp => {}
                    Some(t) => {
                        let msg = format!(
                            "view `{name}`: feature `{}`: days_since needs a timestamp feature; `{of}` is {}",
                            f.name, t.value_type
                        );
                        self.err(at, raw_f, msg);
                    }
                    None => {
                        let msg =
                            format!("view `{name}`: feature `{}`: days_since names unknown feature `{of}`", f.name);
                        self.err(at, raw_f, msg);
                    }
                }
            }
        }
        if self.errors.len() > before {
            return;
        }
        self.repo.views.insert(
            name.clone(),
            FeatureView {
                name,
                entity: raw.entity.get_ref().clone(),
                source: raw.source.get_ref().clone(),
                ttl,
                online: raw.online,
                owner: raw.owner.clone(),
                tags: raw.tags.clone(),
                description: raw.description.clone(),
                key_field,
                allowed_lateness,
                features: features.into_iter().map(|(f, _)| f).collect(),
                origin: at.origin(v),
            },
        );
    }

    fn feature(&mut self, at: &At<'_>, view: &str, streaming: bool, f: &Spanned<RawFeature>) -> Option<Feature> {
        let raw = f.get_ref();
        let name = raw.name.get_ref().clone();
        if !valid_name(&name) {
            self.err(at, &raw.name, format!("view `{view}`: feature name `{name}` must match [a-z][a-z0-9_]{{0,62}}"));
            return None;
        }
        let declared = raw.value_type.as_ref().map(|t| *t.get_ref());
        let wrong = |this: &mut Self, what: &str| {
            this.err(at, f, format!("view `{view}`: feature `{name}`: {what}"));
            None
        };
        if let Some(of) = &raw.days_since {
            if raw.aggregate.is_some() || raw.field.is_some() || raw.window.is_some() {
                return wrong(self, "days_since cannot be combined with aggregate, field or window");
            }
            if declared.is_some_and(|t| t != ValueType::Float64) {
                return wrong(self, "type mismatch: days_since is float64");
            }
            return Some(Feature {
                name,
                value_type: ValueType::Float64,
                kind: FeatureKind::DaysSince { of: of.get_ref().clone() },
                description: raw.description.clone(),
            });
        }
        let Some(function) = raw.aggregate.as_ref().map(|a| *a.get_ref()) else {
            if streaming {
                return wrong(self, "views of an event_log source need `aggregate` (or `days_since`) on every feature");
            }
            let Some(value_type) = declared else {
                return wrong(self, "`type` is required (bool, int64, float64, string or timestamp)");
            };
            if raw.field.is_some() || raw.window.is_some() || raw.hop.is_some() || !raw.event_types.is_empty() {
                return wrong(self, "field, window, hop and event_types are only for aggregations");
            }
            return Some(Feature { name, value_type, kind: FeatureKind::Column, description: raw.description.clone() });
        };
        if !streaming {
            return wrong(self, "aggregations need a view of an event_log source");
        }
        let field = raw.field.as_ref().map(|f| f.get_ref().clone());
        match (&field, function) {
            (Some(_), AggFunction::Count) => return wrong(self, "count takes no `field`"),
            (None, AggFunction::Count) => {}
            (None, _) => return wrong(self, &format!("{} needs a `field`", function.as_str())),
            (Some(path), _) if !valid_event_field(path) => {
                return wrong(
                    self,
                    &format!(
                        "`{path}` is not an event field (event_id, timestamp, event_type, user_id, anon_id, \
                         session_id, props.<path>, context.<path>)"
                    ),
                );
            }
            _ => {}
        }
        let on_timestamp = field.as_deref() == Some("timestamp");
        let value_type = match (function, declared) {
            (AggFunction::Count | AggFunction::DistinctCount, None | Some(ValueType::Int64)) => ValueType::Int64,
            (AggFunction::Avg, None | Some(ValueType::Float64)) => ValueType::Float64,
            (AggFunction::Sum, None) => ValueType::Float64,
            (AggFunction::Sum, Some(t @ (ValueType::Int64 | ValueType::Float64))) => t,
            (AggFunction::Min | AggFunction::Max | AggFunction::Last, None) if on_timestamp => ValueType::Timestamp,
            (AggFunction::Min | AggFunction::Max, None) => ValueType::Float64,
            (AggFunction::Min | AggFunction::Max, Some(t @ (ValueType::Int64 | ValueType::Float64))) => t,
            (AggFunction::Min | AggFunction::Max, Some(ValueType::Timestamp)) if on_timestamp => ValueType::Timestamp,
            (AggFunction::Last, None) => ValueType::String,
            (AggFunction::Last, Some(t)) => t,
            (_, Some(t)) => {
                return wrong(self, &format!("type mismatch: {} cannot produce {t}", function.as_str()));
            }
        };
        if on_timestamp && matches!(function, AggFunction::Sum | AggFunction::Avg) {
            return wrong(self, &format!("{} of timestamp is meaningless", function.as_str()));
        }
        for t in &raw.event_types {
            if !valid_event_type(t.get_ref()) {
                let msg = format!("view `{view}`: feature `{name}`: `{}` is not a valid event type", t.get_ref());
                self.err(at, t, msg);
                return None;
            }
        }
        let window = match (&raw.window, &raw.hop, raw.kind.as_ref().map(|k| k.get_ref().as_str())) {
            (None, None, None) => None,
            (None, _, _) => return wrong(self, "hop and kind need a `window`"),
            (Some(w), hop, kind) => {
                let size = match duration(w) {
                    Ok(d) => d,
                    Err(e) => return wrong(self, &format!("window {e}")),
                };
                let hop = match (hop, kind) {
                    (Some(_), Some("tumbling")) => return wrong(self, "a tumbling window takes no `hop`"),
                    (_, Some(k)) if k != "tumbling" && k != "sliding" => {
                        return wrong(self, &format!("unknown window kind `{k}` (sliding or tumbling)"));
                    }
                    (None, Some("tumbling")) => size,
                    (None, _) => default_hop(size),
                    (Some(h), _) => match duration(h) {
                        Ok(d) => d,
                        Err(e) => return wrong(self, &format!("hop {e}")),
                    },
                };
                if hop > size || !size.as_micros().is_multiple_of(hop.as_micros()) {
                    return wrong(self, "the hop must divide the window");
                }
                if size.as_micros() / hop.as_micros() > 10_000 {
                    return wrong(self, "the window holds more than 10,000 hops; choose a longer hop");
                }
                Some(Window { size, hop })
            }
        };
        Some(Feature {
            name,
            value_type,
            kind: FeatureKind::Aggregation(Aggregation {
                function,
                field,
                event_types: raw.event_types.iter().map(|t| t.get_ref().clone()).collect(),
                window,
            }),
            description: raw.description.clone(),
        })
    }

    fn service(&mut self, at: &At<'_>, s: &Spanned<RawService>) {
        let raw = s.get_ref();
        let name = raw.name.get_ref();
        if !valid_name(name) {
            self.err(at, &raw.name, format!("feature service name `{name}` must match [a-z][a-z0-9_]{{0,62}}"));
            return;
        }
        if let Some(first) = self.repo.services.get(name) {
            let msg = format!("duplicate feature service `{name}` (first defined at {})", first.origin);
            self.err(at, &raw.name, msg);
            return;
        }
        let mut features = Vec::new();
        let mut seen = BTreeSet::new();
        for r in &raw.features {
            let Some((view, feature)) = r.get_ref().split_once(':') else {
                self.err(at, r, format!("service `{name}`: `{}` must be `view:feature` or `view:*`", r.get_ref()));
                continue;
            };
            let Some(v) = self.repo.views.get(view) else {
                self.err(at, r, format!("service `{name}`: unknown feature view `{view}`"));
                continue;
            };
            let names: Vec<String> = if feature == "*" {
                v.features.iter().map(|f| f.name.clone()).collect()
            } else if v.feature(feature).is_some() {
                vec![feature.to_string()]
            } else {
                self.err(at, r, format!("service `{name}`: view `{view}` has no feature `{feature}`"));
                continue;
            };
            for f in names {
                if seen.insert((view.to_string(), f.clone())) {
                    features.push((view.to_string(), f));
                }
            }
        }
        if raw.features.is_empty() {
            self.err(at, s, format!("service `{name}`: lists no features"));
        }
        self.repo.services.insert(
            name.clone(),
            FeatureService {
                name: name.clone(),
                features,
                owner: raw.owner.clone(),
                description: raw.description.clone(),
                origin: at.origin(s),
            },
        );
    }

    fn offer(&mut self, at: &At<'_>, o: &Spanned<RawOffer>) {
        let raw = o.get_ref();
        let name = raw.name.get_ref();
        if !valid_name(name) {
            self.err(at, &raw.name, format!("offer name `{name}` must match [a-z][a-z0-9_]{{0,62}}"));
            return;
        }
        if let Some(first) = self.repo.offers.get(name) {
            let msg = format!("duplicate offer `{name}` (first defined at {})", first.origin);
            self.err(at, &raw.name, msg);
            return;
        }
        if raw.categories.is_empty() {
            self.err(at, o, format!("offer `{name}`: categories must name at least one product category"));
        }
        let mut categories: Vec<String> = Vec::new();
        for c in &raw.categories {
            let category = c.get_ref();
            if category.is_empty() || category.len() > 128 || category.chars().any(char::is_control) {
                self.err(at, c, format!("offer `{name}`: category `{category}` must be 1 to 128 printable characters"));
            } else if categories.contains(category) {
                self.err(at, c, format!("offer `{name}`: category `{category}` is listed twice"));
            } else {
                categories.push(category.clone());
            }
        }
        self.repo.offers.insert(
            name.clone(),
            Offer { name: name.clone(), categories, description: raw.description.clone(), origin: at.origin(o) },
        );
    }
}
