//! Parsing and validation of `POST /v1/events` bodies.
//!
//! Every problem of every event is collected, by index and field, so that a sender can fix a
//! batch in one round trip. A batch is all-or-nothing: one bad event refuses the whole request.

use chrono::{DateTime, Duration, Utc};
use livora_common::{ClientId, Problem};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Deepest nesting of objects and arrays accepted inside `props` and `context`.
pub const MAX_DEPTH: usize = 32;
/// Longest `event_type`.
pub const MAX_EVENT_TYPE_LEN: usize = 64;
/// Longest `user_id`, `anon_id` and `session_id`.
pub const MAX_ID_LEN: usize = 256;

const KNOWN_FIELDS: [&str; 9] =
    ["event_id", "timestamp", "client_id", "user_id", "anon_id", "session_id", "event_type", "props", "context"];

/// The limits that apply to a body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most events in one request.
    pub max_batch_events: usize,
    /// Largest single event in bytes, as sent.
    pub max_event_bytes: usize,
    /// How far in the future a timestamp may be.
    pub max_future: Duration,
}

/// An event that passed validation, before enrichment.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    /// `event_id`.
    pub event_id: Uuid,
    /// `timestamp` in UTC.
    pub timestamp: DateTime<Utc>,
    /// `user_id`.
    pub user_id: Option<String>,
    /// `anon_id`.
    pub anon_id: Option<String>,
    /// `session_id`.
    pub session_id: Option<String>,
    /// `event_type`.
    pub event_type: String,
    /// `props`.
    pub props: Map<String, Value>,
    /// `context`.
    pub context: Map<String, Value>,
}

/// Parses and validates a body for `client` at time `now`.
pub fn parse_batch(
    body: &[u8],
    client: &ClientId,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Vec<ValidEvent>, Vec<Problem>> {
    let raw = split_batch(body, limits)?;
    let mut problems = Vec::new();
    let mut events = Vec::with_capacity(raw.len());
    for (index, item) in raw.iter().enumerate() {
        if let Some(event) = parse_event(index, item, client, limits, now, &mut problems) {
            events.push(event);
        }
    }
    if problems.is_empty() { Ok(events) } else { Err(problems) }
}

/// Splits the body into the raw text of each event.
fn split_batch<'a>(body: &'a [u8], limits: &Limits) -> Result<Vec<&'a RawValue>, Vec<Problem>> {
    let json_error = |e: serde_json::Error| {
        vec![Problem::request(
            "body",
            format!("invalid JSON at line {} column {}: {}", e.line(), e.column(), strip_position(&e)),
        )]
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let items: Vec<&RawValue> = match first {
        None => return Err(vec![Problem::request("body", "is empty")]),
        Some(b'[') => serde_json::from_slice(body).map_err(json_error)?,
        Some(_) => vec![serde_json::from_slice(body).map_err(json_error)?],
    };
    if items.is_empty() {
        return Err(vec![Problem::request("body", "the batch is empty")]);
    }
    if items.len() > limits.max_batch_events {
        return Err(vec![Problem::request(
            "body",
            format!("the batch holds {} events; at most {} are allowed", items.len(), limits.max_batch_events),
        )]);
    }
    Ok(items)
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn parse_event(
    index: usize,
    raw: &RawValue,
    client: &ClientId,
    limits: &Limits,
    now: DateTime<Utc>,
    problems: &mut Vec<Problem>,
) -> Option<ValidEvent> {
    let text = raw.get();
    if text.len() > limits.max_event_bytes {
        problems.push(Problem::at(
            index,
            "event",
            format!("{} bytes exceeds the limit of {} bytes", text.len(), limits.max_event_bytes),
        ));
        return None;
    }
    let mut object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o,
        Ok(other) => {
            problems.push(Problem::at(index, "event", format!("must be an object, got {}", kind(&other))));
            return None;
        }
        Err(e) => {
            problems.push(Problem::at(index, "event", format!("invalid JSON: {}", strip_position(&e))));
            return None;
        }
    };
    let before = problems.len();
    let mut bad = |field: &str, reason: String| problems.push(Problem::at(index, field, reason));

    for key in object.keys() {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            bad(&truncate(key, 64), format!("unknown field; expected one of {}", KNOWN_FIELDS.join(", ")));
        }
    }

    let event_id = match object.get("event_id") {
        None | Some(Value::Null) => {
            bad("event_id", "is required".into());
            None
        }
        Some(Value::String(s)) => match Uuid::try_parse(s) {
            Ok(id) if id.is_nil() => {
                bad("event_id", "must not be the nil UUID".into());
                None
            }
            Ok(id) => Some(id),
            Err(_) => {
                bad("event_id", format!("`{}` is not a UUID", truncate(s, 64)));
                None
            }
        },
        Some(other) => {
            bad("event_id", format!("must be a string (a UUID), got {}", kind(other)));
            None
        }
    };

    let timestamp = match object.get("timestamp") {
        None | Some(Value::Null) => {
            bad("timestamp", "is required".into());
            None
        }
        Some(Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => {
                let t = t.with_timezone(&Utc);
                if t > now + limits.max_future {
                    bad("timestamp", format!("{} is more than {} in the future", s, human(limits.max_future)));
                    None
                } else {
                    Some(t)
                }
            }
            Err(e) => {
                bad("timestamp", format!("`{}` is not an RFC 3339 time: {e}", truncate(s, 64)));
                None
            }
        },
        Some(other) => {
            bad("timestamp", format!("must be a string (RFC 3339), got {}", kind(other)));
            None
        }
    };

    match object.get("client_id") {
        None | Some(Value::Null) => bad("client_id", "is required".into()),
        Some(Value::String(s)) if s == client.as_str() => {}
        Some(Value::String(s)) => {
            bad("client_id", format!("`{}` does not match the authenticated client `{client}`", truncate(s, 64)))
        }
        Some(other) => bad("client_id", format!("must be a string, got {}", kind(other))),
    }

    let event_type = match object.get("event_type") {
        None | Some(Value::Null) => {
            bad("event_type", "is required".into());
            None
        }
        Some(Value::String(s)) => match check_event_type(s) {
            Ok(()) => Some(s.clone()),
            Err(reason) => {
                bad("event_type", reason);
                None
            }
        },
        Some(other) => {
            bad("event_type", format!("must be a string, got {}", kind(other)));
            None
        }
    };

    let mut id = |field: &str| match object.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match check_id(s) {
            Ok(()) => Some(s.clone()),
            Err(reason) => {
                bad(field, reason);
                None
            }
        },
        Some(other) => {
            bad(field, format!("must be a string, got {}", kind(other)));
            None
        }
    };
    let user_id = id("user_id");
    let anon_id = id("anon_id");
    let session_id = id("session_id");
    let ids_given = |f: &str| matches!(object.get(f), Some(v) if !v.is_null());
    if !ids_given("user_id") && !ids_given("anon_id") {
        bad("user_id", "one of user_id or anon_id is required".into());
    }

    let mut section = |field: &str| match object.remove(field) {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(o)) => {
            if depth_of_map(&o, 1) > MAX_DEPTH {
                bad(field, format!("is nested deeper than {MAX_DEPTH} levels"));
                return None;
            }
            Some(o)
        }
        Some(other) => {
            bad(field, format!("must be an object, got {}", kind(&other)));
            None
        }
    };
    let props = section("props");
    let context = section("context");
    if let Some(ctx) = &context {
        check_context(ctx, &mut bad);
    }

    if problems.len() > before {
        return None;
    }
    Some(ValidEvent {
        event_id: event_id?,
        timestamp: timestamp?,
        user_id,
        anon_id,
        session_id,
        event_type: event_type?,
        props: props?,
        context: context?,
    })
}

fn check_context(ctx: &Map<String, Value>, bad: &mut impl FnMut(&str, String)) {
    for field in ["ip", "ua", "locale"] {
        match ctx.get(field) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => bad(&format!("context.{field}"), format!("must be a string, got {}", kind(other))),
        }
    }
    if let Some(Value::String(ip)) = ctx.get("ip")
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        bad("context.ip", format!("`{}` is not an IP address", truncate(ip, 64)));
    }
}

/// `event_type`: a letter, then letters, digits, `_`, `.`, `-` or `:`; at most 64 characters.
fn check_event_type(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_EVENT_TYPE_LEN {
        return Err(format!("is longer than {MAX_EVENT_TYPE_LEN} characters"));
    }
    let ok = s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'));
    if !ok {
        return Err(format!(
            "`{}` must start with a letter and hold only letters, digits, '_', '.', '-' or ':'",
            truncate(s, 64)
        ));
    }
    Ok(())
}

fn check_id(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty (omit the field instead)".into());
    }
    if s.len() > MAX_ID_LEN {
        return Err(format!("is longer than {MAX_ID_LEN} bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

fn depth_of_map(map: &Map<String, Value>, depth: usize) -> usize {
    map.values().map(|v| depth_of(v, depth)).max().unwrap_or(depth)
}

fn depth_of(value: &Value, depth: usize) -> usize {
    match value {
        Value::Object(m) => depth_of_map(m, depth + 1),
        Value::Array(a) => a.iter().map(|v| depth_of(v, depth + 1)).max().unwrap_or(depth + 1),
        _ => depth,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn human(d: Duration) -> String {
    d.to_std().map(|d| humantime::format_duration(d).to_string()).unwrap_or_else(|_| d.to_string())
}

#[cfg(test)]
mod tests;
