//! The binary form of an [`OnlineRow`], shared by the backends that store rows as bytes.
//!
//! ```text
//! u8 version (1) | i64 event_time | i64 created | u16 count | count × value
//! value: u16 name length | name | u8 tag | payload
//! tag: 0 null, 1 bool (u8), 2 int64 (i64), 3 float64 (f64 bits), 4 string (u32 length, bytes),
//!      5 timestamp (i64)
//! ```
//! Integers are little-endian. The two times come first at fixed offsets so that a backend can
//! compare them without decoding the values ([`times`]).

use crate::error::{Error, Result};
use crate::online::OnlineRow;
use crate::value::Value;

const VERSION: u8 = 1;
/// Bytes before the values: version, event time, created, count.
pub const HEADER_LEN: usize = 1 + 8 + 8 + 2;

/// Encodes `row`. Fails only when the row has more than 65,535 values, a name longer than 65,535
/// bytes or a string longer than 4 GiB.
pub fn encode(row: &OnlineRow) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER_LEN + row.values.len() * 24);
    out.push(VERSION);
    out.extend_from_slice(&row.event_time.to_le_bytes());
    out.extend_from_slice(&row.created.to_le_bytes());
    let count = u16::try_from(row.values.len())
        .map_err(|_| Error::InvalidArgument(format!("a row holds {} values; at most 65535", row.values.len())))?;
    out.extend_from_slice(&count.to_le_bytes());
    for (name, value) in &row.values {
        let len = u16::try_from(name.len())
            .map_err(|_| Error::InvalidArgument(format!("feature name of {} bytes; at most 65535", name.len())))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        match value {
            Value::Null => out.push(0),
            Value::Bool(b) => {
                out.push(1);
                out.push(u8::from(*b));
            }
            Value::Int64(i) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float64(f) => {
                out.push(3);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::String(s) => {
                out.push(4);
                let len = u32::try_from(s.len())
                    .map_err(|_| Error::InvalidArgument(format!("feature `{name}` holds a string over 4 GiB")))?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Timestamp(t) => {
                out.push(5);
                out.extend_from_slice(&t.to_le_bytes());
            }
        }
    }
    Ok(out)
}

/// The `(event_time, created)` of an encoded row, read from its header alone.
pub fn times(bytes: &[u8]) -> Result<(i64, i64)> {
    let mut r = Reader { bytes, at: 0 };
    r.header()
}

/// Decodes a row written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<OnlineRow> {
    let mut r = Reader { bytes, at: 0 };
    let (event_time, created) = r.header()?;
    let count = u16::from_le_bytes(r.array()?);
    let mut values = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = usize::from(u16::from_le_bytes(r.array()?));
        let name = r.str(len)?;
        let value = match r.array::<1>()?[0] {
            0 => Value::Null,
            1 => Value::Bool(r.array::<1>()?[0] != 0),
            2 => Value::Int64(i64::from_le_bytes(r.array()?)),
            3 => Value::Float64(f64::from_bits(u64::from_le_bytes(r.array()?))),
            4 => {
                let len = u32::from_le_bytes(r.array()?) as usize;
                Value::String(r.str(len)?)
            }
            5 => Value::Timestamp(i64::from_le_bytes(r.array()?)),
            tag => return Err(corrupt(format!("unknown value tag {tag}"))),
        };
        values.push((name, value));
    }
    if r.at != bytes.len() {
        return Err(corrupt(format!("{} trailing bytes", bytes.len() - r.at)));
    }
    Ok(OnlineRow { event_time, created, values })
}

fn corrupt(reason: String) -> Error {
    Error::Corrupt { what: "an online row".into(), reason }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn header(&mut self) -> Result<(i64, i64)> {
        let version = self.array::<1>()?[0];
        if version != VERSION {
            return Err(corrupt(format!("unknown row version {version}")));
        }
        Ok((i64::from_le_bytes(self.array()?), i64::from_le_bytes(self.array()?)))
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end =
            self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| corrupt("truncated".into()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn str(&mut self, n: usize) -> Result<String> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("a name or string is not utf-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int64),
            any::<f64>().prop_map(Value::Float64),
            ".{0,40}".prop_map(Value::String),
            any::<i64>().prop_map(Value::Timestamp),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(event_time: i64, created: i64, values in prop::collection::vec(("[a-z_]{1,20}", value()), 0..30)) {
            let row = OnlineRow { event_time, created, values };
            let bytes = encode(&row).unwrap();
            prop_assert_eq!(times(&bytes).unwrap(), (event_time, created));
            let back = decode(&bytes).unwrap();
            // NaN != NaN, so compare the encodings.
            prop_assert_eq!(encode(&back).unwrap(), bytes);
        }

        #[test]
        fn never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn refuses_truncation_and_trailing_bytes() {
        let row = OnlineRow { event_time: 1, created: 2, values: vec![("a".into(), Value::String("xyz".into()))] };
        let bytes = encode(&row).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().to_string().contains("trailing"));
    }
}
