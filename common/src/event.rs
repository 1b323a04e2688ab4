//! The canonical event (brief §4) as it travels the event log, after validation and enrichment.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ClientId;

/// A validated, enriched event.
///
/// The wire format a shop sends is the same minus `received_at` and `enrichment`, which the
/// collector adds before the event is appended to the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id chosen by the sender; every consumer dedupes on it (within a client).
    pub event_id: Uuid,
    /// When the action happened (event time), normalised to UTC.
    pub timestamp: DateTime<Utc>,
    /// The tenant; always the authenticated client.
    pub client_id: ClientId,
    /// The shop's id for an identified user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The device/browser id of a visitor, identified or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anon_id: Option<String>,
    /// The session the action belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// What happened: `page_view`, `add_to_cart`, `purchase`, ...
    pub event_type: String,
    /// Event-specific properties.
    #[serde(default)]
    pub props: JsonObject,
    /// Where it happened: `ip`, `ua`, `locale`, page and campaign fields.
    #[serde(default)]
    pub context: JsonObject,
    /// When the collector received the event (server clock, UTC).
    pub received_at: DateTime<Utc>,
    /// What the collector derived from the request.
    #[serde(default)]
    pub enrichment: Enrichment,
}

/// Fields the collector derives before it appends an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrichment {
    /// The client IP the event is attributed to (`context.ip`, else the request's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The user agent the event is attributed to (`context.ua`, else the request's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Browser family parsed from the user agent (`Chrome`, `Safari`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
    /// Browser version parsed from the user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_version: Option<String>,
    /// Operating system parsed from the user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// `desktop`, `mobile`, `tablet`, `bot` or `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// Whether the user agent is a known crawler or bot.
    #[serde(default)]
    pub is_bot: bool,
    /// ISO country code from the configured MaxMind database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_country: Option<String>,
    /// Region (first subdivision) name from the configured MaxMind database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_region: Option<String>,
    /// City name from the configured MaxMind database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo_city: Option<String>,
}

/// A JSON object kept as its text.
///
/// `props` and `context` are validated once at the door and then travel as they were sent: the
/// log and the lake store the text, and only a consumer that needs a field parses it. That spares
/// the hot path a tree of allocations per event.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonObject(Box<RawValue>);

/// Why a raw JSON value is not a [`JsonObject`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an object")]
pub struct NotAnObject;

impl JsonObject {
    /// Wraps raw JSON text that is an object.
    pub fn new(raw: Box<RawValue>) -> Result<Self, NotAnObject> {
        if raw.get().trim_start().starts_with('{') { Ok(Self(raw)) } else { Err(NotAnObject) }
    }

    /// The object as JSON text, exactly as received.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The object parsed into a map.
    pub fn to_map(&self) -> Map<String, Value> {
        // The text was checked to be a JSON object when the value was made.
        serde_json::from_str(self.get()).unwrap_or_default()
    }
}

impl Default for JsonObject {
    fn default() -> Self {
        Self(RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!("`{{}}` is valid JSON")))
    }
}

impl From<Map<String, Value>> for JsonObject {
    fn from(map: Map<String, Value>) -> Self {
        let text = Value::Object(map).to_string();
        Self(RawValue::from_string(text).unwrap_or_else(|_| unreachable!("a serialized map is valid JSON")))
    }
}

impl PartialEq for JsonObject {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl std::fmt::Debug for JsonObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_keep_their_text_and_refuse_non_objects() {
        let raw = RawValue::from_string("{ \"a\": [1, 2] }".to_owned()).expect("valid");
        let obj = JsonObject::new(raw).expect("an object");
        assert_eq!(obj.get(), "{ \"a\": [1, 2] }");
        assert_eq!(obj.to_map()["a"], serde_json::json!([1, 2]));
        let round: JsonObject = serde_json::from_str(&serde_json::to_string(&obj).expect("ser")).expect("de");
        assert_eq!(round, obj);
        assert!(JsonObject::new(RawValue::from_string("[1]".to_owned()).expect("valid")).is_err());
        assert_eq!(JsonObject::default().get(), "{}");
    }
}
