//! The matching rules, checked against a naive matcher: random writes, reads and takes on
//! an embedded space must give exactly what a list scanned oldest-first gives.

use mw_space::{Field, Pattern, Space, Tuple, Type, Value};
use proptest::prelude::*;

/// The rule written out plainly, independent of `Pattern::matches` and the index.
fn naive_matches(pattern: &[Field], tuple: &[Value]) -> bool {
    if pattern.len() != tuple.len() {
        return false;
    }
    for (p, v) in pattern.iter().zip(tuple) {
        let ok = match (p, v) {
            (Field::Any, _) => true,
            (Field::Typed(Type::String), Value::Str(_)) => true,
            (Field::Typed(Type::Int), Value::Int(_)) => true,
            (Field::Typed(Type::Float), Value::Float(_)) => true,
            (Field::Typed(Type::Bool), Value::Bool(_)) => true,
            (Field::Typed(Type::Bytes), Value::Bytes(_)) => true,
            (Field::Typed(_), _) => false,
            (Field::Value(Value::Str(a)), Value::Str(b)) => a == b,
            (Field::Value(Value::Int(a)), Value::Int(b)) => a == b,
            (Field::Value(Value::Float(a)), Value::Float(b)) => a == b,
            (Field::Value(Value::Bool(a)), Value::Bool(b)) => a == b,
            (Field::Value(Value::Bytes(a)), Value::Bytes(b)) => a == b,
            (Field::Value(_), _) => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Small domains so that equal values, equal types and collisions are common.
fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec!["a", "b", ""]).prop_map(Value::from),
        (-2i64..3).prop_map(Value::Int),
        prop::sample::select(vec![0.0, -0.0, 1.0, 2.5]).prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![vec![], vec![0u8], vec![1u8, 2]]).prop_map(Value::Bytes),
    ]
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        3 => value().prop_map(Field::Value),
        1 => Just(Field::Any),
        1 => prop::sample::select(Type::ALL.to_vec()).prop_map(Field::Typed),
    ]
}

fn tuple() -> impl Strategy<Value = Tuple> {
    prop::collection::vec(value(), 0..4).prop_map(Tuple::new)
}

fn pattern() -> impl Strategy<Value = Pattern> {
    prop::collection::vec(field(), 0..4).prop_map(Pattern::new)
}

#[derive(Debug, Clone)]
enum Op {
    Out(Tuple),
    Rdp(Pattern),
    Inp(Pattern),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => tuple().prop_map(Op::Out),
        1 => pattern().prop_map(Op::Rdp),
        1 => pattern().prop_map(Op::Inp),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_agrees_with_the_naive_rule(p in pattern(), t in tuple()) {
        prop_assert_eq!(p.matches(&t), naive_matches(p.fields(), t.fields()));
    }

    #[test]
    fn the_space_returns_the_oldest_match_like_a_scanned_list(ops in prop::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let space = Space::default();
            // The model: every tuple still in the space, oldest first.
            let mut model: Vec<Tuple> = Vec::new();
            for op in ops {
                match op {
                    Op::Out(t) => {
                        space.out(t.clone()).await.unwrap();
                        model.push(t);
                    }
                    Op::Rdp(p) => {
                        let want = model.iter().find(|t| naive_matches(p.fields(), t.fields())).cloned();
                        prop_assert_eq!(space.rdp(&p).await.unwrap(), want, "rdp {}", p);
                    }
                    Op::Inp(p) => {
                        let at = model.iter().position(|t| naive_matches(p.fields(), t.fields()));
                        let want = at.map(|i| model.remove(i));
                        prop_assert_eq!(space.inp(&p).await.unwrap(), want, "inp {}", p);
                    }
                }
            }
            prop_assert_eq!(space.stats().visible as usize, model.len());
            Ok(())
        })?;
    }

    #[test]
    fn json_text_round_trips(t in tuple(), p in pattern()) {
        prop_assert_eq!(Tuple::from_json(&t.to_json()).unwrap(), t);
        prop_assert_eq!(Pattern::from_json(&p.to_json()).unwrap(), p);
    }
}
