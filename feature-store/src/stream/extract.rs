//! Reading an aggregation's input from an event: the entity key and the field's value.
//!
//! Fields are `event_id`, `timestamp`, `event_type`, `user_id`, `anon_id`, `session_id`, or a
//! dotted path into `props` or `context` (`props.revenue`, `context.utm_medium`). The rules, which
//! the batch engine shares:
//! - numbers feed `sum`, `avg`, `min` and `max`; a numeric string (`"12.5"`) is read as a number;
//!   anything else (missing, null, text, bool, object) skips the event for that aggregation;
//! - int64 `sum`/`min`/`max` take integers only (a float with no fractional part counts);
//! - `last` takes the value as the feature's type (strings: JSON strings as they are, other JSON
//!   scalars as their JSON text); a missing or null value skips the event;
//! - `distinct_count` hashes the value's text (strings unquoted) with a fixed hash.

use livora_common::Event;
use serde_json::{Map, Value as Json};

use super::kernel::Input;
use crate::definitions::AggFunction;
use crate::value::{Value, ValueType};

/// An event with its `props` and `context` parsed once, for every aggregation to read.
pub struct Parsed<'a> {
    /// The event.
    pub event: &'a Event,
    props: Option<Map<String, Json>>,
    context: Option<Map<String, Json>>,
}

impl<'a> Parsed<'a> {
    /// Wraps `event`; `props` and `context` are parsed on first use.
    pub fn new(event: &'a Event) -> Self {
        Self { event, props: None, context: None }
    }

    /// The field at `path`, as JSON (`None` when absent).
    pub fn field(&mut self, path: &str) -> Option<Json> {
        let e = self.event;
        match path {
            "event_id" => return Some(Json::String(e.event_id.to_string())),
            "timestamp" => return Some(Json::from(micros(e))),
            "event_type" => return Some(Json::String(e.event_type.clone())),
            "user_id" => return e.user_id.clone().map(Json::String),
            "anon_id" => return e.anon_id.clone().map(Json::String),
            "session_id" => return e.session_id.clone().map(Json::String),
            _ => {}
        }
        let (root, rest) = if let Some(rest) = path.strip_prefix("props.") {
            (self.props.get_or_insert_with(|| e.props.to_map()), rest)
        } else if let Some(rest) = path.strip_prefix("context.") {
            (self.context.get_or_insert_with(|| e.context.to_map()), rest)
        } else {
            return None;
        };
        let mut parts = rest.split('.');
        let mut current = root.get(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current.clone())
    }

    /// The entity key at `path`: a non-empty string, or an integer rendered as text.
    pub fn key(&mut self, path: &str) -> Option<String> {
        match self.field(path)? {
            Json::String(s) if !s.is_empty() => Some(s),
            Json::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            _ => None,
        }
    }
}

/// The event time in µs since the epoch.
pub fn micros(e: &Event) -> i64 {
    e.timestamp.timestamp_micros()
}

/// The input of `function` (producing `ty`) from the field's JSON value; `None` skips the event.
pub fn input(function: AggFunction, ty: ValueType, field: Option<Json>, is_timestamp_field: bool) -> Option<Input> {
    if function == AggFunction::Count {
        return Some(Input::Event);
    }
    let json = field?;
    if json.is_null() {
        return None;
    }
    match function {
        AggFunction::Count => Some(Input::Event),
        AggFunction::Sum | AggFunction::Min | AggFunction::Max if ty == ValueType::Int64 || is_timestamp_field => {
            integer(&json).map(Input::Int)
        }
        AggFunction::Sum | AggFunction::Avg | AggFunction::Min | AggFunction::Max => number(&json).map(Input::Float),
        AggFunction::Last => typed(&json, ty).map(Input::Last),
        AggFunction::DistinctCount => Some(Input::Hash(hash_text(&text(&json)))),
    }
}

fn number(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

fn integer(json: &Json) -> Option<i64> {
    match json {
        Json::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9.2e18).map(|x| x as i64))
        }
        Json::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// The JSON scalar's text: strings unquoted, others as JSON.
pub fn text(json: &Json) -> String {
    match json {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn typed(json: &Json, ty: ValueType) -> Option<Value> {
    Some(match ty {
        ValueType::String => Value::String(text(json)),
        ValueType::Float64 => Value::Float64(number(json)?),
        ValueType::Int64 => Value::Int64(integer(json)?),
        ValueType::Timestamp => Value::Timestamp(integer(json)?),
        ValueType::Bool => match json {
            Json::Bool(b) => Value::Bool(*b),
            Json::String(s) if s == "true" || s == "false" => Value::Bool(s == "true"),
            _ => return None,
        },
    })
}

/// FNV-1a, 64 bits: fixed across versions and platforms, unlike `std`'s hasher.
pub fn hash_text(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
