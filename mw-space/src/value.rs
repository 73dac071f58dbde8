//! Tuples and the typed values they hold: [`Value`], [`Type`], [`Tuple`], [`TupleId`].
//!
//! A tuple is an ordered list of typed values. Equality is exact and never converts:
//! `Int(1)` and `Float(1.0)` differ, as do `Str("1")` and `Int(1)`. Floats must be finite
//! (checked when a tuple enters a space), so float equality is plain IEEE `==` (`0.0` equals
//! `-0.0`) and every value can be hashed.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// The type of a field: what a typed formal (`{"?": "int"}`) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Type {
    /// UTF-8 text.
    String,
    /// A signed 64-bit integer.
    Int,
    /// A finite 64-bit float.
    Float,
    /// `true` or `false`.
    Bool,
    /// Raw bytes.
    Bytes,
}

impl Type {
    /// Every type, in declaration order.
    pub const ALL: [Type; 5] = [
        Type::String,
        Type::Int,
        Type::Float,
        Type::Bool,
        Type::Bytes,
    ];

    /// The name used in JSON patterns and notification topics: `string`, `int`, `float`,
    /// `bool`, `bytes`.
    pub fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Int => "int",
            Type::Float => "float",
            Type::Bool => "bool",
            Type::Bytes => "bytes",
        }
    }

    /// The type called `name` (see [`Type::name`]).
    pub fn from_name(name: &str) -> Option<Type> {
        Type::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One field of a tuple.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Value {
    /// UTF-8 text.
    Str(String),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float; a space accepts only finite ones.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// The value's type.
    pub fn type_of(&self) -> Type {
        match self {
            Value::Str(_) => Type::String,
            Value::Int(_) => Type::Int,
            Value::Float(_) => Type::Float,
            Value::Bool(_) => Type::Bool,
            Value::Bytes(_) => Type::Bytes,
        }
    }

    /// Bytes this value counts for against [`Config::max_tuple_bytes`](crate::Config::max_tuple_bytes):
    /// 8 for ints and floats, 1 for bools, the length of strings and byte strings.
    pub fn size(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            Value::Int(_) | Value::Float(_) => 8,
            Value::Bool(_) => 1,
            Value::Bytes(b) => b.len(),
        }
    }

    /// The text if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer if this is a [`Value::Int`].
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The float if this is a [`Value::Float`].
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// The boolean if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The bytes if this is a [`Value::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            _ => false,
        }
    }
}

// Sound because a space holds finite floats only: `==` is then reflexive.
impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.type_of().hash(state);
        match self {
            Value::Str(s) => s.hash(state),
            Value::Int(i) => i.hash(state),
            // 0.0 == -0.0, so both must hash alike.
            Value::Float(x) => (if *x == 0.0 { 0.0f64 } else { *x }).to_bits().hash(state),
            Value::Bool(b) => b.hash(state),
            Value::Bytes(b) => b.hash(state),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Int(i.into())
    }
}

impl From<u32> for Value {
    fn from(i: u32) -> Value {
        Value::Int(i.into())
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Float(x)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Bytes(b)
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Value {
        Value::Bytes(b.to_vec())
    }
}

/// An ordered list of typed values: what `out` writes and `rd` / `in` return.
///
/// ```
/// use mw_space::{tuple, Tuple, Value};
/// let t = tuple!("task", 7, 2.5, true);
/// assert_eq!(t.len(), 4);
/// assert_eq!(t[1], Value::Int(7));
/// assert_eq!(t.to_string(), r#"["task",7,2.5,true]"#);
/// assert_eq!(Tuple::from_json(r#"["task", 7, 2.5, true]"#).unwrap(), t);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Tuple(Vec<Value>);

impl Tuple {
    /// A tuple of `fields`.
    pub fn new(fields: Vec<Value>) -> Tuple {
        Tuple(fields)
    }

    /// The fields.
    pub fn fields(&self) -> &[Value] {
        &self.0
    }

    /// The fields, owned.
    pub fn into_fields(self) -> Vec<Value> {
        self.0
    }

    /// The number of fields (the arity).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the tuple has no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sum of the fields' [`Value::size`]s.
    pub fn size(&self) -> usize {
        self.0.iter().map(Value::size).sum()
    }

    /// Field `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.0.get(i)
    }
}

impl std::ops::Index<usize> for Tuple {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        &self.0[i]
    }
}

impl From<Vec<Value>> for Tuple {
    fn from(fields: Vec<Value>) -> Tuple {
        Tuple(fields)
    }
}

/// A tuple's identity in a space: assigned by `out`, increasing in write order. Tuples
/// matching the same pattern are returned oldest (smallest id) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TupleId(pub u64);

impl fmt::Display for TupleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Builds a [`Tuple`] from expressions convertible into [`Value`]:
/// `tuple!("task", 7)` is `["task", 7]`.
#[macro_export]
macro_rules! tuple {
    ($($v:expr),* $(,)?) => {
        $crate::Tuple::new(::std::vec![$($crate::Value::from($v)),*])
    };
}

/// [`tuple!`] under this module's path, so the crate's tests import it from where it is
/// defined (`#[macro_export]` alone puts it only at the crate root).
#[cfg(test)]
pub(crate) use tuple;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;

    fn hash(v: &Value) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }

    #[test]
    fn values_of_different_types_never_compare_equal() {
        assert_ne!(Value::Int(1), Value::Float(1.0));
        assert_ne!(Value::Str("1".into()), Value::Int(1));
        assert_ne!(Value::Bytes(b"a".to_vec()), Value::Str("a".into()));
    }

    #[test]
    fn zero_and_negative_zero_are_equal_and_hash_alike() {
        assert_eq!(Value::Float(0.0), Value::Float(-0.0));
        assert_eq!(hash(&Value::Float(0.0)), hash(&Value::Float(-0.0)));
    }

    #[test]
    fn sizes_count_payload_bytes() {
        assert_eq!(
            tuple!("abc", 1, 1.5, true, vec![0u8; 10]).size(),
            3 + 8 + 8 + 1 + 10
        );
    }
}
