//! Typed feature values.

use std::fmt;

use polars::prelude::AnyValue;
use serde::{Deserialize, Serialize};

/// The type of a feature or of an entity's join key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    /// `true` or `false`.
    Bool,
    /// A signed 64-bit integer.
    Int64,
    /// A 64-bit float.
    Float64,
    /// UTF-8 text.
    String,
    /// An instant, in microseconds since the Unix epoch, UTC.
    Timestamp,
}

impl ValueType {
    /// The name used in definitions and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::Int64 => "int64",
            Self::Float64 => "float64",
            Self::String => "string",
            Self::Timestamp => "timestamp",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One feature value. Its serde form is the default (externally tagged), which compact binary
/// formats such as the aggregator's checkpoints (postcard) can read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// No value (for example the average of an empty window).
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int64(i64),
    /// A 64-bit float.
    Float64(f64),
    /// UTF-8 text.
    String(String),
    /// An instant in microseconds since the Unix epoch, UTC.
    Timestamp(i64),
}

impl Value {
    /// The value of a cell of the offline store (a polars [`AnyValue`]) as a feature of type
    /// `ty`: timestamps in microseconds (a datetime's or an integer's), integers widened, `Int64`
    /// taken as a float where `ty` is `Float64`; a null or a cell of another type is [`Value::Null`].
    pub fn from_cell(cell: AnyValue<'_>, ty: ValueType) -> Self {
        match (ty, cell) {
            (_, AnyValue::Null) => Self::Null,
            (ValueType::Bool, AnyValue::Boolean(b)) => Self::Bool(b),
            (ValueType::Int64, AnyValue::Int64(x)) => Self::Int64(x),
            (ValueType::Int64, AnyValue::Int32(x)) => Self::Int64(i64::from(x)),
            (ValueType::Float64, AnyValue::Float64(x)) => Self::Float64(x),
            (ValueType::Float64, AnyValue::Float32(x)) => Self::Float64(f64::from(x)),
            (ValueType::Float64, AnyValue::Int64(x)) => Self::Float64(x as f64),
            (ValueType::String, AnyValue::String(s)) => Self::String(s.to_owned()),
            (ValueType::String, AnyValue::StringOwned(s)) => Self::String(s.to_string()),
            (ValueType::Timestamp, AnyValue::Int64(x) | AnyValue::Datetime(x, _, _)) => Self::Timestamp(x),
            (ValueType::Timestamp, AnyValue::Int32(x)) => Self::Timestamp(i64::from(x)),
            _ => Self::Null,
        }
    }

    /// The type of this value; `None` for [`Value::Null`].
    pub fn value_type(&self) -> Option<ValueType> {
        match self {
            Self::Null => None,
            Self::Bool(_) => Some(ValueType::Bool),
            Self::Int64(_) => Some(ValueType::Int64),
            Self::Float64(_) => Some(ValueType::Float64),
            Self::String(_) => Some(ValueType::String),
            Self::Timestamp(_) => Some(ValueType::Timestamp),
        }
    }

    /// Whether this value may be stored in a feature of type `ty` (null fits every type).
    pub fn fits(&self, ty: ValueType) -> bool {
        self.value_type().is_none_or(|t| t == ty)
    }
}
