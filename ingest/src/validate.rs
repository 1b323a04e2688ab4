//! Parsing and validation of `POST /v1/events` bodies.
//!
//! Every problem of every event is collected, by index and field, so that a sender can fix a
//! batch in one round trip. A batch is all-or-nothing: one bad event refuses the whole request.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Utc};
use livora_common::{ClientId, JsonObject, Problem};
use serde_json::value::RawValue;
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
    /// `props`, as sent.
    pub props: JsonObject,
    /// `context`, as sent.
    pub context: JsonObject,
    /// `context.ip`, when given.
    pub context_ip: Option<String>,
    /// `context.ua`, when given.
    pub context_ua: Option<String>,
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
    // The common case, an event with known fields only, is read in one pass into a struct of
    // borrowed values; anything else (unknown or duplicate fields, bad JSON) takes the path
    // that names every problem.
    let object = match classify(raw) {
        Json::Object(_) => match serde_json::from_str::<Wire<'_>>(text) {
            Ok(wire) => Members::Known(wire),
            Err(_) => match fields(text) {
                Ok(fields) => Members::Any(fields),
                Err(e) => {
                    problems.push(Problem::at(index, "event", format!("invalid JSON: {}", strip_position(&e))));
                    return None;
                }
            },
        },
        other => {
            problems.push(Problem::at(index, "event", format!("must be an object, got {}", other.kind())));
            return None;
        }
    };
    let before = problems.len();
    let mut bad = |field: &str, reason: String| problems.push(Problem::at(index, field, reason));

    if let Members::Any(fields) = &object {
        for key in fields.keys() {
            if !KNOWN_FIELDS.contains(&key.as_ref()) {
                bad(&truncate(key, 64), format!("unknown field; expected one of {}", KNOWN_FIELDS.join(", ")));
            }
        }
    }
    let get = |field: &str| object.get(field).map_or(Json::Null, classify);

    let event_id = match get("event_id") {
        Json::Null => {
            bad("event_id", "is required".into());
            None
        }
        Json::String(s) => match Uuid::try_parse(&s) {
            Ok(id) if id.is_nil() => {
                bad("event_id", "must not be the nil UUID".into());
                None
            }
            Ok(id) => Some(id),
            Err(_) => {
                bad("event_id", format!("`{}` is not a UUID", truncate(&s, 64)));
                None
            }
        },
        other => {
            bad("event_id", format!("must be a string (a UUID), got {}", other.kind()));
            None
        }
    };

    let timestamp = match get("timestamp") {
        Json::Null => {
            bad("timestamp", "is required".into());
            None
        }
        Json::String(s) => match DateTime::parse_from_rfc3339(&s) {
            Ok(t) => {
                let t = t.with_timezone(&Utc);
                if !(0..=9999).contains(&t.year()) {
                    // RFC 3339 years have four digits: such an event could not be sent as it is kept.
                    bad("timestamp", format!("{s} falls outside the years 0000 to 9999 in UTC"));
                    None
                } else if t > now + limits.max_future {
                    bad("timestamp", format!("{s} is more than {} in the future", human(limits.max_future)));
                    None
                } else {
                    Some(t)
                }
            }
            Err(e) => {
                bad("timestamp", format!("`{}` is not an RFC 3339 time: {e}", truncate(&s, 64)));
                None
            }
        },
        other => {
            bad("timestamp", format!("must be a string (RFC 3339), got {}", other.kind()));
            None
        }
    };

    match get("client_id") {
        Json::Null => bad("client_id", "is required".into()),
        Json::String(s) if s == client.as_str() => {}
        Json::String(s) => {
            bad("client_id", format!("`{}` does not match the authenticated client `{client}`", truncate(&s, 64)))
        }
        other => bad("client_id", format!("must be a string, got {}", other.kind())),
    }

    let event_type = match get("event_type") {
        Json::Null => {
            bad("event_type", "is required".into());
            None
        }
        Json::String(s) => match check_event_type(&s) {
            Ok(()) => Some(s.into_owned()),
            Err(reason) => {
                bad("event_type", reason);
                None
            }
        },
        other => {
            bad("event_type", format!("must be a string, got {}", other.kind()));
            None
        }
    };

    let mut id = |field: &str| match get(field) {
        Json::Null => None,
        Json::String(s) => match check_id(&s) {
            Ok(()) => Some(s.into_owned()),
            Err(reason) => {
                bad(field, reason);
                None
            }
        },
        other => {
            bad(field, format!("must be a string, got {}", other.kind()));
            None
        }
    };
    let user_id = id("user_id");
    let anon_id = id("anon_id");
    let session_id = id("session_id");
    if matches!(get("user_id"), Json::Null) && matches!(get("anon_id"), Json::Null) {
        bad("user_id", "one of user_id or anon_id is required".into());
    }

    let mut section = |field: &str| match get(field) {
        Json::Null => Some(JsonObject::default()),
        Json::Object(raw) => {
            if depth(raw.get()) > MAX_DEPTH {
                bad(field, format!("is nested deeper than {MAX_DEPTH} levels"));
                return None;
            }
            if let Err(e) = serde_json::from_str::<Parses>(raw.get()) {
                bad(field, format!("invalid JSON: {}", strip_position(&e)));
                return None;
            }
            JsonObject::new(raw.to_owned()).ok()
        }
        other => {
            bad(field, format!("must be an object, got {}", other.kind()));
            None
        }
    };
    let props = section("props");
    let context = section("context");
    let (context_ip, context_ua) = match &context {
        Some(ctx) => check_context(ctx, &mut bad),
        None => (None, None),
    };

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
        context_ip,
        context_ua,
    })
}

/// An event with only the known fields, each left as text.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow, default)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    client_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    anon_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    session_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    props: Option<&'a RawValue>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
}

/// The members of an event object.
enum Members<'a> {
    /// Known fields only (the fast path).
    Known(Wire<'a>),
    /// Whatever the object holds.
    Any(BTreeMap<Cow<'a, str>, &'a RawValue>),
}

impl<'a> Members<'a> {
    /// The value of `field`; `None` when absent or `null`.
    fn get(&self, field: &str) -> Option<&'a RawValue> {
        match self {
            Self::Any(fields) => fields.get(field).copied(),
            Self::Known(w) => match field {
                "event_id" => w.event_id,
                "timestamp" => w.timestamp,
                "client_id" => w.client_id,
                "user_id" => w.user_id,
                "anon_id" => w.anon_id,
                "session_id" => w.session_id,
                "event_type" => w.event_type,
                "props" => w.props,
                "context" => w.context,
                _ => None,
            },
        }
    }
}

/// A JSON value, looked at without building it.
enum Json<'a> {
    Null,
    String(Cow<'a, str>),
    Object(&'a RawValue),
    Other(&'static str),
}

impl Json<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::String(_) => "a string",
            Self::Object(_) => "an object",
            Self::Other(kind) => kind,
        }
    }
}

fn classify(raw: &RawValue) -> Json<'_> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<&str>(text) {
            Ok(s) => Json::String(Cow::Borrowed(s)),
            // A string with escapes cannot be borrowed.
            Err(_) => serde_json::from_str::<String>(text).map_or(Json::Other("a string"), |s| Json::String(s.into())),
        },
        Some(b'{') => Json::Object(raw),
        Some(b'[') => Json::Other("an array"),
        Some(b'n') => Json::Null,
        Some(b't' | b'f') => Json::Other("a boolean"),
        _ => Json::Other("a number"),
    }
}

/// The members of a JSON object, their values left as text.
fn fields(text: &str) -> Result<BTreeMap<Cow<'_, str>, &RawValue>, serde_json::Error> {
    match serde_json::from_str::<BTreeMap<&str, &RawValue>>(text) {
        Ok(map) => Ok(map.into_iter().map(|(k, v)| (Cow::Borrowed(k), v)).collect()),
        // Keys with escapes cannot be borrowed (and a syntax error is reported from here).
        Err(_) => serde_json::from_str::<BTreeMap<String, &RawValue>>(text)
            .map(|map| map.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect()),
    }
}

/// Checks the `context` fields the collector reads; returns `context.ip` and `context.ua`.
fn check_context(ctx: &JsonObject, bad: &mut impl FnMut(&str, String)) -> (Option<String>, Option<String>) {
    let Ok(fields) = fields(ctx.get()) else { return (None, None) };
    let mut text = |field: &str| match fields.get(field).map(|raw| classify(raw)) {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.into_owned()),
        Some(other) => {
            bad(&format!("context.{field}"), format!("must be a string, got {}", other.kind()));
            None
        }
    };
    let ip = text("ip");
    let ua = text("ua");
    text("locale");
    if let Some(value) = &ip
        && value.parse::<std::net::IpAddr>().is_err()
    {
        bad("context.ip", format!("`{}` is not an IP address", truncate(value, 64)));
    }
    (ip, ua)
}

/// Reads JSON text the way a consumer will, without building it: a [`RawValue`] only skips over
/// its text, and lets through numbers out of range (`1e400`) and lone surrogates (`"\ud800"`)
/// that no parser reads back.
struct Parses;

impl<'de> serde::Deserialize<'de> for Parses {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Parses)
    }
}

impl<'de> serde::de::Visitor<'de> for Parses {
    type Value = Parses;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_str<E>(self, _: &str) -> Result<Parses, E> {
        Ok(Parses)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Parses, A::Error> {
        while seq.next_element::<Parses>()?.is_some() {}
        Ok(Parses)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Parses, A::Error> {
        while map.next_entry::<Parses, Parses>()?.is_some() {}
        Ok(Parses)
    }
}

/// The deepest nesting of objects and arrays in valid JSON text (1 for `{}`).
fn depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
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
