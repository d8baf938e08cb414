//! [`Metadata`]: the host's own data on a token, a bounded JSON object the library stores and
//! returns but never interprets.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest serialized size of a token's metadata, in bytes (compact JSON).
pub const METADATA_MAX_BYTES: usize = 4096;
/// Deepest nesting of objects and arrays (the top-level object is depth 1).
pub const METADATA_MAX_DEPTH: usize = 8;
/// Most object keys, counted over every nested object.
pub const METADATA_MAX_KEYS: usize = 128;
/// Longest object key, in bytes.
pub const METADATA_MAX_KEY_BYTES: usize = 128;

/// A JSON object attached to a token: stored by every store, returned with the validated token
/// ([`ValidatedToken::metadata`](crate::ValidatedToken::metadata)), changed freely by
/// [`TokenManager::update`](crate::TokenManager::update), never interpreted, filtered or logged
/// by the library. Never put a secret in it: it is readable by whoever reads the store.
///
/// Limits, checked when built: a JSON object (not an array or scalar), at most
/// [`METADATA_MAX_BYTES`] (4 KiB) as compact JSON, nesting at most [`METADATA_MAX_DEPTH`] deep,
/// at most [`METADATA_MAX_KEYS`] keys in all, each at most [`METADATA_MAX_KEY_BYTES`] bytes.
///
/// ```
/// use token_core::{Metadata, MetadataError};
///
/// let meta = Metadata::from_value(serde_json::json!({"team": "payments", "ticket": 4711}))?;
/// assert_eq!(meta.get("team"), Some(&serde_json::json!("payments")));
/// assert_eq!(meta.to_string(), r#"{"team":"payments","ticket":4711}"#);
/// assert!(matches!(
///     Metadata::from_value(serde_json::json!(["not", "an", "object"])),
///     Err(MetadataError::NotAnObject { .. })
/// ));
/// # Ok::<(), MetadataError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct Metadata(Map<String, Value>);

/// Why a value is not acceptable [`Metadata`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Metadata must be a JSON object.
    #[error("metadata must be a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found (`array`, `string`, ...).
        found: &'static str,
    },
    /// Not valid JSON text.
    #[error("metadata is not valid JSON: {0}")]
    InvalidJson(String),
    /// Larger than [`METADATA_MAX_BYTES`] as compact JSON.
    #[error("metadata is {size} bytes as JSON; at most {METADATA_MAX_BYTES} are allowed")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Nested deeper than [`METADATA_MAX_DEPTH`].
    #[error("metadata nests deeper than {METADATA_MAX_DEPTH} levels")]
    TooDeep,
    /// More than [`METADATA_MAX_KEYS`] keys in all.
    #[error("metadata has more than {METADATA_MAX_KEYS} keys in all")]
    TooManyKeys,
    /// A key longer than [`METADATA_MAX_KEY_BYTES`].
    #[error("a metadata key is {length} bytes; at most {METADATA_MAX_KEY_BYTES} are allowed")]
    KeyTooLong {
        /// The key's length in bytes.
        length: usize,
    },
}

impl Metadata {
    /// An empty object.
    pub fn new() -> Self {
        Self(Map::new())
    }

    /// Checks `value` against the limits.
    pub fn from_value(value: Value) -> Result<Self, MetadataError> {
        let Value::Object(map) = value else {
            return Err(MetadataError::NotAnObject {
                found: json_type(&value),
            });
        };
        let mut keys = 0;
        check_nesting(&map, 1, &mut keys)?;
        let size = serde_json::to_string(&map).map_or(usize::MAX, |s| s.len());
        if size > METADATA_MAX_BYTES {
            return Err(MetadataError::TooLarge { size });
        }
        Ok(Self(map))
    }

    /// Parses JSON text (as stored) and checks it.
    pub fn from_json(text: &str) -> Result<Self, MetadataError> {
        if text.len() > METADATA_MAX_BYTES * 4 {
            return Err(MetadataError::TooLarge { size: text.len() });
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| MetadataError::InvalidJson(e.to_string()))?;
        Self::from_value(value)
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Whether the object has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for Metadata {
    fn default() -> Self {
        Self::new()
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_nesting(
    map: &Map<String, Value>,
    depth: usize,
    keys: &mut usize,
) -> Result<(), MetadataError> {
    if depth > METADATA_MAX_DEPTH {
        return Err(MetadataError::TooDeep);
    }
    for (key, value) in map {
        *keys += 1;
        if *keys > METADATA_MAX_KEYS {
            return Err(MetadataError::TooManyKeys);
        }
        if key.len() > METADATA_MAX_KEY_BYTES {
            return Err(MetadataError::KeyTooLong { length: key.len() });
        }
        check_value(value, depth, keys)?;
    }
    Ok(())
}

fn check_value(value: &Value, depth: usize, keys: &mut usize) -> Result<(), MetadataError> {
    match value {
        Value::Object(inner) => check_nesting(inner, depth + 1, keys),
        Value::Array(items) => {
            if depth + 1 > METADATA_MAX_DEPTH {
                return Err(MetadataError::TooDeep);
            }
            items
                .iter()
                .try_for_each(|item| check_value(item, depth + 1, keys))
        }
        _ => Ok(()),
    }
}

impl TryFrom<Value> for Metadata {
    type Error = MetadataError;
    fn try_from(value: Value) -> Result<Self, Self::Error> {
        Self::from_value(value)
    }
}

impl From<Metadata> for Value {
    fn from(metadata: Metadata) -> Self {
        Value::Object(metadata.0)
    }
}

impl fmt::Display for Metadata {
    /// Compact JSON, as stored.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(&self.0).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl fmt::Debug for Metadata {
    /// Its size and keys, not its values (hosts keep their own data in it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_are_enforced_with_a_clear_error() {
        assert!(Metadata::from_value(json!({})).is_ok());
        assert_eq!(
            Metadata::from_value(json!("x")),
            Err(MetadataError::NotAnObject { found: "a string" })
        );
        let big = "x".repeat(METADATA_MAX_BYTES);
        assert!(matches!(
            Metadata::from_value(json!({ "a": big })),
            Err(MetadataError::TooLarge { .. })
        ));
        let mut deep = json!(1);
        for _ in 0..METADATA_MAX_DEPTH {
            deep = json!({ "d": deep });
        }
        assert!(
            Metadata::from_value(deep.clone()).is_ok(),
            "depth 8 is allowed"
        );
        assert_eq!(
            Metadata::from_value(json!({ "d": deep })),
            Err(MetadataError::TooDeep)
        );
        let mut nested_arrays = json!(1);
        for _ in 0..METADATA_MAX_DEPTH {
            nested_arrays = json!([nested_arrays]);
        }
        assert_eq!(
            Metadata::from_value(json!({ "a": nested_arrays })),
            Err(MetadataError::TooDeep)
        );
        let many: Map<String, Value> = (0..=METADATA_MAX_KEYS)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        assert_eq!(
            Metadata::from_value(Value::Object(many)),
            Err(MetadataError::TooManyKeys)
        );
        let long_key = "k".repeat(METADATA_MAX_KEY_BYTES + 1);
        assert_eq!(
            Metadata::from_value(json!({ long_key: 1 })),
            Err(MetadataError::KeyTooLong {
                length: METADATA_MAX_KEY_BYTES + 1
            })
        );
        assert!(matches!(
            Metadata::from_json("{"),
            Err(MetadataError::InvalidJson(_))
        ));
    }

    #[test]
    fn round_trips_through_its_stored_text_and_serde() {
        let meta = Metadata::from_value(json!({"b": [1, {"c": null}], "a": "x"}))
            .unwrap_or_else(|e| panic!("{e}"));
        let back = Metadata::from_json(&meta.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, meta);
        let via_serde: Metadata =
            serde_json::from_str(&serde_json::to_string(&meta).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(via_serde, meta);
        assert!(serde_json::from_str::<Metadata>("[1]").is_err());
        // Found by the fuzz target `network_metadata`: a number too large for an integer is
        // an f64, which must read back as the same f64 (serde_json's exact float parsing).
        let big = Metadata::from_json(r#"{"n":48800000000000000000000000}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let again = Metadata::from_json(&big.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, big, "{big} did not read back as itself");
        assert!(!format!("{meta:?}").contains('x'), "Debug shows keys only");
    }
}
