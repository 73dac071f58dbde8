//! Patterns (Linda's templates): [`Field`], [`Pattern`] and the matching rule.
//!
//! A pattern matches a tuple when both have the same number of fields and each pattern
//! field matches the tuple field at its position:
//!
//! | pattern field | JSON | matches |
//! |---|---|---|
//! | [`Field::Value`] (an actual) | `"task"`, `7`, `2.5`, `true`, `{"bytes": "00ff"}` | an equal value of the same type |
//! | [`Field::Any`] (a formal) | `null` | any value |
//! | [`Field::Typed`] (a typed formal) | `{"?": "int"}` | any value of that type |

use serde::{Deserialize, Serialize};

use crate::value::{Tuple, Type, Value};

/// One field of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Field {
    /// An actual: the tuple's field must be equal (same type, same value).
    Value(Value),
    /// A formal matching any value.
    Any,
    /// A formal matching any value of one type.
    Typed(Type),
}

impl Field {
    /// Whether `v` fits this field.
    pub fn matches(&self, v: &Value) -> bool {
        match self {
            Field::Value(want) => want == v,
            Field::Any => true,
            Field::Typed(t) => v.type_of() == *t,
        }
    }
}

impl<T: Into<Value>> From<T> for Field {
    fn from(v: T) -> Field {
        Field::Value(v.into())
    }
}

impl From<Type> for Field {
    /// A typed formal.
    fn from(t: Type) -> Field {
        Field::Typed(t)
    }
}

/// A template that selects tuples: as many fields as the tuples it matches.
///
/// ```
/// use mw_space::{pattern, tuple, Field, Pattern, Type};
/// let p = pattern!("task", Type::Int, Field::Any);
/// assert!(p.matches(&tuple!("task", 7, "anything")));
/// assert!(!p.matches(&tuple!("task", 7.0, "anything")));  // 7.0 is a float
/// assert!(!p.matches(&tuple!("task", 7)));               // arity differs
/// assert_eq!(p, Pattern::from_json(r#"["task", {"?": "int"}, null]"#).unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Pattern(Vec<Field>);

impl Pattern {
    /// A pattern of `fields`.
    pub fn new(fields: Vec<Field>) -> Pattern {
        Pattern(fields)
    }

    /// The pattern matching exactly `tuple` (every field an actual).
    pub fn exact(tuple: &Tuple) -> Pattern {
        Pattern(tuple.fields().iter().cloned().map(Field::Value).collect())
    }

    /// The fields.
    pub fn fields(&self) -> &[Field] {
        &self.0
    }

    /// The number of fields (the arity of the tuples it matches).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the pattern has no fields (it matches only the empty tuple).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes the actuals count for against the tuple size limit ([`Value::size`]).
    pub fn size(&self) -> usize {
        self.0
            .iter()
            .map(|f| match f {
                Field::Value(v) => v.size(),
                _ => 0,
            })
            .sum()
    }

    /// Whether `tuple` matches: same arity, and every field fits.
    pub fn matches(&self, tuple: &Tuple) -> bool {
        self.0.len() == tuple.len() && self.0.iter().zip(tuple.fields()).all(|(p, v)| p.matches(v))
    }
}

impl From<Vec<Field>> for Pattern {
    fn from(fields: Vec<Field>) -> Pattern {
        Pattern(fields)
    }
}

/// Builds a [`Pattern`] from expressions convertible into [`Field`]: values are actuals,
/// a [`Type`] is a typed formal, [`Field::Any`] a formal:
/// `pattern!("task", Type::Int, Field::Any)`.
#[macro_export]
macro_rules! pattern {
    ($($f:expr),* $(,)?) => {
        $crate::Pattern::new(::std::vec![$($crate::Field::from($f)),*])
    };
}
