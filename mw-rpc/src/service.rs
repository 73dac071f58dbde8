//! What a service is to the runtime: identity, methods and a dispatcher.
//!
//! `#[service]` implements [`Service`] for the generated `XxxServer` type; hand-written
//! implementations are possible but rarely needed.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::Stream;

use crate::error::ServerError;

/// A service's identity on the wire, like Sun RPC's program and version numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceId {
    /// The service name (at most 255 bytes of UTF-8).
    pub name: &'static str,
    /// The interface version; a client and server must agree on it exactly.
    pub version: u32,
}

impl ServiceId {
    /// A service identity.
    ///
    /// # Panics
    /// If `name` is longer than 255 bytes (at compile time when used in a `const`).
    pub const fn new(name: &'static str, version: u32) -> Self {
        assert!(name.len() <= 255, "service names are at most 255 bytes");
        ServiceId { name, version }
    }
}

impl std::fmt::Display for ServiceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}

/// When a one-way call is acknowledged (the coupling table's synchronisation points).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ack {
    /// Never: transient asynchronous, the call returns once the request is queued locally.
    None,
    /// Once the server's middleware accepted the request (receipt-based).
    Receipt,
    /// Once the request was handed to the implementation (delivery-based).
    Delivery,
}

/// How a method communicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// Request and response (response-based synchronous).
    Unary,
    /// Request only, acknowledged as the [`Ack`] says.
    Oneway(Ack),
    /// Request and a flow-controlled stream of items.
    Stream,
}

/// One method of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MethodInfo {
    /// The method number on the wire.
    pub id: u32,
    /// The method name (for messages and introspection).
    pub name: &'static str,
    /// How it communicates.
    pub kind: MethodKind,
}

/// The server-side return type of a streaming method.
pub type Streaming<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;

/// A call ready to run: created when the request is accepted, run when it is its turn.
pub enum Handler {
    /// A call with one result (also used by one-way methods, whose result is empty).
    Unary(BoxFuture<'static, Result<Bytes, ServerError>>),
    /// A call whose result is a stream of encoded items.
    Stream(BoxStream<'static, Result<Bytes, ServerError>>),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handler::Unary(_) => "Handler::Unary",
            Handler::Stream(_) => "Handler::Stream",
        })
    }
}

/// A dispatcher for one service version.
pub trait Service: Send + Sync + 'static {
    /// Name and version.
    fn id(&self) -> ServiceId;
    /// The methods, with their numbers and kinds.
    fn methods(&self) -> &'static [MethodInfo];
    /// Decodes `args` for `method` and returns the call, without running it yet.
    ///
    /// # Errors
    /// [`ServerError::UnknownMethod`] or [`ServerError::BadArguments`].
    fn call(&self, method: u32, args: Bytes) -> Result<Handler, ServerError>;
}

pub(crate) fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Bytes, ServerError> {
    postcard::to_allocvec(value)
        .map(Bytes::from)
        .map_err(|e| ServerError::Encode(e.to_string()))
}

/// Support for generated code. Not a stable API.
#[doc(hidden)]
pub mod private {
    use super::*;
    use futures::{FutureExt, StreamExt};

    pub use bytes::Bytes;
    pub use serde;

    /// Decodes a postcard value that must use every byte of `bytes`.
    pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ServerError> {
        match postcard::take_from_bytes::<T>(bytes) {
            Ok((v, [])) => Ok(v),
            Ok((_, rest)) => Err(ServerError::BadArguments(format!(
                "{} unexpected trailing bytes",
                rest.len()
            ))),
            Err(e) => Err(ServerError::BadArguments(e.to_string())),
        }
    }

    /// Wraps a unary (or one-way) method's future.
    pub fn unary<F, T>(fut: F) -> Handler
    where
        F: Future<Output = T> + Send + 'static,
        T: serde::Serialize,
    {
        Handler::Unary(fut.map(|v| encode(&v)).boxed())
    }

    /// Wraps a streaming method's future.
    pub fn stream<F, T>(fut: F) -> Handler
    where
        F: Future<Output = Streaming<T>> + Send + 'static,
        T: serde::Serialize + Send + 'static,
    {
        Handler::Stream(
            futures::stream::once(fut)
                .flatten()
                .map(|item| encode(&item))
                .boxed(),
        )
    }
}
