//! Entity keys in their canonical text form, as [`RowKey::key`](crate::RowKey::key) holds them.
//!
//! Every writer of online rows (stream aggregation, materialization) and the serving layer must
//! agree on this form, or reads miss rows:
//! - a string key is itself (`u-123`); an int64 key is its decimal text (`42`, `-7`); a bool key
//!   is `true` or `false`;
//! - a composite key (an entity with several join keys) is the text of each part, in the order of
//!   the entity's `join_keys`, joined by [`COMPOSITE_SEPARATOR`] (U+001F, the ASCII unit
//!   separator). A part containing that character cannot be part of a composite key: the join
//!   would be ambiguous, so [`composite`] refuses it.

use std::fmt::Write;

/// The separator of the parts of a composite entity key: U+001F (ASCII unit separator).
pub const COMPOSITE_SEPARATOR: char = '\u{1f}';

/// An entity key value as a request gives it, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyValue<'a> {
    /// Text.
    String(&'a str),
    /// An integer.
    Int64(i64),
    /// A boolean.
    Bool(bool),
    /// No value.
    Null,
    /// A value of a type no entity key has; the name of that type, for the error message.
    Other(&'static str),
}

impl KeyValue<'_> {
    /// The name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::String(_) => "string",
            Self::Int64(_) => "int64",
            Self::Bool(_) => "bool",
            Self::Null => "null",
            Self::Other(name) => name,
        }
    }

    /// Appends the canonical text of the value to `out` (nothing for null and other types).
    pub fn push_text(&self, out: &mut String) {
        match self {
            Self::String(s) => out.push_str(s),
            // Writing to a String cannot fail.
            Self::Int64(i) => {
                let _ = write!(out, "{i}");
            }
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Null | Self::Other(_) => {}
        }
    }
}

/// The composite key of `parts` (each already in canonical text form), or `None` when there are
/// several parts and one contains [`COMPOSITE_SEPARATOR`]. A single part is returned as it is.
pub fn composite(parts: &[&str]) -> Option<String> {
    match parts {
        [one] => Some((*one).to_owned()),
        _ if parts.iter().any(|p| p.contains(COMPOSITE_SEPARATOR)) => None,
        _ => Some(parts.join(COMPOSITE_SEPARATOR_STR)),
    }
}

const COMPOSITE_SEPARATOR_STR: &str = "\u{1f}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_of_each_type() {
        let text = |v: KeyValue<'_>| {
            let mut s = String::new();
            v.push_text(&mut s);
            s
        };
        assert_eq!(text(KeyValue::String("u-1")), "u-1");
        assert_eq!(text(KeyValue::Int64(-42)), "-42");
        assert_eq!(text(KeyValue::Bool(true)), "true");
    }

    #[test]
    fn composite_keys_join_with_the_unit_separator_and_refuse_it_inside_parts() {
        assert_eq!(composite(&["shop-1", "u-1"]).as_deref(), Some("shop-1\u{1f}u-1"));
        assert_eq!(composite(&["only"]).as_deref(), Some("only"));
        assert_eq!(composite(&["a\u{1f}b"]).as_deref(), Some("a\u{1f}b"), "a single part is never joined");
        assert_eq!(composite(&["a\u{1f}b", "c"]), None);
        assert_eq!(composite(&["a", "b\u{1f}c"]), None);
        assert_eq!(COMPOSITE_SEPARATOR_STR, COMPOSITE_SEPARATOR.to_string());
    }
}
