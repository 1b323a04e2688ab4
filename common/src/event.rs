//! The canonical event (brief §4) as it travels the event log, after validation and enrichment.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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
    pub props: Map<String, Value>,
    /// Where it happened: `ip`, `ua`, `locale`, page and campaign fields.
    #[serde(default)]
    pub context: Map<String, Value>,
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
