//! The binary encoding of an events record: length-prefixed fields in a fixed order.
//!
//! JSON cost a third of the server's CPU on the hot path (written by the collector, parsed again
//! by the lake writer); this is a copy of the bytes each way. Layout, all integers little endian:
//!
//! ```text
//! count u32, then per event:
//!   event_id [16]  timestamp (secs i64, nanos u32)  received_at (secs i64, nanos u32)
//!   client_id str  user_id opt  anon_id opt  session_id opt  event_type str  props str  context str
//!   ip opt  user_agent opt  browser opt  browser_version opt  os opt  device_type opt
//!   is_bot u8  geo_country opt  geo_region opt  geo_city opt
//! str = len u32 + UTF-8 bytes; opt = 0, or 1 then str
//! ```

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, Utc};
use livora_common::{ClientId, Enrichment, Event, JsonObject};
use serde_json::value::RawValue;
use uuid::Uuid;

/// Why binary events could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed binary events record: {0}")]
pub struct BinaryError(String);

fn bad(what: impl Into<String>) -> BinaryError {
    BinaryError(what.into())
}

/// Appends the encoding of `events` to `buf`.
pub fn encode(events: &[Event], buf: &mut BytesMut) {
    buf.put_u32_le(u32::try_from(events.len()).unwrap_or(u32::MAX));
    for e in events {
        buf.put_slice(e.event_id.as_bytes());
        put_time(buf, &e.timestamp);
        put_time(buf, &e.received_at);
        put_str(buf, e.client_id.as_str());
        put_opt(buf, e.user_id.as_deref());
        put_opt(buf, e.anon_id.as_deref());
        put_opt(buf, e.session_id.as_deref());
        put_str(buf, &e.event_type);
        put_str(buf, e.props.get());
        put_str(buf, e.context.get());
        let en = &e.enrichment;
        for field in [&en.ip, &en.user_agent, &en.browser, &en.browser_version, &en.os, &en.device_type] {
            put_opt(buf, field.as_deref());
        }
        buf.put_u8(u8::from(en.is_bot));
        for field in [&en.geo_country, &en.geo_region, &en.geo_city] {
            put_opt(buf, field.as_deref());
        }
    }
}

/// One event of a binary record, borrowed from the record's bytes: what a consumer that copies
/// events elsewhere (the lake writer, into Arrow) reads without an allocation per field.
///
/// `props` and `context` are the text the collector validated as JSON objects before the record
/// was appended (the log checksums every record); they are not parsed again here.
/// [`EventRef::to_event`] makes an owned [`Event`], checking them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRef<'a> {
    /// See [`Event::event_id`].
    pub event_id: Uuid,
    /// See [`Event::timestamp`].
    pub timestamp: DateTime<Utc>,
    /// See [`Event::received_at`].
    pub received_at: DateTime<Utc>,
    /// See [`Event::client_id`].
    pub client_id: &'a str,
    /// See [`Event::user_id`].
    pub user_id: Option<&'a str>,
    /// See [`Event::anon_id`].
    pub anon_id: Option<&'a str>,
    /// See [`Event::session_id`].
    pub session_id: Option<&'a str>,
    /// See [`Event::event_type`].
    pub event_type: &'a str,
    /// See [`Event::props`].
    pub props: &'a str,
    /// See [`Event::context`].
    pub context: &'a str,
    /// See [`Enrichment::ip`].
    pub ip: Option<&'a str>,
    /// See [`Enrichment::user_agent`].
    pub user_agent: Option<&'a str>,
    /// See [`Enrichment::browser`].
    pub browser: Option<&'a str>,
    /// See [`Enrichment::browser_version`].
    pub browser_version: Option<&'a str>,
    /// See [`Enrichment::os`].
    pub os: Option<&'a str>,
    /// See [`Enrichment::device_type`].
    pub device_type: Option<&'a str>,
    /// See [`Enrichment::is_bot`].
    pub is_bot: bool,
    /// See [`Enrichment::geo_country`].
    pub geo_country: Option<&'a str>,
    /// See [`Enrichment::geo_region`].
    pub geo_region: Option<&'a str>,
    /// See [`Enrichment::geo_city`].
    pub geo_city: Option<&'a str>,
}

impl<'a> EventRef<'a> {
    /// A view of an owned event (an event of a JSON record, which cannot be borrowed from its
    /// bytes).
    pub fn of(e: &'a Event) -> Self {
        let en = &e.enrichment;
        Self {
            event_id: e.event_id,
            timestamp: e.timestamp,
            received_at: e.received_at,
            client_id: e.client_id.as_str(),
            user_id: e.user_id.as_deref(),
            anon_id: e.anon_id.as_deref(),
            session_id: e.session_id.as_deref(),
            event_type: &e.event_type,
            props: e.props.get(),
            context: e.context.get(),
            ip: en.ip.as_deref(),
            user_agent: en.user_agent.as_deref(),
            browser: en.browser.as_deref(),
            browser_version: en.browser_version.as_deref(),
            os: en.os.as_deref(),
            device_type: en.device_type.as_deref(),
            is_bot: en.is_bot,
            geo_country: en.geo_country.as_deref(),
            geo_region: en.geo_region.as_deref(),
            geo_city: en.geo_city.as_deref(),
        }
    }

    /// The owned event, its client id and its `props` and `context` checked.
    pub fn to_event(&self) -> Result<Event, BinaryError> {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        Ok(Event {
            event_id: self.event_id,
            timestamp: self.timestamp,
            client_id: ClientId::new(self.client_id).map_err(|e| bad(format!("client_id: {e}")))?,
            user_id: owned(self.user_id),
            anon_id: owned(self.anon_id),
            session_id: owned(self.session_id),
            event_type: self.event_type.to_owned(),
            props: object(self.props)?,
            context: object(self.context)?,
            received_at: self.received_at,
            enrichment: Enrichment {
                ip: owned(self.ip),
                user_agent: owned(self.user_agent),
                browser: owned(self.browser),
                browser_version: owned(self.browser_version),
                os: owned(self.os),
                device_type: owned(self.device_type),
                is_bot: self.is_bot,
                geo_country: owned(self.geo_country),
                geo_region: owned(self.geo_region),
                geo_city: owned(self.geo_city),
            },
        })
    }
}

fn object(text: &str) -> Result<JsonObject, BinaryError> {
    let raw = RawValue::from_string(text.to_owned()).map_err(|e| bad(format!("json: {e}")))?;
    JsonObject::new(raw).map_err(|e| bad(e.to_string()))
}

/// Reads events written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<Event>, BinaryError> {
    decode_refs(bytes)?.iter().map(EventRef::to_event).collect()
}

/// Reads events written by [`encode`] without copying them: every field borrowed from `bytes`.
pub fn decode_refs(bytes: &[u8]) -> Result<Vec<EventRef<'_>>, BinaryError> {
    let mut r = Reader { bytes, at: 0 };
    let count = r.u32()? as usize;
    // Each event takes at least 80 bytes: a corrupt count cannot make us allocate wildly.
    let mut events = Vec::with_capacity(count.min(bytes.len() / 80 + 1));
    for _ in 0..count {
        events.push(EventRef {
            event_id: Uuid::from_bytes(r.take(16)?.try_into().map_err(|_| bad("event_id"))?),
            timestamp: r.time()?,
            received_at: r.time()?,
            client_id: r.str()?,
            user_id: r.opt()?,
            anon_id: r.opt()?,
            session_id: r.opt()?,
            event_type: r.str()?,
            props: r.str()?,
            context: r.str()?,
            ip: r.opt()?,
            user_agent: r.opt()?,
            browser: r.opt()?,
            browser_version: r.opt()?,
            os: r.opt()?,
            device_type: r.opt()?,
            is_bot: r.u8()? != 0,
            geo_country: r.opt()?,
            geo_region: r.opt()?,
            geo_city: r.opt()?,
        });
    }
    if r.at != bytes.len() {
        return Err(bad(format!("{} trailing bytes", bytes.len() - r.at)));
    }
    Ok(events)
}

fn put_time(buf: &mut BytesMut, t: &DateTime<Utc>) {
    buf.put_i64_le(t.timestamp());
    buf.put_u32_le(t.timestamp_subsec_nanos());
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u32_le(u32::try_from(s.len()).unwrap_or(u32::MAX));
    buf.put_slice(s.as_bytes());
}

fn put_opt(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        None => buf.put_u8(0),
        Some(s) => {
            buf.put_u8(1);
            put_str(buf, s);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BinaryError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(|| bad("truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, BinaryError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, BinaryError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| bad("u32"))?))
    }

    fn time(&mut self) -> Result<DateTime<Utc>, BinaryError> {
        let secs = i64::from_le_bytes(self.take(8)?.try_into().map_err(|_| bad("time"))?);
        let nanos = self.u32()?;
        DateTime::from_timestamp(secs, nanos).ok_or_else(|| bad("time out of range"))
    }

    fn str(&mut self) -> Result<&'a str, BinaryError> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| bad("invalid UTF-8"))
    }

    fn opt(&mut self) -> Result<Option<&'a str>, BinaryError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?)),
            other => Err(bad(format!("option flag {other}"))),
        }
    }
}
