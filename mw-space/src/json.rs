//! The JSON text form of tuples and patterns, as the `mw space` verbs read and print them.
//!
//! | field | JSON |
//! |---|---|
//! | string | `"task"` |
//! | int | a number without fraction or exponent: `7`, `-3` (must fit in i64) |
//! | float | a number with a fraction or exponent: `2.5`, `7.0`, `1e3` |
//! | bool | `true`, `false` |
//! | bytes | `{"bytes": "00ff"}` (hex, two digits per byte) |
//! | any-value formal (patterns only) | `null` |
//! | typed formal (patterns only) | `{"?": "string"}`, `"int"`, `"float"`, `"bool"`, `"bytes"` |
//!
//! A tuple or pattern is a JSON array of these: `["task", 7, {"?": "float"}, null]`.
//! Printing gives the same form on one line, so what `mw space rd` prints can be fed back
//! to `mw space out`.

use std::fmt;

use serde_json::{Map, Number, Value as Json};

use crate::error::{SpaceError, What};
use crate::pattern::{Field, Pattern};
use crate::value::{Tuple, Type, Value};

// Every `Display` of the data model is its JSON form, so the impls live here with it.

impl fmt::Display for Value {
    /// The JSON form: `"task"`, `7`, `{"bytes":"00ff"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&value_to_json(self).to_string())
    }
}

impl fmt::Display for Tuple {
    /// The JSON form, on one line: `["task",7]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl fmt::Display for Pattern {
    /// The JSON form, on one line: `["task",{"?":"int"},null]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl Tuple {
    /// Parses the JSON form: `["task", 7, 2.5, true, {"bytes": "00ff"}]`.
    ///
    /// # Errors
    /// [`SpaceError::InvalidJson`] naming the first problem (and the field's position).
    pub fn from_json(text: &str) -> Result<Tuple, SpaceError> {
        let fields = parse_array(text, What::Tuple)?;
        let values = fields
            .into_iter()
            .enumerate()
            .map(|(i, j)| match parse_field(j, i, What::Tuple)? {
                Field::Value(v) => Ok(v),
                Field::Any => Err(invalid(
                    What::Tuple,
                    format!("field {i} is null: a tuple holds values only (null is the any-value formal of patterns)"),
                )),
                Field::Typed(t) => Err(invalid(
                    What::Tuple,
                    format!("field {i} is the formal {{\"?\": \"{t}\"}}: a tuple holds values only (formals belong in patterns)"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tuple::new(values))
    }

    /// The JSON form on one line.
    pub fn to_json(&self) -> String {
        Json::Array(self.fields().iter().map(value_to_json).collect()).to_string()
    }
}

impl Pattern {
    /// Parses the JSON form: `["task", {"?": "int"}, null]`.
    ///
    /// # Errors
    /// [`SpaceError::InvalidJson`] naming the first problem (and the field's position).
    pub fn from_json(text: &str) -> Result<Pattern, SpaceError> {
        let fields = parse_array(text, What::Pattern)?;
        let fields = fields
            .into_iter()
            .enumerate()
            .map(|(i, j)| parse_field(j, i, What::Pattern))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pattern::new(fields))
    }

    /// The JSON form on one line.
    pub fn to_json(&self) -> String {
        let fields = self
            .fields()
            .iter()
            .map(|f| match f {
                Field::Value(v) => value_to_json(v),
                Field::Any => Json::Null,
                Field::Typed(t) => {
                    let mut m = Map::new();
                    m.insert("?".into(), Json::String(t.name().into()));
                    Json::Object(m)
                }
            })
            .collect();
        Json::Array(fields).to_string()
    }
}

fn invalid(what: What, reason: String) -> SpaceError {
    SpaceError::InvalidJson { what, reason }
}

fn example(what: What) -> &'static str {
    match what {
        What::Tuple => r#"["task", 7]"#,
        What::Pattern => r#"["task", {"?": "int"}]"#,
    }
}

fn parse_array(text: &str, what: What) -> Result<Vec<Json>, SpaceError> {
    let json: Json = serde_json::from_str(text).map_err(|e| {
        let example = example(what);
        invalid(
            what,
            format!("not JSON ({e}); write it as {example}, strings in double quotes"),
        )
    })?;
    match json {
        Json::Array(a) => Ok(a),
        other => Err(invalid(
            what,
            format!(
                "expected a JSON array such as {}, got {other}",
                example(what)
            ),
        )),
    }
}

fn parse_field(j: Json, i: usize, what: What) -> Result<Field, SpaceError> {
    Ok(match j {
        Json::Null => Field::Any,
        Json::Bool(b) => Field::Value(Value::Bool(b)),
        Json::String(s) => Field::Value(Value::Str(s)),
        Json::Number(n) => Field::Value(number(&n, i, what)?),
        Json::Array(_) => {
            return Err(invalid(
                what,
                format!("field {i} is an array; fields are strings, numbers, booleans or {{\"bytes\": \"<hex>\"}}"),
            ))
        }
        Json::Object(m) => object(m, i, what)?,
    })
}

fn number(n: &Number, i: usize, what: What) -> Result<Value, SpaceError> {
    if let Some(v) = n.as_i64() {
        return Ok(Value::Int(v));
    }
    if n.is_u64() {
        return Err(invalid(
            what,
            format!("field {i}: integer {n} does not fit in 64 signed bits"),
        ));
    }
    match n.as_f64() {
        Some(x) if x.is_finite() => Ok(Value::Float(x)),
        _ => Err(invalid(
            what,
            format!("field {i}: {n} is not a finite float"),
        )),
    }
}

fn object(m: Map<String, Json>, i: usize, what: What) -> Result<Field, SpaceError> {
    let mut entries = m.into_iter();
    let (key, val) = match (entries.next(), entries.next()) {
        (Some(kv), None) => kv,
        _ => return Err(bad_object(i, what)),
    };
    match (key.as_str(), val) {
        ("?", Json::String(t)) => match Type::from_name(&t) {
            Some(t) => Ok(Field::Typed(t)),
            None => Err(invalid(
                what,
                format!("field {i}: unknown type {t:?} in {{\"?\": ..}}; types are string, int, float, bool, bytes"),
            )),
        },
        ("bytes", Json::String(hex)) => match from_hex(&hex) {
            Some(b) => Ok(Field::Value(Value::Bytes(b))),
            None => Err(invalid(
                what,
                format!("field {i}: {hex:?} is not hex (two digits 0-9a-f per byte)"),
            )),
        },
        _ => Err(bad_object(i, what)),
    }
}

fn bad_object(i: usize, what: What) -> SpaceError {
    invalid(
        what,
        format!("field {i}: an object must be {{\"bytes\": \"<hex>\"}} or a typed formal {{\"?\": \"int\"}}"),
    )
}

/// The JSON form of one value.
pub(crate) fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Str(s) => Json::String(s.clone()),
        Value::Int(i) => Json::Number((*i).into()),
        // Non-finite floats have no JSON form; a space never holds one.
        Value::Float(x) => Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Value::Bool(b) => Json::Bool(*b),
        Value::Bytes(b) => {
            let mut m = Map::new();
            m.insert("bytes".into(), Json::String(to_hex(b)));
            Json::Object(m)
        }
    }
}

fn to_hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for byte in b {
        s.push(DIGITS[(byte >> 4) as usize] as char);
        s.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern;
    use crate::value::tuple;

    #[test]
    fn every_type_round_trips() {
        let t = tuple!("a\"b", -3, 7.0, 2.5e-300, false, vec![0u8, 255, 16]);
        let text = t.to_json();
        assert_eq!(text, r#"["a\"b",-3,7.0,2.5e-300,false,{"bytes":"00ff10"}]"#);
        assert_eq!(Tuple::from_json(&text).unwrap(), t);
    }

    #[test]
    fn numbers_with_fraction_or_exponent_are_floats() {
        let t = Tuple::from_json("[1, 1.0, 1e3]").unwrap();
        assert_eq!(t, tuple!(1, 1.0, 1000.0));
    }

    #[test]
    fn patterns_round_trip() {
        let p = pattern!("x", Type::Bytes, Field::Any, 3);
        let text = p.to_json();
        assert_eq!(text, r#"["x",{"?":"bytes"},null,3]"#);
        assert_eq!(Pattern::from_json(&text).unwrap(), p);
    }

    fn reason(r: Result<impl std::fmt::Debug, SpaceError>) -> String {
        match r {
            Err(SpaceError::InvalidJson { reason, .. }) => reason,
            other => panic!("expected InvalidJson, got {other:?}"),
        }
    }

    #[test]
    fn bad_input_is_one_clear_reason() {
        assert!(reason(Tuple::from_json("[1,")).contains("not JSON"));
        assert!(reason(Tuple::from_json(r#"{"a":1}"#)).contains("expected a JSON array"));
        assert!(reason(Tuple::from_json("[1, null]")).contains("field 1 is null"));
        assert!(
            reason(Tuple::from_json(r#"[{"?": "int"}]"#)).contains("formals belong in patterns")
        );
        assert!(reason(Pattern::from_json(r#"[{"?": "integer"}]"#)).contains("unknown type"));
        assert!(reason(Pattern::from_json(r#"[{"bytes": "abc"}]"#)).contains("not hex"));
        assert!(reason(Pattern::from_json(r#"[{"x": 1}]"#)).contains("an object must be"));
        assert!(reason(Pattern::from_json("[[1]]")).contains("is an array"));
        assert!(reason(Tuple::from_json("[18446744073709551615]")).contains("64 signed bits"));
        assert!(reason(Tuple::from_json("[1e999]")).contains("not JSON"));
    }
}
