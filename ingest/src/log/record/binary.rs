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

/// Reads events written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<Event>, BinaryError> {
    let mut r = Reader { bytes, at: 0 };
    let count = r.u32()? as usize;
    // Each event takes at least 80 bytes: a corrupt count cannot make us allocate wildly.
    let mut events = Vec::with_capacity(count.min(bytes.len() / 80 + 1));
    for _ in 0..count {
        let event_id = Uuid::from_bytes(r.take(16)?.try_into().map_err(|_| bad("event_id"))?);
        let timestamp = r.time()?;
        let received_at = r.time()?;
        let client_id = ClientId::new(r.str()?).map_err(|e| bad(format!("client_id: {e}")))?;
        let user_id = r.opt()?;
        let anon_id = r.opt()?;
        let session_id = r.opt()?;
        let event_type = r.str()?.to_owned();
        let props = r.object()?;
        let context = r.object()?;
        let (ip, user_agent, browser, browser_version, os, device_type) =
            (r.opt()?, r.opt()?, r.opt()?, r.opt()?, r.opt()?, r.opt()?);
        let is_bot = r.u8()? != 0;
        let (geo_country, geo_region, geo_city) = (r.opt()?, r.opt()?, r.opt()?);
        events.push(Event {
            event_id,
            timestamp,
            client_id,
            user_id,
            anon_id,
            session_id,
            event_type,
            props,
            context,
            received_at,
            enrichment: Enrichment {
                ip,
                user_agent,
                browser,
                browser_version,
                os,
                device_type,
                is_bot,
                geo_country,
                geo_region,
                geo_city,
            },
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

    fn opt(&mut self) -> Result<Option<String>, BinaryError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?.to_owned())),
            other => Err(bad(format!("option flag {other}"))),
        }
    }

    fn object(&mut self) -> Result<JsonObject, BinaryError> {
        let raw = RawValue::from_string(self.str()?.to_owned()).map_err(|e| bad(format!("json: {e}")))?;
        JsonObject::new(raw).map_err(|e| bad(e.to_string()))
    }
}
