//! mw-pubsub's wire batch decoder (`remote::wire::decode_batch`) and the postcard items
//! that carry batches.
//!
//! Input: byte 0 picks what the rest is: a raw batch, or a postcard-encoded
//! `SubscribeItem`, `DurableItem` or `(String, EventBatch)` whose batches are then decoded.
//! Checked: no panic; decoding stops with `Malformed` or `InvalidName` only; the events
//! decoded re-encode with `BatchEncoder` and decode to the same events.

use bytes::Bytes;
use mw_pubsub::remote::wire::{decode_batch, BatchEncoder, DurableItem, EventBatch, SubscribeItem};
use mw_pubsub::{Event, PubSubError, Topic};

fn check_batch(blob: &EventBatch) {
    let mut events: Vec<Event> = Vec::new();
    let r = decode_batch(blob, |e| events.push(e));
    if let Err(e) = &r {
        assert!(
            matches!(e, PubSubError::Malformed(_) | PubSubError::InvalidName(_)),
            "unexpected batch error {e:?}"
        );
    }
    let mut enc = BatchEncoder::new();
    for e in &events {
        assert!(
            Topic::new(e.topic.as_str()).is_ok(),
            "decoded an invalid topic"
        );
        enc.push(&e.topic, &e.payload, e.dropped_before);
    }
    assert_eq!(enc.len(), events.len());
    let again = enc.finish();
    let mut back: Vec<Event> = Vec::new();
    decode_batch(&again, |e| back.push(e)).expect("a re-encoded batch decodes");
    assert_eq!(back.len(), events.len());
    for (a, b) in events.iter().zip(&back) {
        assert_eq!(
            (a.topic.as_str(), &a.payload, a.dropped_before),
            (b.topic.as_str(), &b.payload, b.dropped_before)
        );
    }
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => check_batch(&EventBatch(Bytes::copy_from_slice(rest))),
        1 => {
            if let Ok(SubscribeItem::Events(blob)) = postcard::from_bytes::<SubscribeItem>(rest) {
                check_batch(&blob);
            }
        }
        2 => {
            if let Ok(DurableItem::Deliveries(ds)) = postcard::from_bytes::<DurableItem>(rest) {
                for d in ds {
                    check_batch(&d.event);
                }
            }
        }
        _ => {
            if let Ok((topic, payload)) = postcard::from_bytes::<(String, EventBatch)>(rest) {
                let _ = Topic::new(&topic);
                check_batch(&payload);
            }
        }
    }
}
