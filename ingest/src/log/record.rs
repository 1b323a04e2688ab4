//! The unit of the event log: one accepted batch, or one rejected request kept for quarantine.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};
use livora_common::{ClientId, Event, Problem};
use serde::{Deserialize, Serialize};

const KIND_EVENTS: u8 = 1;
const KIND_REJECTED: u8 = 2;

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
}

impl LogRecord {
    /// Encodes the record: one kind byte, then JSON.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(512).writer();
        let written = match self {
            Self::Events(events) => {
                buf.get_mut().put_u8(KIND_EVENTS);
                serde_json::to_writer(&mut buf, events)
            }
            Self::Rejected(r) => {
                buf.get_mut().put_u8(KIND_REJECTED);
                serde_json::to_writer(&mut buf, r)
            }
        };
        // Serializing these types into memory cannot fail: keys are strings, no custom Serialize.
        debug_assert!(written.is_ok());
        buf.into_inner().freeze()
    }

    /// Decodes a record written by [`LogRecord::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let (&kind, body) = bytes.split_first().ok_or(RecordError::Empty)?;
        match kind {
            KIND_EVENTS => Ok(Self::Events(serde_json::from_slice(body)?)),
            KIND_REJECTED => Ok(Self::Rejected(serde_json::from_slice(body)?)),
            other => Err(RecordError::UnknownKind(other)),
        }
    }
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
