//! A client's definitions compiled for serving, and the per-client cache that keeps them.
//!
//! A [`Catalog`] is built once per registry version: views by name with their entity's join keys,
//! ttl in microseconds and both names of every feature (`feature`, `view__feature`) ready to
//! answer with; feature services already resolved to [`Plan`]s. Lists of references
//! (`view:feature`) are resolved on first use and their plans kept with the catalog (a model's
//! `Predict` asks for the same 25 features on every call; resolving them cost about 5 µs a call).
//! The hot path then does map look-ups and reads, nothing else.
//!
//! [`Catalogs`] caches one catalog per client for `registry_refresh`. When that has passed, the
//! next request asks the registry for the client's version number only, rebuilds the catalog if
//! it changed, and keeps it for another period; requests arriving meanwhile are answered from the
//! catalog in hand, so at most one request per client waits on the database per period. If the
//! registry fails, the last catalog keeps being served (and the failure logged) until it answers
//! again; a client never seen before gets the error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use livora_common::ClientId;

use crate::definitions::{FeatureKind, Repo};
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::value::ValueType;

/// The separator of full feature names: `view__feature`, as Feast writes them.
pub const FULL_NAME_SEPARATOR: &str = "__";

/// One client's definitions, compiled for serving.
#[derive(Debug)]
pub struct Catalog {
    /// The registry version these definitions come from.
    pub version: i64,
    views: Vec<ViewPlan>,
    by_name: HashMap<String, usize>,
    /// Each service's plan, or the error it answers with (a service naming a view that is not
    /// served online, for instance).
    services: HashMap<String, Result<Arc<Plan>, Refusal>>,
    /// The plans of the lists of references resolved so far, at most [`MAX_CACHED_PLANS`].
    plans: RwLock<HashMap<Box<[String]>, Arc<Plan>>>,
}

/// How many lists of references a catalog keeps the plans of. Callers ask for a few lists
/// (one per model and application screen); the bound keeps a caller that sends a new list on
/// every call from growing the cache without end: beyond it, new lists are resolved per call.
pub const MAX_CACHED_PLANS: usize = 1024;

/// Why a feature service cannot be served, kept with its class.
#[derive(Debug, Clone)]
enum Refusal {
    NotFound(String),
    Invalid(String),
}

/// A feature view as serving needs it.
#[derive(Debug)]
pub struct ViewPlan {
    /// The view's name (with `@vN`).
    pub name: String,
    /// Its entity's name.
    pub entity: String,
    /// The entity's join keys, in order.
    pub join_keys: Vec<String>,
    /// The type of the join keys.
    pub key_type: ValueType,
    /// How long a row stays valid after its event time, in µs; `None`: forever.
    pub ttl_micros: Option<i64>,
    /// Whether the view is served online.
    pub online: bool,
    /// Its features, in order.
    pub features: Vec<FeaturePlan>,
}

/// A feature as serving needs it.
#[derive(Debug)]
pub struct FeaturePlan {
    /// `feature`.
    pub name: String,
    /// `view__feature`.
    pub full_name: String,
    /// Its declared type.
    pub value_type: ValueType,
    /// Where its value comes from.
    pub source: FeatureSource,
}

/// Where a feature's value comes from.
#[derive(Debug)]
pub enum FeatureSource {
    /// Stored in the row under the feature's name. `hint` is where the row is expected to hold
    /// it (its position among the view's stored features), tried before a search.
    Stored {
        /// Expected position in the row's values.
        hint: usize,
    },
    /// Computed when read: days from the stored timestamp feature `of` to now.
    DaysSince {
        /// The timestamp feature.
        of: String,
        /// Expected position of `of` in the row's values.
        hint: usize,
    },
}

/// Features resolved against a catalog: which views to read, which features to answer with.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The features, in answer order.
    pub features: Vec<Selected>,
    /// The distinct views read, in order of first use (indexes into the catalog's views).
    pub views: Vec<usize>,
    /// A short name two selected features share, if any (they then need full names).
    pub clash: Option<String>,
}

/// One selected feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    /// The view, as an index into the catalog's views.
    pub view: usize,
    /// The feature, as an index into the view's features.
    pub feature: usize,
    /// The view's position in [`Plan::views`].
    pub slot: usize,
}

impl Catalog {
    /// Compiles `repo` (registry version `version`).
    pub fn build(repo: &Repo, version: i64) -> Self {
        let mut views = Vec::with_capacity(repo.views.len());
        let mut by_name = HashMap::with_capacity(repo.views.len());
        for view in repo.views.values() {
            let Some(entity) = repo.entities.get(&view.entity) else {
                // The registry only records consistent repositories; a view without its entity
                // cannot be keyed, so it is left out (and then reported as not found).
                tracing::warn!(view = %view.name, entity = %view.entity, version, "view of an unknown entity skipped");
                continue;
            };
            let mut stored = 0;
            let mut positions = HashMap::new();
            for f in &view.features {
                if !matches!(f.kind, FeatureKind::DaysSince { .. }) {
                    positions.insert(f.name.as_str(), stored);
                    stored += 1;
                }
            }
            let features = view
                .features
                .iter()
                .map(|f| FeaturePlan {
                    name: f.name.clone(),
                    full_name: format!("{}{FULL_NAME_SEPARATOR}{}", view.name, f.name),
                    value_type: f.value_type,
                    source: match &f.kind {
                        FeatureKind::DaysSince { of } => FeatureSource::DaysSince {
                            of: of.clone(),
                            hint: positions.get(of.as_str()).copied().unwrap_or(0),
                        },
                        _ => FeatureSource::Stored { hint: positions.get(f.name.as_str()).copied().unwrap_or(0) },
                    },
                })
                .collect();
            by_name.insert(view.name.clone(), views.len());
            views.push(ViewPlan {
                name: view.name.clone(),
                entity: entity.name.clone(),
                join_keys: entity.join_keys.clone(),
                key_type: entity.value_type,
                ttl_micros: view.ttl.map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
                online: view.online,
                features,
            });
        }
        let mut catalog = Self { version, views, by_name, services: HashMap::new(), plans: RwLock::default() };
        for service in repo.services.values() {
            let plan = catalog.plan(service.features.iter().map(|(v, f)| (v.as_str(), f.as_str())), |_| {
                format!("feature service `{}`", service.name)
            });
            let plan = plan.map(Arc::new).map_err(|e| match e {
                Error::NotFound(m) => Refusal::NotFound(m),
                other => Refusal::Invalid(other.to_string()),
            });
            catalog.services.insert(service.name.clone(), plan);
        }
        catalog
    }

    /// The view at `index` (from a [`Plan`]).
    pub fn view(&self, index: usize) -> &ViewPlan {
        &self.views[index]
    }

    /// The plan of the feature service `name`.
    pub fn service(&self, name: &str) -> Result<Arc<Plan>> {
        match self.services.get(name) {
            Some(Ok(plan)) => Ok(plan.clone()),
            Some(Err(Refusal::NotFound(m))) => Err(Error::NotFound(m.clone())),
            Some(Err(Refusal::Invalid(m))) => Err(Error::InvalidArgument(m.clone())),
            None => Err(Error::NotFound(format!("unknown feature service `{name}`"))),
        }
    }

    /// The plan of a list of references (`view:feature` or `view:*`), resolved once per catalog
    /// (see [`MAX_CACHED_PLANS`]); errors name the reference by its index (`features[2]`).
    pub fn plan_refs(&self, refs: &[String]) -> Result<Arc<Plan>> {
        // A poisoned lock only means a panic elsewhere: the map itself is always whole.
        if let Some(plan) = self.plans.read().unwrap_or_else(|p| p.into_inner()).get(refs) {
            return Ok(plan.clone());
        }
        let plan = Arc::new(self.resolve_refs(refs)?);
        let mut plans = self.plans.write().unwrap_or_else(|p| p.into_inner());
        if plans.len() < MAX_CACHED_PLANS {
            plans.insert(refs.into(), plan.clone());
        }
        Ok(plan)
    }

    /// How many lists of references [`Catalog::plan_refs`] keeps the plans of.
    #[cfg(test)]
    fn cached_plans(&self) -> usize {
        self.plans.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn resolve_refs(&self, refs: &[String]) -> Result<Plan> {
        if refs.is_empty() {
            return Err(Error::InvalidArgument("features: the list is empty; name at least one `view:feature`".into()));
        }
        let mut parsed = Vec::with_capacity(refs.len());
        for (i, r) in refs.iter().enumerate() {
            match r.split_once(':') {
                Some((view, feature)) if !view.is_empty() && !feature.is_empty() && !feature.contains(':') => {
                    parsed.push((view, feature));
                }
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "features[{i}]: `{r}` is not a feature reference; write `view:feature` or `view:*`"
                    )));
                }
            }
        }
        self.plan(parsed.into_iter(), |i| format!("features[{i}]"))
    }

    /// Resolves `(view, feature)` pairs (`*`: every feature of the view), dropping repeats.
    /// `place(i)` names the i-th pair in errors.
    fn plan<'a>(
        &self,
        refs: impl Iterator<Item = (&'a str, &'a str)>,
        place: impl Fn(usize) -> String,
    ) -> Result<Plan> {
        let mut plan = Plan::default();
        for (i, (view_name, feature)) in refs.enumerate() {
            let Some(&v) = self.by_name.get(view_name) else {
                return Err(Error::NotFound(format!("{}: unknown feature view `{view_name}`", place(i))));
            };
            let view = &self.views[v];
            if !view.online {
                return Err(Error::InvalidArgument(format!(
                    "{}: feature view `{view_name}` is not served online (online = false)",
                    place(i)
                )));
            }
            let slot = match plan.views.iter().position(|&x| x == v) {
                Some(slot) => slot,
                None => {
                    plan.views.push(v);
                    plan.views.len() - 1
                }
            };
            let mut add = |f: usize| {
                let selected = Selected { view: v, feature: f, slot };
                if !plan.features.contains(&selected) {
                    plan.features.push(selected);
                }
            };
            if feature == "*" {
                (0..view.features.len()).for_each(&mut add);
            } else {
                match view.features.iter().position(|f| f.name == feature) {
                    Some(f) => add(f),
                    None => {
                        return Err(Error::NotFound(format!(
                            "{}: feature view `{view_name}` has no feature `{feature}`",
                            place(i)
                        )));
                    }
                }
            }
        }
        plan.clash = self.clash(&plan.features);
        Ok(plan)
    }

    fn clash(&self, features: &[Selected]) -> Option<String> {
        let name = |s: &Selected| self.views[s.view].features[s.feature].name.as_str();
        features
            .iter()
            .enumerate()
            .find(|(i, a)| features[..*i].iter().any(|b| name(a) == name(b)))
            .map(|(_, a)| name(a).to_owned())
    }
}

/// One client's cached catalog.
struct Entry {
    /// `None`: the client has applied no definitions.
    catalog: Option<Arc<Catalog>>,
    fetched: Instant,
    refreshing: AtomicBool,
}

/// The per-client cache of catalogs.
pub struct Catalogs {
    refresh: Duration,
    entries: RwLock<HashMap<ClientId, Arc<Entry>>>,
}

/// Clears an entry's `refreshing` flag when the refresh ends, even if the request is dropped.
struct Refreshing<'a>(&'a AtomicBool);

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Catalogs {
    /// A cache that asks the registry again after `refresh`.
    pub fn new(refresh: Duration) -> Self {
        Self { refresh, entries: RwLock::new(HashMap::new()) }
    }

    /// The catalog of `client`, or `None` when it has applied no definitions.
    pub async fn get(&self, registry: &Registry, client: &ClientId) -> Result<Option<Arc<Catalog>>> {
        let cached = self.entries.read().unwrap_or_else(|p| p.into_inner()).get(client).cloned();
        let _guard = match &cached {
            Some(entry) if entry.fetched.elapsed() < self.refresh => return Ok(entry.catalog.clone()),
            // Another request is refreshing it: answer from the catalog in hand.
            Some(entry) if entry.refreshing.swap(true, Ordering::AcqRel) => return Ok(entry.catalog.clone()),
            Some(entry) => Some(Refreshing(&entry.refreshing)),
            None => None,
        };
        let old = cached.as_ref().and_then(|e| e.catalog.clone());
        let fresh = match fetch(registry, client, old.as_ref()).await {
            Ok(fresh) => fresh,
            Err(e) => {
                if cached.is_none() {
                    return Err(e);
                }
                tracing::warn!(client = %client, error = %e, "registry unavailable; serving the definitions in hand");
                // Keep the old catalog for another period rather than retrying on every request.
                self.insert(client, old.clone());
                return Ok(old);
            }
        };
        self.insert(client, fresh.clone());
        Ok(fresh)
    }

    fn insert(&self, client: &ClientId, catalog: Option<Arc<Catalog>>) {
        let entry = Arc::new(Entry { catalog, fetched: Instant::now(), refreshing: AtomicBool::new(false) });
        self.entries.write().unwrap_or_else(|p| p.into_inner()).insert(client.clone(), entry);
    }
}

/// The client's current catalog: `old` again when the version did not change.
async fn fetch(registry: &Registry, client: &ClientId, old: Option<&Arc<Catalog>>) -> Result<Option<Arc<Catalog>>> {
    let current = registry.current_version(client).await?;
    if let (Some(old), Some(current)) = (old, current)
        && old.version == current
    {
        return Ok(Some(old.clone()));
    }
    let Some(version) = registry.current(client).await? else { return Ok(None) };
    let catalog = Catalog::build(&version.repo, version.version);
    tracing::info!(client = %client, version = catalog.version, "feature definitions loaded for serving");
    Ok(Some(Arc::new(catalog)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::*;
    use crate::definitions::{EXAMPLE_REPO, parse_files};

    fn shop() -> Catalog {
        let files: Vec<(PathBuf, String)> =
            EXAMPLE_REPO.iter().map(|(name, text)| (PathBuf::from(name), (*text).to_owned())).collect();
        Catalog::build(&parse_files(&files).unwrap(), 1)
    }

    fn refs(list: &[&str]) -> Vec<String> {
        list.iter().map(|r| (*r).to_owned()).collect()
    }

    #[test]
    fn a_list_is_resolved_once_and_its_plan_kept() {
        let catalog = shop();
        let list = refs(&["user_activity:last_seen_at", "user_activity:days_since_last_purchase"]);
        let first = catalog.plan_refs(&list).unwrap();
        let again = catalog.plan_refs(&list).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second call resolved the list again");
        assert_eq!(first.features.len(), 2);
        // Another order is another answer, hence another plan.
        let reversed: Vec<String> = list.iter().rev().cloned().collect();
        let other = catalog.plan_refs(&reversed).unwrap();
        assert_eq!(other.features, first.features.iter().rev().copied().collect::<Vec<_>>());
        assert_eq!(catalog.cached_plans(), 2);
    }

    #[test]
    fn a_bad_list_is_refused_on_every_call_and_not_kept() {
        let catalog = shop();
        for _ in 0..2 {
            let err = catalog.plan_refs(&refs(&["user_activity:last_seen_at", "nope"])).unwrap_err().to_string();
            assert!(err.contains("features[1]") && err.contains("`nope`"), "{err}");
            let err = catalog.plan_refs(&refs(&["no_such_view:x"])).unwrap_err().to_string();
            assert!(err.contains("unknown feature view `no_such_view`"), "{err}");
        }
        assert_eq!(catalog.cached_plans(), 0);
    }

    #[test]
    fn the_kept_plans_stop_at_the_bound_and_later_lists_still_resolve() {
        let catalog = shop();
        // Distinct lists: the same reference repeated 1, 2, 3… times (repeats are dropped from
        // the plan, not from the key).
        for n in 1..=MAX_CACHED_PLANS + 5 {
            let list = vec!["user_activity:last_seen_at".to_owned(); n];
            assert_eq!(catalog.plan_refs(&list).unwrap().features.len(), 1);
        }
        assert_eq!(catalog.cached_plans(), MAX_CACHED_PLANS);
        let beyond = vec!["user_activity:last_seen_at".to_owned(); MAX_CACHED_PLANS + 5];
        assert_eq!(catalog.plan_refs(&beyond).unwrap().features.len(), 1);
    }
}
