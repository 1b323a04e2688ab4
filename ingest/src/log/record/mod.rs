//! The unit of the event log: one accepted batch, or one rejected request kept for quarantine.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use livora_common::{ClientId, Event, Problem};
use serde::{Deserialize, Serialize};

mod binary;

pub use binary::EventRef;

/// Events as JSON: written by the first versions, still read.
const KIND_EVENTS_JSON: u8 = 1;
const KIND_REJECTED: u8 = 2;
/// Events in the binary layout of [`binary`].
const KIND_EVENTS: u8 = 3;

/// What one log record holds.
#[derive(Debug, Clone, PartialEq)]
pub enum LogRecord {
    /// The events of one accepted request, all of one client.
    Events(Vec<Event>),
    /// An authenticated request that was refused with 400, kept so that an operator can see what
    /// a sender got wrong (Snowplow's "bad rows"); it ends in the quarantine table.
    Rejected(Rejection),
}

/// A refused request, as kept for the quarantine table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The authenticated client that sent it.
    pub client_id: ClientId,
    /// When the collector received it.
    pub received_at: DateTime<Utc>,
    /// Every problem found.
    pub problems: Vec<Problem>,
    /// The request body (lossy UTF-8), truncated to the configured keep size.
    pub payload: String,
}

/// Why a log record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record is empty.
    #[error("empty log record")]
    Empty,
    /// The kind byte is not one this version knows.
    #[error("unknown log record kind {0}")]
    UnknownKind(u8),
    /// The body is not the JSON this kind expects.
    #[error("malformed log record: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The body is not the binary layout this kind expects.
    #[error(transparent)]
    Binary(#[from] binary::BinaryError),
}

impl LogRecord {
    /// Encodes the record: one kind byte, then the events in binary or the rejection as JSON.
    pub fn encode(&self) -> Bytes {
        match self {
            Self::Events(events) => {
                let size: usize = events.iter().map(|e| 160 + e.props.get().len() + e.context.get().len()).sum();
                let mut buf = BytesMut::with_capacity(1 + size);
                buf.put_u8(KIND_EVENTS);
                binary::encode(events, &mut buf);
                buf.freeze()
            }
            Self::Rejected(r) => {
                let mut buf = BytesMut::with_capacity(256 + r.payload.len()).writer();
                buf.get_mut().put_u8(KIND_REJECTED);
                // Serializing these types into memory cannot fail: keys are strings.
                let written = serde_json::to_writer(&mut buf, r);
                debug_assert!(written.is_ok());
                buf.into_inner().freeze()
            }
        }
    }

    /// Decodes a record written by [`LogRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let (&kind, body) = bytes.split_first().ok_or(RecordError::Empty)?;
        match kind {
            KIND_EVENTS => Ok(Self::Events(binary::decode(body)?)),
            KIND_EVENTS_JSON => Ok(Self::Events(serde_json::from_slice(body)?)),
            KIND_REJECTED => Ok(Self::Rejected(serde_json::from_slice(body)?)),
            other => Err(RecordError::UnknownKind(other)),
        }
    }

    /// Decodes a record written by [`LogRecord::encode`], borrowing the events of a binary
    /// record from `bytes` rather than copying them (records of other kinds are decoded as
    /// [`LogRecord::decode`] does).
    pub fn decode_borrowed(bytes: &[u8]) -> Result<Borrowed<'_>, RecordError> {
        match bytes.split_first() {
            Some((&KIND_EVENTS, body)) => Ok(Borrowed::Events(binary::decode_refs(body)?)),
            _ => Self::decode(bytes).map(Borrowed::Owned),
        }
    }
}

/// A record decoded by [`LogRecord::decode_borrowed`].
#[derive(Debug, Clone, PartialEq)]
pub enum Borrowed<'a> {
    /// The events of a binary record, borrowed.
    Events(Vec<EventRef<'a>>),
    /// Any other record, owned.
    Owned(LogRecord),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_empty_records_are_errors_not_panics() {
        assert!(matches!(LogRecord::decode(&[]), Err(RecordError::Empty)));
        assert!(matches!(LogRecord::decode(&[9, b'[']), Err(RecordError::UnknownKind(9))));
        assert!(matches!(LogRecord::decode(&[1, b'{']), Err(RecordError::Malformed(_))));
    }

    /// An event with sub-microsecond time (the log keeps nanoseconds), every optional field set or
    /// none.
    fn event(i: u8, full: bool) -> Event {
        let at = DateTime::from_timestamp(1_767_600_000 + i64::from(i), 123_456_789).unwrap();
        crate::lake::schema::tests::event(i, &at.to_rfc3339(), "purchase", full.then_some("u_1"), full)
    }

    #[test]
    fn events_round_trip_in_binary_with_every_field_set_or_not() {
        let record = LogRecord::Events(vec![event(1, true), event(2, false), event(3, true)]);
        let bytes = record.encode();
        assert_eq!(bytes[0], KIND_EVENTS);
        assert_eq!(LogRecord::decode(&bytes).unwrap(), record);
        assert_eq!(LogRecord::decode(&LogRecord::Events(vec![]).encode()).unwrap(), LogRecord::Events(vec![]));
    }

    #[test]
    fn json_event_records_of_earlier_versions_are_still_read() {
        let events = vec![event(1, true), event(2, false)];
        let mut old = vec![KIND_EVENTS_JSON];
        old.extend(serde_json::to_vec(&events).unwrap());
        assert_eq!(LogRecord::decode(&old).unwrap(), LogRecord::Events(events));
    }

    #[test]
    fn every_truncation_or_corruption_of_a_binary_record_is_an_error_not_a_panic() {
        let bytes = LogRecord::Events(vec![event(1, true), event(2, false)]).encode();
        for cut in 1..bytes.len() {
            assert!(LogRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            assert!(LogRecord::decode_borrowed(&bytes[..cut]).is_err(), "cut at {cut}, borrowed");
        }
        for i in 1..bytes.len() {
            let mut bad = bytes.to_vec();
            bad[i] ^= 0xff;
            let _ = LogRecord::decode(&bad);
            let _ = LogRecord::decode_borrowed(&bad);
        }
    }

    #[test]
    fn borrowed_events_are_the_owned_events_field_for_field() {
        let events = vec![event(1, true), event(2, false), event(3, true)];
        let bytes = LogRecord::Events(events.clone()).encode();
        let Borrowed::Events(borrowed) = LogRecord::decode_borrowed(&bytes).unwrap() else {
            panic!("a binary events record is borrowed");
        };
        assert_eq!(borrowed, events.iter().map(EventRef::of).collect::<Vec<_>>());
        let owned: Vec<Event> = borrowed.iter().map(|e| e.to_event().unwrap()).collect();
        assert_eq!(owned, events);
        // Records of the other kinds come back owned, as `decode` reads them.
        let mut old = vec![KIND_EVENTS_JSON];
        old.extend(serde_json::to_vec(&events).unwrap());
        assert_eq!(LogRecord::decode_borrowed(&old).unwrap(), Borrowed::Owned(LogRecord::Events(events)));
    }

    #[test]
    fn rejection_round_trips() {
        let r = LogRecord::Rejected(Rejection {
            client_id: ClientId::new("shop").expect("valid"),
            received_at: Utc::now(),
            problems: vec![Problem::at(3, "timestamp", "not RFC 3339")],
            payload: "{\"x\":1}".into(),
        });
        assert_eq!(LogRecord::decode(&r.encode()).expect("decodes"), r);
    }
}
