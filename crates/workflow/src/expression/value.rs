//! Values of the expression language: GitHub's six types and its coercion rules.
//!
//! The rules follow GitHub's documentation ("Evaluate expressions in workflows and actions"):
//! loose equality coerces mismatched types to numbers (null → 0, true → 1, '' → 0, a string to
//! the number it spells or NaN, arrays and objects → NaN), strings compare ignoring case, NaN is
//! never equal to or ordered with anything, and `false`, `0`, `-0`, `''`, `null` and NaN are falsy.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::cmp::Ordering;
use std::fmt;

/// A value of the expression language.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// `null`.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number (always a double, as in GitHub's evaluator).
    Number(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object whose keys keep their insertion order (toJSON prints them in that order).
    Object(Object),
}

/// An object: keys in insertion order, looked up exactly first and then ignoring case (GitHub's
/// contexts are case-insensitive dictionaries).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object {
    entries: Vec<(String, Value)>,
}

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Object::default()
    }

    /// The value under `key` (exact match first, then case-insensitive).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .or_else(|| self.entries.iter().find(|(k, _)| eq_ignore_case(k, key)))
            .map(|(_, v)| v)
    }

    /// A mutable reference to the value under `key` (exact match first, then case-insensitive).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        let index = self
            .entries
            .iter()
            .position(|(k, _)| k == key)
            .or_else(|| {
                self.entries
                    .iter()
                    .position(|(k, _)| eq_ignore_case(k, key))
            })?;
        Some(&mut self.entries[index].1)
    }

    /// Sets `key` to `value`, replacing an entry with exactly that key in place.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Whether `key` is present (ignoring case).
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// An object of string values.
    pub fn from_strings<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut object = Object::new();
        for (k, v) in pairs {
            object.insert(k, Value::String(v.into()));
        }
        object
    }
}

impl FromIterator<(String, Value)> for Object {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut object = Object::new();
        for (k, v) in iter {
            object.insert(k, v);
        }
        object
    }
}

/// Compares two strings ignoring case, as GitHub's `OrdinalIgnoreCase` does.
pub fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || (!a.is_ascii() && a.to_lowercase() == b.to_lowercase())
}

fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    a.to_uppercase().cmp(&b.to_uppercase())
}

impl Value {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// GitHub's truthiness: `false`, `0`, `-0`, NaN, `''` and `null` are falsy.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::String(s) => !s.is_empty(),
            Value::Array(_) | Value::Object(_) => true,
        }
    }

    /// The value as a boolean setting (`continue-on-error`, `strategy.fail-fast`): a boolean as
    /// it is; a string by what it spells, `true` or `false` in any letter case (the workflow
    /// model keeps a YAML boolean as the text `false`, which plain truthiness would read as
    /// true), or `''`, which is false; `null` false and a number by its truthiness. Other strings,
    /// arrays and objects are refused, as GitHub refuses them.
    pub fn to_flag(&self) -> Result<bool, String> {
        match self {
            Value::Bool(b) => Ok(*b),
            Value::Null | Value::Number(_) => Ok(self.truthy()),
            Value::String(s) if s.trim().is_empty() || eq_ignore_case(s.trim(), "false") => {
                Ok(false)
            }
            Value::String(s) if eq_ignore_case(s.trim(), "true") => Ok(true),
            other => Err(format!(
                "expected a boolean (true or false), not {} '{}'",
                other.kind(),
                other.to_display_string()
            )),
        }
    }

    /// The value coerced to a number.
    pub fn to_number(&self) -> f64 {
        match self {
            Value::Null => 0.0,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Number(n) => *n,
            Value::String(s) => parse_number(s).unwrap_or(f64::NAN),
            Value::Array(_) | Value::Object(_) => f64::NAN,
        }
    }

    /// The value coerced to a string, as `format()` and string functions see it: `null` is
    /// `''`, numbers print without a trailing `.0`, arrays are `Array` and objects `Object`.
    pub fn to_display_string(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => format_number(*n),
            Value::String(s) => s.clone(),
            Value::Array(_) => "Array".to_string(),
            Value::Object(_) => "Object".to_string(),
        }
    }

    /// The text a `${{ }}` inside a longer string becomes: like [`Value::to_display_string`],
    /// except that arrays and objects print as JSON (more useful in a `run:` script than the
    /// word `Object`).
    pub fn to_interpolated(&self) -> String {
        match self {
            Value::Array(_) | Value::Object(_) => self.to_json_pretty(),
            other => other.to_display_string(),
        }
    }

    /// The name of the value's type, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Whether the value is a primitive (not an array or object).
    pub fn is_primitive(&self) -> bool {
        !matches!(self, Value::Array(_) | Value::Object(_))
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Loose equality (`==`).
    pub fn loose_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            (Value::String(a), Value::String(b)) => eq_ignore_case(a, b),
            // Arrays and objects are equal only when they are the same instance, which only the
            // evaluator can tell (it compares where they are); two values are never that.
            (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => false,
            _ => {
                let (a, b) = (self.to_number(), other.to_number());
                a == b
            }
        }
    }

    /// Ordering for `<`, `<=`, `>`, `>=`; `None` when the values cannot be ordered (NaN,
    /// arrays, objects).
    pub fn loose_cmp(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::String(a), Value::String(b)) => Some(cmp_ignore_case(a, b)),
            (Value::Array(_), _) | (_, Value::Array(_)) => None,
            (Value::Object(_), _) | (_, Value::Object(_)) => None,
            _ => self.to_number().partial_cmp(&other.to_number()),
        }
    }

    /// Converts a JSON value (event payloads).
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::Array(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Converts to a JSON value (key order follows serde_json's map).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Pretty JSON with two-space indentation, keys in insertion order (what `toJSON` returns).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses JSON text, keeping the order of object keys.
    pub fn parse_json(text: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(o)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_display_string())
    }
}

/// Formats a number the way GitHub prints it: integers without a fraction, `Infinity`, `NaN`.
pub fn format_number(n: f64) -> String {
    if n.is_nan() {
        "NaN".to_string()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else if n == 0.0 {
        "0".to_string()
    } else if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Parses a string as GitHub coerces it to a number: surrounding whitespace ignored, empty is 0,
/// decimal with optional sign, fraction and exponent, `0x` hexadecimal, `0o` octal, `Infinity`
/// and `NaN`. Anything else is `None` (NaN).
pub fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() {
        return Some(0.0);
    }
    let (sign, body) = match t.as_bytes()[0] {
        b'-' => (-1.0, &t[1..]),
        b'+' => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    if body == "Infinity" {
        return Some(sign * f64::INFINITY);
    }
    if t == "NaN" {
        return Some(f64::NAN);
    }
    let radix = |prefix: &str, radix: u32| {
        body.strip_prefix(prefix)
            .or_else(|| body.strip_prefix(&prefix.to_uppercase()))
            .map(|digits| {
                u64::from_str_radix(digits, radix)
                    .ok()
                    .map(|v| sign * v as f64)
            })
    };
    if let Some(v) = radix("0x", 16) {
        return v;
    }
    if let Some(v) = radix("0o", 8) {
        return v;
    }
    if !is_decimal(body) {
        return None;
    }
    body.parse::<f64>().ok().map(|v| sign * v)
}

/// `digits[.digits][e[+-]digits]` or `.digits[...]`.
fn is_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int = digits(&mut i);
    let mut frac = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        frac = digits(&mut i);
    }
    if int + frac == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Number(n) => {
                if n.is_finite() && n.fract() == 0.0 && n.abs() < 9.0e15 {
                    serializer.serialize_i64(*n as i64)
                } else if n.is_finite() {
                    serializer.serialize_f64(*n)
                } else {
                    serializer.serialize_str(&format_number(*n))
                }
            }
            Value::String(s) => serializer.serialize_str(s),
            Value::Array(a) => {
                let mut seq = serializer.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Object(o) => {
                let mut map = serializer.serialize_map(Some(o.len()))?;
                for (k, v) in o.iter() {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Value>()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Object::new();
        while let Some(key) = map.next_key::<Value>()? {
            let key = match key {
                Value::Array(_) | Value::Object(_) => {
                    return Err(de::Error::custom("a mapping key must be a string"));
                }
                other => other.to_display_string(),
            };
            let value = map.next_value::<Value>()?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truthiness_follows_the_docs() {
        for falsy in [
            Value::Null,
            Value::Bool(false),
            Value::Number(0.0),
            Value::Number(-0.0),
            Value::Number(f64::NAN),
            Value::string(""),
        ] {
            assert!(!falsy.truthy(), "{falsy:?}");
        }
        for truthy in [
            Value::Bool(true),
            Value::Number(1.0),
            Value::string("false"),
            Value::string("0"),
            Value::Array(vec![]),
            Value::Object(Object::new()),
        ] {
            assert!(truthy.truthy(), "{truthy:?}");
        }
    }

    #[test]
    fn flags_read_booleans_spelled_as_text() {
        for (value, want) in [
            (Value::Bool(false), false),
            (Value::Bool(true), true),
            (Value::string("false"), false),
            (Value::string("False"), false),
            (Value::string(" true "), true),
            (Value::string(""), false),
            (Value::Null, false),
            (Value::Number(1.0), true),
            (Value::Number(0.0), false),
        ] {
            assert_eq!(value.to_flag(), Ok(want), "{value:?}");
        }
        let err = Value::string("no").to_flag().unwrap_err();
        assert_eq!(err, "expected a boolean (true or false), not string 'no'");
        assert!(Value::Object(Object::new()).to_flag().is_err());
    }

    #[test]
    fn strings_coerce_to_numbers() {
        assert_eq!(parse_number(""), Some(0.0));
        assert_eq!(parse_number(" 123456.789 "), Some(123456.789));
        assert_eq!(parse_number(" +1 "), Some(1.0));
        assert_eq!(parse_number(" -2.5e1 "), Some(-25.0));
        assert_eq!(parse_number("0xff"), Some(255.0));
        assert_eq!(parse_number("0xFF"), Some(255.0));
        assert_eq!(parse_number("0o10"), Some(8.0));
        assert_eq!(parse_number(".5"), Some(0.5));
        assert_eq!(parse_number("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(parse_number("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_number("abc"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("1.2.3"), None);
        assert_eq!(parse_number("e5"), None);
    }

    #[test]
    fn numbers_format_like_github() {
        assert_eq!(format_number(1.0), "1");
        assert_eq!(format_number(-2.0), "-2");
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(f64::INFINITY), "Infinity");
        assert_eq!(format_number(f64::NAN), "NaN");
    }

    #[test]
    fn loose_equality_coerces_to_numbers() {
        assert!(Value::Null.loose_eq(&Value::Number(0.0)));
        assert!(Value::Bool(true).loose_eq(&Value::Number(1.0)));
        assert!(Value::string("").loose_eq(&Value::Number(0.0)));
        assert!(Value::string(" 0xff ").loose_eq(&Value::Number(255.0)));
        assert!(Value::string("ABC").loose_eq(&Value::string("abc")));
        assert!(Value::string("").loose_eq(&Value::Null));
        assert!(!Value::string("NaN").loose_eq(&Value::Number(f64::NAN)));
        assert!(!Value::Array(vec![]).loose_eq(&Value::Array(vec![])));
        assert!(!Value::string("a").loose_eq(&Value::Number(0.0)));
    }

    #[test]
    fn json_round_trip_keeps_key_order() {
        let v = Value::parse_json(r#"{"z": 1, "a": [true, null, "x"], "m": 1.5}"#).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"z":1,"a":[true,null,"x"],"m":1.5}"#
        );
        assert_eq!(
            v.to_json_pretty(),
            "{\n  \"z\": 1,\n  \"a\": [\n    true,\n    null,\n    \"x\"\n  ],\n  \"m\": 1.5\n}"
        );
    }

    #[test]
    fn objects_look_up_keys_ignoring_case() {
        let mut o = Object::new();
        o.insert("Foo", Value::from("1"));
        assert_eq!(o.get("foo"), Some(&Value::from("1")));
        assert_eq!(o.get("FOO"), Some(&Value::from("1")));
        o.insert("Foo", Value::from("2"));
        assert_eq!(o.len(), 1);
    }
}
