//! The aggregation kernels: partial aggregates per window bucket, merged to a value at a time.
//!
//! Both engines — the stream aggregator and the batch job over the lake — fold events into these
//! partials and evaluate them with the same code, so the numbers cannot drift between them. Every
//! merge is exact and order-independent (integer counts, [`ExactSum`], min/max, last by
//! `(event time, event id)`, sets of value hashes), so arrival order does not change a result.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::fsum::ExactSum;
use crate::definitions::{AggFunction, Aggregation};
use crate::value::{Value, ValueType};

/// One event's contribution to an aggregation, already extracted and typed.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// For `count`: the event itself.
    Event,
    /// A number.
    Float(f64),
    /// An integer (int64 sums and min/max, and timestamps).
    Int(i64),
    /// A value for `last`.
    Last(Value),
    /// A value's hash, for `distinct_count`.
    Hash(u64),
}

/// A partial aggregate of the events of one bucket (or of a whole history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Partial {
    /// Number of events.
    Count(i64),
    /// Exact sum of floats.
    SumF(ExactSum),
    /// Sum of integers (saturating).
    SumI(i64),
    /// Exact sum and count, for the mean.
    Avg(ExactSum, i64),
    /// Smallest float.
    MinF(f64),
    /// Largest float.
    MaxF(f64),
    /// Smallest integer.
    MinI(i64),
    /// Largest integer.
    MaxI(i64),
    /// The value of the latest event: (event time µs, event id, value).
    Last(i64, u128, Value),
    /// Hashes of the distinct values.
    Distinct(HashSet<u64>),
}

impl Partial {
    /// The partial of one event, or `None` when the input does not fit the function.
    pub fn of(function: AggFunction, ty: ValueType, input: Input, ts: i64, id: u128) -> Option<Self> {
        let int = matches!(ty, ValueType::Int64 | ValueType::Timestamp);
        Some(match (function, input) {
            (AggFunction::Count, _) => Self::Count(1),
            (AggFunction::Sum, Input::Float(x)) if !int => Self::SumF(one(x)),
            (AggFunction::Sum, Input::Int(x)) if int => Self::SumI(x),
            (AggFunction::Avg, Input::Float(x)) => Self::Avg(one(x), 1),
            (AggFunction::Min, Input::Float(x)) if !int => Self::MinF(x),
            (AggFunction::Max, Input::Float(x)) if !int => Self::MaxF(x),
            (AggFunction::Min, Input::Int(x)) if int => Self::MinI(x),
            (AggFunction::Max, Input::Int(x)) if int => Self::MaxI(x),
            (AggFunction::Last, Input::Last(v)) => Self::Last(ts, id, v),
            (AggFunction::DistinctCount, Input::Hash(h)) => Self::Distinct(HashSet::from([h])),
            _ => return None,
        })
    }

    /// Folds `other` (of the same function) into this partial.
    pub fn merge(&mut self, other: &Partial) {
        match (self, other) {
            (Self::Count(a), Self::Count(b)) => *a += b,
            (Self::SumF(a), Self::SumF(b)) => a.merge(b),
            (Self::SumI(a), Self::SumI(b)) => *a = a.saturating_add(*b),
            (Self::Avg(s, n), Self::Avg(t, m)) => {
                s.merge(t);
                *n += m;
            }
            (Self::MinF(a), Self::MinF(b)) => *a = a.min(*b),
            (Self::MaxF(a), Self::MaxF(b)) => *a = a.max(*b),
            (Self::MinI(a), Self::MinI(b)) => *a = (*a).min(*b),
            (Self::MaxI(a), Self::MaxI(b)) => *a = (*a).max(*b),
            (Self::Last(t, i, v), Self::Last(u, j, w)) => {
                if (*u, *j) > (*t, *i) {
                    (*t, *i, *v) = (*u, *j, w.clone());
                }
            }
            (Self::Distinct(a), Self::Distinct(b)) => a.extend(b),
            (a, b) => debug_assert!(false, "merging partials of different functions: {a:?} and {b:?}"),
        }
    }

    /// The feature value of this partial.
    fn value(&self, ty: ValueType) -> Value {
        match self {
            Self::Count(n) => Value::Int64(*n),
            Self::SumF(s) => Value::Float64(s.total()),
            Self::SumI(s) => Value::Int64(*s),
            Self::Avg(s, n) => Value::Float64(s.total() / *n as f64),
            Self::MinF(x) | Self::MaxF(x) => Value::Float64(*x),
            Self::MinI(x) | Self::MaxI(x) if ty == ValueType::Timestamp => Value::Timestamp(*x),
            Self::MinI(x) | Self::MaxI(x) => Value::Int64(*x),
            Self::Last(_, _, v) => v.clone(),
            Self::Distinct(set) => Value::Int64(set.len() as i64),
        }
    }
}

fn one(x: f64) -> ExactSum {
    let mut s = ExactSum::default();
    s.add(x);
    s
}

/// The value of an aggregation over no events.
pub fn empty_value(function: AggFunction, ty: ValueType) -> Value {
    match (function, ty) {
        (AggFunction::Count | AggFunction::DistinctCount, _) => Value::Int64(0),
        (AggFunction::Sum, ValueType::Int64) => Value::Int64(0),
        (AggFunction::Sum, _) => Value::Float64(0.0),
        _ => Value::Null,
    }
}

/// The state of one aggregation for one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AggState {
    /// Over the entity's whole history.
    Lifetime(Option<Partial>),
    /// Over a window of `buckets` hops of `hop` µs: partials by bucket number, ascending.
    Windowed {
        /// Bucket length in µs.
        hop: i64,
        /// Buckets per window.
        buckets: i64,
        /// Partials by bucket number `floor(t / hop)`, ascending.
        parts: VecDeque<(i64, Partial)>,
        /// For `distinct_count`: how many buckets in `parts` hold each hash.
        #[serde(default)]
        multiplicity: HashMap<u64, u32>,
    },
}

impl AggState {
    /// An empty state for `agg`.
    pub fn new(agg: &Aggregation) -> Self {
        match agg.window {
            None => Self::Lifetime(None),
            Some(w) => Self::Windowed {
                hop: w.hop.as_micros() as i64,
                buckets: (w.size.as_micros() / w.hop.as_micros()) as i64,
                parts: VecDeque::new(),
                multiplicity: HashMap::new(),
            },
        }
    }

    /// Adds one event's partial at event time `ts`.
    pub fn add(&mut self, ts: i64, part: Partial) {
        match self {
            Self::Lifetime(None) => *self = Self::Lifetime(Some(part)),
            Self::Lifetime(Some(p)) => p.merge(&part),
            Self::Windowed { hop, parts, multiplicity, .. } => {
                let b = ts.div_euclid(*hop);
                // Usually the newest bucket: search from the back.
                let at = parts.iter().rposition(|(x, _)| *x <= b);
                let slot = match at {
                    Some(i) if parts[i].0 == b => i,
                    Some(i) => {
                        parts.insert(i + 1, (b, empty_like(&part)));
                        i + 1
                    }
                    None => {
                        parts.push_front((b, empty_like(&part)));
                        0
                    }
                };
                if let (Partial::Distinct(set), Partial::Distinct(new)) = (&mut parts[slot].1, &part) {
                    for h in new {
                        if set.insert(*h) {
                            *multiplicity.entry(*h).or_default() += 1;
                        }
                    }
                } else {
                    parts[slot].1.merge(&part);
                }
            }
        }
    }

    /// Drops the buckets that are out of the window at `t` (and so at every later time).
    pub fn expire(&mut self, t: i64) {
        if let Self::Windowed { hop, buckets, parts, multiplicity } = self {
            let first = t.div_euclid(*hop) - *buckets + 1;
            while parts.front().is_some_and(|(b, _)| *b < first) {
                if let Some((_, Partial::Distinct(set))) = parts.pop_front() {
                    for h in set {
                        if let Some(n) = multiplicity.get_mut(&h) {
                            *n -= 1;
                            if *n == 0 {
                                multiplicity.remove(&h);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The value at time `t`, counting the events with `bucket_start(t) + hop − window ≤ ts ≤ t`
    /// among those added. Call [`expire`](Self::expire) with `t` first, or pass a `t` no later
    /// than any event added.
    pub fn value_at(&self, t: i64, function: AggFunction, ty: ValueType) -> Value {
        match self {
            Self::Lifetime(p) => p.as_ref().map_or_else(|| empty_value(function, ty), |p| p.value(ty)),
            Self::Windowed { hop, buckets, parts, multiplicity } => {
                let last = t.div_euclid(*hop);
                let first = last - *buckets + 1;
                if function == AggFunction::DistinctCount && parts.front().is_none_or(|(b, _)| *b >= first) {
                    // Every stored bucket is in the window: the multiplicities answer directly.
                    if parts.back().is_none_or(|(b, _)| *b <= last) {
                        return Value::Int64(multiplicity.len() as i64);
                    }
                }
                let mut acc: Option<Partial> = None;
                for (_, p) in parts.iter().filter(|(b, _)| (first..=last).contains(b)) {
                    match &mut acc {
                        None => acc = Some(p.clone()),
                        Some(a) => a.merge(p),
                    }
                }
                acc.map_or_else(|| empty_value(function, ty), |p| p.value(ty))
            }
        }
    }

    /// The earliest time after `t` at which the value changes without a new event (a bucket
    /// leaves the window), if any.
    pub fn next_change(&self, t: i64) -> Option<i64> {
        match self {
            Self::Lifetime(_) => None,
            // Bucket b is in the window until floor(t / hop) reaches b + buckets.
            Self::Windowed { hop, buckets, parts, .. } => {
                parts.iter().map(|(b, _)| (b + buckets) * hop).find(|&leaves| leaves > t)
            }
        }
    }

    /// Whether the state holds nothing (a windowed state whose buckets all expired).
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Lifetime(p) => p.is_none(),
            Self::Windowed { parts, .. } => parts.is_empty(),
        }
    }
}

fn empty_like(p: &Partial) -> Partial {
    match p {
        Partial::Count(_) => Partial::Count(0),
        Partial::SumF(_) => Partial::SumF(ExactSum::default()),
        Partial::SumI(_) => Partial::SumI(0),
        Partial::Avg(..) => Partial::Avg(ExactSum::default(), 0),
        Partial::MinF(_) => Partial::MinF(f64::INFINITY),
        Partial::MaxF(_) => Partial::MaxF(f64::NEG_INFINITY),
        Partial::MinI(_) => Partial::MinI(i64::MAX),
        Partial::MaxI(_) => Partial::MaxI(i64::MIN),
        Partial::Last(..) => Partial::Last(i64::MIN, 0, Value::Null),
        Partial::Distinct(_) => Partial::Distinct(HashSet::new()),
    }
}
