//! Topic and pattern validation: each syntax error is a distinct, typed error.

use mw_pubsub::topic::MAX_NAME_LEN;
use mw_pubsub::{Bus, Error, Pattern, SubscribeOptions, Topic};

#[test]
fn valid_topics_and_patterns_are_accepted() {
    for t in [
        "a",
        "sensors.kitchen.temp",
        "$SYS.broker.load",
        "a-b_c:d.e~f",
        "x.y.z.w.v",
    ] {
        Topic::new(t).unwrap();
        Pattern::new(t).unwrap();
    }
    for p in ["*", ">", "a.*", "*.b", "a.>", "*.*.>", "a.*.c.>"] {
        Pattern::new(p).unwrap();
    }
}

#[test]
fn empty_name_is_rejected() {
    assert!(matches!(Topic::new(""), Err(Error::EmptyName)));
    assert!(matches!(Pattern::new(""), Err(Error::EmptyName)));
}

#[test]
fn empty_token_reports_its_level() {
    for (name, level) in [(".a", 0), ("a..b", 1), ("a.", 1), ("a.b.", 2)] {
        match Topic::new(name) {
            Err(Error::EmptyToken { level: l, .. }) => assert_eq!(l, level, "{name}"),
            other => panic!("{name}: unexpected {other:?}"),
        }
        assert!(matches!(Pattern::new(name), Err(Error::EmptyToken { .. })));
    }
}

#[test]
fn full_wildcard_must_be_last() {
    match Pattern::new("a.>.b") {
        Err(Error::FullWildcardNotLast { level: 1, name }) => assert_eq!(name, "a.>.b"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        Pattern::new(">.>"),
        Err(Error::FullWildcardNotLast { level: 0, .. })
    ));
}

#[test]
fn wildcard_in_publish_topic_is_rejected() {
    assert!(matches!(
        Topic::new("a.*.c"),
        Err(Error::WildcardInTopic {
            wildcard: '*',
            level: 1,
            ..
        })
    ));
    assert!(matches!(
        Topic::new("a.>"),
        Err(Error::WildcardInTopic {
            wildcard: '>',
            level: 1,
            ..
        })
    ));
    let bus = Bus::default();
    assert!(matches!(
        bus.publish("sensors.*", bytes::Bytes::new()),
        Err(Error::WildcardInTopic { .. })
    ));
}

#[test]
fn wildcard_inside_a_token_is_rejected() {
    for name in ["temp*", "a.b*c", "a.>b", "a.*>"] {
        assert!(
            matches!(Pattern::new(name), Err(Error::PartialWildcard { .. })),
            "{name}"
        );
        assert!(
            matches!(Topic::new(name), Err(Error::PartialWildcard { .. })),
            "{name}"
        );
    }
}

#[test]
fn whitespace_control_and_non_ascii_are_rejected() {
    for (name, ch, offset) in [
        ("a b", ' ', 1),
        ("a.b\t", '\t', 3),
        ("a.\nb", '\n', 2),
        ("caf\u{e9}", '\u{e9}', 3),
        ("a.\u{0}", '\u{0}', 2),
    ] {
        match Topic::new(name) {
            Err(Error::InvalidChar {
                ch: c, offset: o, ..
            }) => assert_eq!((c, o), (ch, offset), "{name:?}"),
            other => panic!("{name:?}: unexpected {other:?}"),
        }
    }
}

#[test]
fn overlong_name_is_rejected() {
    let ok = "a".repeat(MAX_NAME_LEN);
    Topic::new(&ok).unwrap();
    let long = "a".repeat(MAX_NAME_LEN + 1);
    assert!(matches!(
        Topic::new(&long),
        Err(Error::NameTooLong { len, max }) if len == MAX_NAME_LEN + 1 && max == MAX_NAME_LEN
    ));
    assert!(matches!(
        Pattern::new(&long),
        Err(Error::NameTooLong { .. })
    ));
}

#[test]
fn invalid_pattern_is_rejected_by_subscribe() {
    let bus = Bus::default();
    assert!(matches!(
        bus.subscribe("a.>.b", SubscribeOptions::default()),
        Err(Error::FullWildcardNotLast { .. })
    ));
}

#[test]
fn error_messages_are_lowercase_and_name_the_culprit() {
    let msg = Pattern::new("a.>.b").unwrap_err().to_string();
    assert!(msg.contains("a.>.b") && msg.contains("level 1"), "{msg}");
    assert!(msg.chars().next().is_some_and(|c| !c.is_uppercase()));
}

#[test]
fn topics_round_trip_through_serde_with_validation() {
    let t = Topic::new("a.b").unwrap();
    let bytes = postcard::to_stdvec(&t).unwrap();
    assert_eq!(postcard::from_bytes::<Topic>(&bytes).unwrap(), t);
    let bad = postcard::to_stdvec("a.*").unwrap();
    assert!(postcard::from_bytes::<Topic>(&bad).is_err());
    assert!(postcard::from_bytes::<Pattern>(&bad).is_ok());
}
