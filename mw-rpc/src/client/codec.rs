//! Call bodies: arguments encoded into a frame, replies and stream items decoded from one.

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::RpcError;

/// Appends `args` to a call frame's body as postcard.
pub(super) fn encode_args<A: Serialize + ?Sized>(
    dst: &mut BytesMut,
    args: &A,
) -> Result<(), RpcError> {
    struct Sink<'a>(&'a mut BytesMut);
    impl Extend<u8> for Sink<'_> {
        fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
            for b in iter {
                self.0.put_u8(b);
            }
        }
    }
    postcard::to_extend(args, Sink(dst))
        .map(|_| ())
        .map_err(|e| RpcError::BadArguments(format!("cannot encode arguments: {e}")))
}

/// Decodes a value that must use every byte (as the server does for arguments).
pub(super) fn decode_exact<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, RpcError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(RpcError::Protocol(format!(
            "{what} has {} unexpected trailing bytes",
            rest.len()
        ))),
        Err(e) => Err(RpcError::Protocol(format!("{what} does not decode: {e}"))),
    }
}

/// The reply of a plain method.
pub(super) fn decode_plain<T: DeserializeOwned>(body: Bytes) -> Result<T, RpcError> {
    decode_exact(&body, "reply")
}

/// The reply of a method returning `Result<T, E>`: its `Err` as [`RpcError::Application`].
pub(super) fn decode_fallible<T: DeserializeOwned, E: DeserializeOwned>(
    body: Bytes,
) -> Result<T, RpcError<E>> {
    match decode_exact::<Result<T, E>>(&body, "reply").map_err(RpcError::widen) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RpcError::Application(e)),
        Err(e) => Err(e),
    }
}
