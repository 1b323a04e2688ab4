//! The stream aggregator's core: events in, feature rows out, state checkpointable.
//!
//! Per (client, streaming view, entity key) it keeps an [`EntityState`]: one [`AggState`] per
//! aggregation, and `tau`, the time its values were last evaluated at. Events fold into the
//! states; [`Aggregator::emit`] then evaluates every state that changed at its `tau` and returns
//! one row per state, stamped with `tau` as its event time.
//!
//! # Time
//! `tau` only moves forward. An event at `ts` moves it to `max(tau, ts)`. A bucket leaving a
//! window changes values with no event: each state schedules a timer at the next such instant,
//! which fires once the view's clock passes it. The clock of a view is
//! `max(latest event time of the client, wall clock − allowed_lateness)`: with live traffic that
//! is the latest event, so windows shrink on time; with none, the wall clock still moves them.
//! An event older than `latest event time − allowed_lateness` is **late**: it is not counted
//! online (it stays in the lake, where the batch engine counts it) and the `late` counter grows.
//! An out-of-order event within the lateness lands in its own bucket, the right window.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use livora_common::{ClientId, Event};
use serde::{Deserialize, Serialize};

use super::extract::{self, Parsed};
use super::kernel::{AggState, Partial};
use crate::definitions::{Aggregation, FeatureKind, FeatureView, Repo, SourceKind};
use crate::value::{Value, ValueType};

/// A streaming view made ready for events.
#[derive(Debug)]
pub struct CompiledView {
    /// The client it belongs to.
    pub client: ClientId,
    /// Its definition.
    pub view: FeatureView,
    /// The source's event-type filter (empty: all).
    source_types: Vec<String>,
    /// The entity key's event field.
    key_field: String,
    /// The entity's join-key column, as the view's history names it (`user_id`).
    pub key_column: String,
    /// The aggregations, in the view's feature order.
    pub aggs: Vec<CompiledAgg>,
    lateness_us: i64,
}

/// One aggregation of a compiled view.
#[derive(Debug)]
pub struct CompiledAgg {
    /// The feature's name.
    pub name: String,
    /// The feature's type.
    pub ty: ValueType,
    /// The aggregation.
    pub agg: Aggregation,
}

impl CompiledView {
    /// Compiles the streaming views of `repo`; batch views are skipped.
    pub fn all(client: &ClientId, repo: &Repo) -> Vec<Arc<CompiledView>> {
        let mut out = Vec::new();
        for view in repo.views.values() {
            let Some(source) = repo.sources.get(&view.source) else { continue };
            let SourceKind::EventLog { event_types } = &source.kind else { continue };
            let Some(key_field) = view.key_field.clone() else { continue };
            let Some(key_column) = repo.entities.get(&view.entity).and_then(|e| e.join_keys.first().cloned()) else {
                continue;
            };
            let aggs: Vec<CompiledAgg> = view
                .features
                .iter()
                .filter_map(|f| match &f.kind {
                    FeatureKind::Aggregation(a) => {
                        Some(CompiledAgg { name: f.name.clone(), ty: f.value_type, agg: a.clone() })
                    }
                    _ => None,
                })
                .collect();
            if aggs.is_empty() {
                continue;
            }
            out.push(Arc::new(CompiledView {
                client: client.clone(),
                view: view.clone(),
                source_types: event_types.clone(),
                key_field,
                key_column,
                aggs,
                lateness_us: view.allowed_lateness.as_micros() as i64,
            }));
        }
        out
    }

    /// Whether events of `event_type` reach this view (the source's filter).
    pub fn accepts(&self, event_type: &str) -> bool {
        self.source_types.is_empty() || self.source_types.iter().any(|t| t == event_type)
    }

    /// The event field holding the entity key.
    pub fn key_field(&self) -> &str {
        &self.key_field
    }

    /// The names of the aggregations, in state order (the layout of [`EntityState::aggs`]).
    pub fn layout(&self) -> Vec<String> {
        self.aggs.iter().map(|a| a.name.clone()).collect()
    }
}

/// Where a state lives: client, view and entity key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StateKey {
    /// The client.
    pub client: String,
    /// The view.
    pub view: String,
    /// The entity key.
    pub key: String,
}

/// The aggregation state of one entity in one view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    /// The time (µs) the values were last evaluated at; never decreases.
    pub tau: i64,
    /// One state per aggregation, in the view's layout.
    pub aggs: Vec<AggState>,
    /// The pending timer, if any.
    pub timer: Option<i64>,
}

/// One row of feature values produced by the aggregator.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow {
    /// Which state.
    pub key: StateKey,
    /// The entity's name.
    pub entity: String,
    /// The time (µs) from which the values hold.
    pub event_time: i64,
    /// The values of the view's aggregations, in order.
    pub values: Vec<(String, Value)>,
}

/// Counters of what the aggregator saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Events folded into at least one view.
    pub applied: u64,
    /// Events older than the allowed lateness (counted offline only).
    pub late: u64,
    /// Event × aggregation pairs skipped because the field was missing or of the wrong type.
    pub skipped_values: u64,
}

/// The aggregator.
#[derive(Default)]
pub struct Aggregator {
    views: HashMap<String, Vec<Arc<CompiledView>>>,
    states: HashMap<StateKey, EntityState>,
    /// Pending timers per (client, view): (time, entity key).
    timers: HashMap<(String, String), BTreeSet<(i64, String)>>,
    latest: HashMap<String, i64>,
    dirty: HashSet<StateKey>,
    /// What was seen since the aggregator started.
    pub counters: Counters,
}

impl Aggregator {
    /// An aggregator with no views.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the streaming views of `client` (on start and whenever its registry changes). States
    /// of views no longer defined are kept (a view may come back) but no longer fed.
    pub fn set_views(&mut self, client: &ClientId, views: Vec<Arc<CompiledView>>) {
        self.views.insert(client.as_str().to_owned(), views);
    }

    /// Whether `client` has a streaming view: without one its events change nothing.
    pub fn feeds(&self, client: &str) -> bool {
        self.views.get(client).is_some_and(|views| !views.is_empty())
    }

    /// The compiled view `view` of `client`.
    pub fn view(&self, client: &str, view: &str) -> Option<&Arc<CompiledView>> {
        self.views.get(client)?.iter().find(|v| v.view.name == view)
    }

    /// Restores a checkpointed state (at start-up).
    pub fn restore(&mut self, key: StateKey, state: EntityState) {
        if let Some(t) = state.timer {
            self.timers.entry((key.client.clone(), key.view.clone())).or_default().insert((t, key.key.clone()));
        }
        self.states.insert(key, state);
    }

    /// Restores the latest event time of a client (at start-up).
    pub fn restore_latest(&mut self, client: &str, latest: i64) {
        self.latest.insert(client.to_owned(), latest);
    }

    /// The latest event time seen per client.
    pub fn latest(&self) -> &HashMap<String, i64> {
        &self.latest
    }

    /// The state of `key`, if any.
    pub fn state(&self, key: &StateKey) -> Option<&EntityState> {
        self.states.get(key)
    }

    /// Number of entity states held.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no state is held.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Folds one event (already deduplicated) into the states of its client's views.
    pub fn apply(&mut self, event: &Event) {
        let client = event.client_id.as_str();
        let Some(views) = self.views.get(client) else { return };
        let ts = extract::micros(event);
        let latest = self.latest.get(client).copied().unwrap_or(i64::MIN);
        let id = event.event_id.as_u128();
        let mut parsed = Parsed::new(event);
        let mut applied = false;
        for view in views {
            if !view.accepts(&event.event_type) {
                continue;
            }
            if ts < latest.saturating_sub(view.lateness_us) {
                self.counters.late += 1;
                continue;
            }
            let Some(entity_key) = parsed.key(&view.key_field) else { continue };
            let key = StateKey { client: client.to_owned(), view: view.view.name.clone(), key: entity_key };
            let state = self.states.entry(key.clone()).or_insert_with(|| EntityState {
                tau: i64::MIN,
                aggs: view.aggs.iter().map(|a| AggState::new(&a.agg)).collect(),
                timer: None,
            });
            for (a, st) in view.aggs.iter().zip(state.aggs.iter_mut()) {
                if !a.agg.event_types.is_empty() && !a.agg.event_types.iter().any(|t| t == &event.event_type) {
                    continue;
                }
                let field = a.agg.field.as_deref().and_then(|f| parsed.field(f));
                let on_ts = a.agg.field.as_deref() == Some("timestamp");
                match extract::input(a.agg.function, a.ty, field, on_ts)
                    .and_then(|i| Partial::of(a.agg.function, a.ty, i, ts, id))
                {
                    Some(part) => st.add(ts, part),
                    None => self.counters.skipped_values += 1,
                }
            }
            // An event that only moves time still refreshes the row (windows may have moved).
            state.tau = state.tau.max(ts);
            self.dirty.insert(key);
            applied = true;
        }
        if applied {
            self.counters.applied += 1;
        }
        if ts > latest {
            self.latest.insert(client.to_owned(), ts);
        }
    }

    /// Fires the timers due at wall-clock time `now` (µs), then evaluates every changed state
    /// and returns its row. States left holding nothing are dropped after their last row.
    pub fn emit(&mut self, now: i64) -> Vec<FeatureRow> {
        for ((client, view), timers) in &mut self.timers {
            let latest = self.latest.get(client).copied().unwrap_or(i64::MIN);
            let lateness = self
                .views
                .get(client)
                .and_then(|vs| vs.iter().find(|v| &v.view.name == view))
                .map_or(0, |v| v.lateness_us);
            let clock = latest.max(now.saturating_sub(lateness));
            while timers.first().is_some_and(|(t, _)| *t <= clock) {
                let Some((t, entity_key)) = timers.pop_first() else { break };
                let key = StateKey { client: client.clone(), view: view.clone(), key: entity_key };
                if let Some(state) = self.states.get_mut(&key) {
                    state.timer = None;
                    state.tau = state.tau.max(t);
                    self.dirty.insert(key);
                }
            }
        }
        let dirty: Vec<StateKey> = self.dirty.drain().collect();
        let mut rows = Vec::with_capacity(dirty.len());
        for key in dirty {
            let Some(view) = self.views.get(&key.client).and_then(|vs| vs.iter().find(|v| v.view.name == key.view))
            else {
                continue;
            };
            let Some(state) = self.states.get_mut(&key) else { continue };
            let tau = state.tau;
            let mut values = Vec::with_capacity(view.aggs.len());
            let mut next: Option<i64> = None;
            for (a, st) in view.aggs.iter().zip(state.aggs.iter_mut()) {
                st.expire(tau);
                values.push((a.name.clone(), st.value_at(tau, a.agg.function, a.ty)));
                if let Some(n) = st.next_change(tau) {
                    next = Some(next.map_or(n, |m: i64| m.min(n)));
                }
            }
            let timers = self.timers.entry((key.client.clone(), key.view.clone())).or_default();
            if let Some(old) = state.timer.take() {
                timers.remove(&(old, key.key.clone()));
            }
            if let Some(n) = next {
                state.timer = Some(n);
                timers.insert((n, key.key.clone()));
            }
            let entity = view.view.entity.clone();
            if state.aggs.iter().all(AggState::is_empty) {
                self.states.remove(&key);
            }
            rows.push(FeatureRow { key, entity, event_time: tau, values });
        }
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    }

    /// The current state of each of `keys` (`None`: dropped), for a checkpoint of the rows
    /// [`emit`](Self::emit) returned.
    pub fn snapshot<'a>(&self, keys: impl IntoIterator<Item = &'a StateKey>) -> Vec<(StateKey, Option<EntityState>)> {
        keys.into_iter().map(|k| (k.clone(), self.states.get(k).cloned())).collect()
    }
}
