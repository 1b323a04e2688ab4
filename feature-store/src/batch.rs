//! The batch engine: the same streaming aggregations, computed from events at rest.
//!
//! Given a view's events (from the raw lake) and query points `(entity key, time)`, it returns
//! each feature's value at each point. It shares the definitions and the aggregation kernels
//! ([`crate::stream::kernel`], [`crate::stream::extract`]) with the stream aggregator, but none of
//! its incremental machinery: it sorts each entity's events by time and sweeps them once,
//! evaluating the windows at each query time. Where the stream would call an event late (older
//! than the allowed lateness), the batch engine still counts it: the offline history is complete.
//!
//! Folding happens in the shared kernels rather than in polars expressions on purpose: two
//! implementations of "sum over a sliding window of buckets" would drift (float summation order,
//! JSON number parsing, bucket edges). The events come from the lake
//! (`livora_ingest::lake::LakeReader::read_events`); the arithmetic is defined once. The
//! [backfill](mod@crate::backfill) writes a streaming view's history from it.

use std::collections::{BTreeMap, HashMap};

use livora_common::Event;

use crate::stream::engine::CompiledView;
use crate::stream::extract::{self, Parsed};
use crate::stream::kernel::{AggState, Partial};
use crate::value::Value;

/// One event reduced to what a view needs: its entity key, time, id and per-aggregation partials.
struct Folded {
    ts: i64,
    id: u128,
    parts: Vec<Option<Partial>>,
}

/// Computes the view's aggregations at each `(entity key, time µs)` of `queries`, from `events`
/// (any order; events of other clients, types or without the key are ignored). Returns the
/// values in the view's aggregation order, one vector per query, in query order.
pub fn values_at<'e>(
    view: &CompiledView,
    events: impl IntoIterator<Item = &'e Event>,
    queries: &[(String, i64)],
) -> Vec<Vec<Value>> {
    let by_entity = fold_events(view, events);
    let mut order: Vec<usize> = (0..queries.len()).collect();
    order.sort_by(|&a, &b| (&queries[a].0, queries[a].1).cmp(&(&queries[b].0, queries[b].1)));
    let mut out: Vec<Vec<Value>> = vec![Vec::new(); queries.len()];
    let mut i = 0;
    while i < order.len() {
        let key = &queries[order[i]].0;
        let folded = by_entity.get(key).map_or(&[][..], Vec::as_slice);
        let mut states: Vec<AggState> = view.aggs.iter().map(|a| AggState::new(&a.agg)).collect();
        let mut next = 0;
        while i < order.len() && &queries[order[i]].0 == key {
            let t = queries[order[i]].1;
            while next < folded.len() && folded[next].ts <= t {
                for (state, part) in states.iter_mut().zip(&folded[next].parts) {
                    if let Some(p) = part {
                        state.add(folded[next].ts, p.clone());
                    }
                }
                next += 1;
            }
            out[order[i]] = view
                .aggs
                .iter()
                .zip(states.iter_mut())
                .map(|(a, s)| {
                    s.expire(t);
                    s.value_at(t, a.agg.function, a.ty)
                })
                .collect();
            i += 1;
        }
    }
    out
}

/// The entity keys present in `events` for `view`, each with its last event time.
pub fn entities(view: &CompiledView, events: &[Event]) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> =
        fold_events(view, events).into_iter().filter_map(|(k, f)| f.last().map(|l| (k, l.ts))).collect();
    out.sort();
    out
}

/// The events of `view` (its client's, of its types, with its entity key) grouped by entity
/// key, in key order, each group in input order. Callers that compute many entities split the
/// work along these groups: [`values_at`] over one group's events answers for its entity.
pub fn events_by_entity<'e>(view: &CompiledView, events: &'e [Event]) -> BTreeMap<String, Vec<&'e Event>> {
    let mut out: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for event in events {
        if let Some(key) = entity_key(view, event) {
            out.entry(key).or_default().push(event);
        }
    }
    out
}

/// The entity key of `event` in `view`, if the view takes the event.
fn entity_key(view: &CompiledView, event: &Event) -> Option<String> {
    if event.client_id != view.client || !view.accepts(&event.event_type) {
        return None;
    }
    Parsed::new(event).key(view.key_field())
}

fn fold_events<'e>(view: &CompiledView, events: impl IntoIterator<Item = &'e Event>) -> HashMap<String, Vec<Folded>> {
    let mut by_entity: HashMap<String, Vec<Folded>> = HashMap::new();
    for event in events {
        if event.client_id != view.client || !view.accepts(&event.event_type) {
            continue;
        }
        let mut parsed = Parsed::new(event);
        let Some(key) = parsed.key(view.key_field()) else { continue };
        let ts = extract::micros(event);
        let id = event.event_id.as_u128();
        let parts = view
            .aggs
            .iter()
            .map(|a| {
                if !a.agg.event_types.is_empty() && !a.agg.event_types.iter().any(|t| t == &event.event_type) {
                    return None;
                }
                let field = a.agg.field.as_deref().and_then(|f| parsed.field(f));
                let on_ts = a.agg.field.as_deref() == Some("timestamp");
                extract::input(a.agg.function, a.ty, field, on_ts)
                    .and_then(|i| Partial::of(a.agg.function, a.ty, i, ts, id))
            })
            .collect();
        by_entity.entry(key).or_default().push(Folded { ts, id, parts });
    }
    for folded in by_entity.values_mut() {
        folded.sort_by_key(|f| (f.ts, f.id));
    }
    by_entity
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use livora_common::ClientId;
    use proptest::prelude::*;

    use super::*;
    use crate::definitions::parse_files;
    use crate::stream::engine::{Aggregator, StateKey};
    use crate::stream::tests::{REPO, event};

    fn view() -> (Aggregator, std::sync::Arc<CompiledView>) {
        let repo = parse_files(&[(PathBuf::from("r.toml"), REPO.into())]).unwrap();
        let client = ClientId::new("shop").unwrap();
        let views = CompiledView::all(&client, &repo);
        let mut agg = Aggregator::new();
        agg.set_views(&client, views.clone());
        (agg, views[0].clone())
    }

    const KINDS: [&str; 3] = ["view", "purchase", "other"];

    /// (user, minute offset, kind, revenue in cents, category).
    fn events() -> impl Strategy<Value = Vec<(u8, i64, usize, i64, u8)>> {
        prop::collection::vec((0u8..3, 0i64..3000, 0usize..3, 0i64..100_000, 0u8..4), 1..80)
    }

    fn build(spec: &[(u8, i64, usize, i64, u8)]) -> Vec<Event> {
        let base: chrono::DateTime<chrono::Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
        spec.iter()
            .enumerate()
            .map(|(n, &(user, minute, kind, cents, cat))| {
                let at = (base + chrono::Duration::seconds(minute * 37)).to_rfc3339();
                let props = format!(r#"{{"revenue":{},"category":"c{cat}"}}"#, cents as f64 / 100.0);
                event(n as u128 + 1, &at, KINDS[kind], &format!("u{user}"), &props)
            })
            .collect()
    }

    /// Runs the stream over `events` in the given order; returns the last row per (key, time).
    fn stream(events: &[Event], drain: bool) -> BTreeMap<(StateKey, i64), Vec<Value>> {
        let (mut agg, _) = view();
        let mut rows = BTreeMap::new();
        for e in events {
            agg.apply(e);
            for r in agg.emit(0) {
                rows.insert((r.key, r.event_time), r.values.into_iter().map(|(_, v)| v).collect());
            }
        }
        assert_eq!(agg.counters.late, 0);
        if drain {
            // A wall clock far ahead fires every pending timer, one bucket at a time.
            loop {
                let emitted = agg.emit(i64::MAX / 2);
                if emitted.is_empty() {
                    break;
                }
                for r in emitted {
                    rows.insert((r.key, r.event_time), r.values.into_iter().map(|(_, v)| v).collect());
                }
            }
        }
        rows
    }

    fn batch(events: &[Event], at: &BTreeMap<(StateKey, i64), Vec<Value>>) -> Vec<Vec<Value>> {
        let (_, view) = view();
        let queries: Vec<(String, i64)> = at.keys().map(|(k, t)| (k.key.clone(), *t)).collect();
        values_at(&view, events, &queries)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// In time order, every row the stream emits equals the batch engine's value at its time,
        /// including the rows that timers emit as windows empty.
        #[test]
        fn stream_and_batch_agree_on_every_row(mut spec in events()) {
            spec.sort_by_key(|s| s.1);
            let events = build(&spec);
            let rows = stream(&events, true);
            let expected = batch(&events, &rows);
            for ((key, values), batch) in rows.iter().zip(expected) {
                prop_assert_eq!(values, &batch, "at {:?}", key);
            }
        }

        /// Out of order within the allowed lateness (1h), the rows emitted once every event has
        /// arrived agree with the batch engine.
        #[test]
        fn stream_and_batch_agree_after_disorder(mut spec in events(), swaps in prop::collection::vec(0usize..80, 0..40)) {
            spec.sort_by_key(|s| s.1);
            let mut events = build(&spec);
            for s in swaps {
                let i = s % events.len();
                if i + 1 < events.len() && (events[i + 1].timestamp - events[i].timestamp).num_minutes() < 50 {
                    events.swap(i, i + 1);
                }
            }
            let before = stream(&events[..events.len() - 1], false).len();
            let _ = before;
            let rows = stream(&events, true);
            // The rows at or after the last event's arrival: each key's final rows.
            let last_arrival = events.iter().map(|e| e.timestamp.timestamp_micros()).max().unwrap();
            let tail: BTreeMap<_, _> = rows.into_iter().filter(|((_, t), _)| *t >= last_arrival).collect();
            let expected = batch(&events, &tail);
            for ((key, values), batch) in tail.iter().zip(expected) {
                prop_assert_eq!(values, &batch, "at {:?}", key);
            }
        }
    }
}
