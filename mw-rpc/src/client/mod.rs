//! The client side: a multiplexed [`Channel`] to one server.
//!
//! A channel is one connection shared by every clone and every task. Each call gets a
//! correlation id and a slot in the pending table; one reader task routes replies to
//! their slots. Every call has a deadline (the channel's default, overridable per call
//! with [`Channel::with_timeout`]) that also travels to the server. Dropping a call's
//! future, or its [`ReplyHandle`], sends a `Cancel` so the server stops the work.
//!
//! # Layout
//!
//! | module | owns |
//! |---|---|
//! | `config` | [`ClientConfig`] |
//! | `pending` | the pending-call table: ids, and where each answer goes |
//! | `codec` | call bodies: arguments out, replies and stream items in |
//! | `conn` | one open connection (write buffer, pending calls, liveness) and opening it |
//! | `login` | the `mw.auth` exchange on a fresh connection |
//! | `reader` | the reader task: routes frames to the waiting exchanges |
//! | `keepalive` | liveness pings |
//! | `channel` | [`Channel`] and its calls |
//! | `reply` | [`ReplyHandle`], and the guard that cancels an abandoned call |
//! | `stream` | [`ClientStream`] |

mod channel;
mod codec;
mod config;
mod conn;
mod keepalive;
mod login;
mod pending;
mod reader;
mod reply;
mod stream;

pub use channel::Channel;
pub use config::ClientConfig;
pub use reply::ReplyHandle;
pub use stream::ClientStream;

use mw_core::{CoreError, FrameError};

use crate::error::RpcError;

impl From<FrameError> for RpcError {
    fn from(e: FrameError) -> Self {
        RpcError::Transport(CoreError::Frame(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use mw_core::{server_connection, FrameKind, Listener, TransportConfig};
    use std::time::Duration;

    use crate::error::RpcError;
    use crate::service::ServiceId;

    const SVC: ServiceId = ServiceId {
        name: "scripted",
        version: 1,
    };

    /// A hand-played server on `inproc:0`: for the first call it receives, it writes the
    /// frames `script` returns (given the call's id), then waits for the client to leave.
    async fn scripted_server(
        script: impl FnOnce(u64) -> Vec<(FrameKind, Vec<u8>)> + Send + 'static,
    ) -> String {
        let mut l = Listener::bind(&"inproc:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().to_string();
        tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (mut frames, out, _w) = server_connection(s, &TransportConfig::default())
                .await
                .unwrap();
            let call = frames.next().await.unwrap().unwrap();
            for (kind, body) in script(call.id) {
                out.push(kind, 0, call.id, &body).unwrap();
            }
            while frames.next().await.is_some() {}
        });
        addr
    }

    async fn client(addr: &str, window: u32) -> Channel {
        let config = ClientConfig {
            stream_window: window,
            ..ClientConfig::default()
        };
        Channel::connect_with(addr, config).await.unwrap()
    }

    #[tokio::test]
    async fn stream_items_beyond_credit_are_a_protocol_error_not_a_disconnect() {
        // Window 4, and the server sends 7 items at once without waiting for credit,
        // before the reader looks: the reader gets the 4 it granted, then the error.
        let addr = scripted_server(|_| {
            let mut frames: Vec<_> = (0..7u64)
                .map(|i| (FrameKind::StreamItem, postcard::to_stdvec(&i).unwrap()))
                .collect();
            frames.push((FrameKind::StreamEnd, vec![]));
            frames
        })
        .await;
        let channel = client(&addr, 4).await;
        let mut stream = channel.call_stream::<_, u64>(SVC, 1, &()).await.unwrap();
        // Let every frame reach the client's reader before the first poll.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for i in 0..4u64 {
            assert_eq!(stream.next().await.unwrap().unwrap(), i);
        }
        match stream.next().await {
            Some(Err(RpcError::Protocol(m))) => assert!(m.contains("beyond its credit"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert!(stream.next().await.is_none());
        assert!(!channel.is_closed(), "only the stream failed");
    }

    #[tokio::test]
    async fn stream_end_in_answer_to_a_unary_call_is_a_protocol_error() {
        let addr = scripted_server(|_| vec![(FrameKind::StreamEnd, vec![])]).await;
        let channel = client(&addr, 4).await;
        match channel.call::<_, u64>(SVC, 1, &()).await {
            Err(RpcError::Protocol(m)) => assert!(m.contains("StreamEnd"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert!(!channel.is_closed());
    }

    #[tokio::test]
    async fn a_frame_only_a_client_sends_closes_the_connection_with_a_protocol_error() {
        let addr =
            scripted_server(|_| vec![(FrameKind::Credit, 1u32.to_be_bytes().to_vec())]).await;
        let channel = client(&addr, 4).await;
        match channel.call::<_, u64>(SVC, 1, &()).await {
            Err(RpcError::Protocol(m)) => assert!(m.contains("may not send Credit"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert!(channel.is_closed(), "the connection is closed");
        match channel.call::<_, u64>(SVC, 1, &()).await {
            Err(RpcError::Protocol(m)) => assert!(m.contains("may not send Credit"), "{m}"),
            other => panic!("later calls get the reason, got {other:?}"),
        }
    }
}
