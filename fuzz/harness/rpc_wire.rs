//! mw-rpc's wire: the call header, error bodies, and postcard decoding of the arguments
//! and replies of the services mw ships (`mw.queue`, `mw.pubsub`).
//!
//! Input: a Request/Oneway frame body (or any bytes). Checked: no panic; a parsed call
//! header re-encodes to the bytes it was parsed from; `decode_error` maps every code; every
//! argument or reply type that decodes re-encodes to bytes that decode to the same value
//! (postcard is canonical after one round).

use bytes::{Bytes, BytesMut};
use mw_pubsub::remote::wire::{DurableItem, EventBatch, SubscribeItem, WireReport};
use mw_pubsub::remote::RemoteStats;
use mw_pubsub::PubSubError;
use mw_pubsub::SlowConsumerPolicy;
use mw_queue::remote::{BrokerStats, QueueError, QueueInfo, WireDelivery};
use mw_queue::DeliveryTag;
use mw_queue::Message;
use mw_rpc::wire::{decode_error, parse_call, put_call_header};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes `bytes` as `T` the way a server decodes arguments; if that works, checks
/// that the value survives an encode/decode round trip.
fn args<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    if let Ok(v) = mw_rpc::__private::decode::<T>(bytes) {
        let e1 = postcard::to_stdvec(&v).expect("a decoded value re-encodes");
        let v2: T = mw_rpc::__private::decode(&e1).expect("a re-encoded value decodes");
        let e2 = postcard::to_stdvec(&v2).expect("re-encodes");
        assert_eq!(e1, e2, "postcard round trip is not stable");
    }
}

/// Decodes `bytes` as a fallible reply `Result<T, E>` (what the generated client expects).
fn reply<T: Serialize + DeserializeOwned, E: Serialize + DeserializeOwned>(bytes: &[u8]) {
    args::<Result<T, E>>(bytes);
}

fn all_types(b: &[u8]) {
    // mw.queue arguments.
    args::<(String, Message)>(b);
    args::<(String, Vec<Message>)>(b);
    args::<(String, u32, Option<u64>, Option<u64>)>(b);
    args::<(String, DeliveryTag)>(b);
    args::<(String, DeliveryTag, Option<u64>)>(b);
    args::<(String, DeliveryTag, u64)>(b);
    args::<(String, Vec<DeliveryTag>)>(b);
    args::<(String,)>(b);
    args::<()>(b);
    // mw.queue replies.
    reply::<u128, QueueError>(b);
    reply::<Vec<Result<u128, QueueError>>, QueueError>(b);
    reply::<Vec<WireDelivery>, QueueError>(b);
    reply::<(), QueueError>(b);
    reply::<u64, QueueError>(b);
    reply::<Vec<Result<(), QueueError>>, QueueError>(b);
    args::<Vec<QueueInfo>>(b);
    args::<BrokerStats>(b);
    // mw.pubsub arguments.
    args::<(String, bytes::Bytes)>(b);
    args::<(EventBatch,)>(b);
    args::<(String, u32, SlowConsumerPolicy)>(b);
    args::<(String, String, u32)>(b);
    // mw.pubsub replies.
    reply::<WireReport, PubSubError>(b);
    reply::<bool, PubSubError>(b);
    reply::<u64, PubSubError>(b);
    reply::<SubscribeItem, PubSubError>(b);
    reply::<DurableItem, PubSubError>(b);
    args::<RemoteStats>(b);
}

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    if let Ok((h, rest)) = parse_call(body.clone()) {
        let mut again = BytesMut::new();
        put_call_header(
            &mut again,
            h.deadline_ms,
            h.service.as_str(),
            h.version,
            h.method,
        );
        again.extend_from_slice(&rest);
        assert_eq!(
            &again[..],
            data,
            "call header does not re-encode to its bytes"
        );
        all_types(&rest);
    }
    let _ = decode_error(body);
    all_types(data);
}
