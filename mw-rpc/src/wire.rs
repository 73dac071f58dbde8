//! The RPC layer's bodies inside mw-core frames: the call header and error codes.
//!
//! ```text
//! Request / Oneway body:
//! +------------------+-----------------+----------------+----------+------------+-----------------+
//! | deadline_ms u32  | version u32     | method u32     | n: u8    | name (n B) | args (postcard) |
//! +------------------+-----------------+----------------+----------+------------+-----------------+
//! Error body:
//! +------------+---------------------------+
//! | code u16   | message (UTF-8, the rest) |
//! +------------+---------------------------+
//! ```
//! Integers are big-endian. `deadline_ms` is the time the caller will still wait,
//! 0 meaning no deadline.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::RpcError;

/// Error codes carried by `Error` frames.
pub mod code {
    /// No service by that name.
    pub const UNKNOWN_SERVICE: u16 = 1;
    /// No such method number.
    pub const UNKNOWN_METHOD: u16 = 2;
    /// The service exists in other versions.
    pub const VERSION_MISMATCH: u16 = 3;
    /// The arguments or the call header did not decode.
    pub const BAD_REQUEST: u16 = 4;
    /// The deadline passed on the server.
    pub const DEADLINE_EXCEEDED: u16 = 5;
    /// The server abandoned the call.
    pub const CANCELLED: u16 = 6;
    /// The server is at capacity.
    pub const OVERLOADED: u16 = 7;
    /// The server is shutting down.
    pub const SHUTTING_DOWN: u16 = 8;
    /// The handler panicked or its result did not encode.
    pub const INTERNAL: u16 = 9;
    /// The peer broke the protocol.
    pub const PROTOCOL: u16 = 10;
    /// The connection has not logged in, or the login failed (PROTOCOL.md §4.8).
    pub const UNAUTHENTICATED: u16 = 11;
    /// The logged-in user may not do this (PROTOCOL.md §4.8).
    pub const PERMISSION_DENIED: u16 = 12;
}

/// A decoded call header, borrowing nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallHeader {
    /// Milliseconds the caller will wait; 0 = no deadline.
    pub deadline_ms: u32,
    /// Interface version.
    pub version: u32,
    /// Method number.
    pub method: u32,
    /// Service name.
    pub service: ServiceName,
}

/// A service name as received: a zero-copy slice of the frame, checked to be UTF-8.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServiceName(Bytes);

impl ServiceName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        // Checked to be UTF-8 when the header was parsed (or built from a `&str`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for ServiceName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ServiceName {
    fn from(s: &str) -> Self {
        ServiceName(Bytes::copy_from_slice(s.as_bytes()))
    }
}

/// Writes the call header for `service`/`version`/`method` into `dst`.
pub fn put_call_header(
    dst: &mut BytesMut,
    deadline_ms: u32,
    service: &str,
    version: u32,
    method: u32,
) {
    debug_assert!(service.len() <= 255);
    dst.put_u32(deadline_ms);
    dst.put_u32(version);
    dst.put_u32(method);
    dst.put_u8(service.len() as u8);
    dst.put_slice(service.as_bytes());
}

/// Splits a Request/Oneway body into its header and argument bytes.
///
/// # Errors
/// A message saying what is malformed.
pub fn parse_call(mut body: Bytes) -> Result<(CallHeader, Bytes), String> {
    if body.len() < 13 {
        return Err(format!(
            "call header needs 13 bytes, frame body has {}",
            body.len()
        ));
    }
    let deadline_ms = body.get_u32();
    let version = body.get_u32();
    let method = body.get_u32();
    let n = body.get_u8() as usize;
    if body.len() < n {
        return Err(format!("service name of {n} bytes runs past the frame"));
    }
    let name = body.split_to(n);
    if std::str::from_utf8(&name).is_err() {
        return Err("service name is not UTF-8".to_string());
    }
    let service = ServiceName(name);
    Ok((
        CallHeader {
            deadline_ms,
            version,
            method,
            service,
        },
        body,
    ))
}

/// Encodes an Error frame body.
pub fn error_body(dst: &mut BytesMut, code: u16, message: &str) {
    dst.put_u16(code);
    dst.put_slice(message.as_bytes());
}

/// Turns an Error frame body into the caller's error.
pub fn decode_error(mut body: Bytes) -> RpcError {
    if body.len() < 2 {
        return RpcError::Protocol("error frame without a code".into());
    }
    let code = body.get_u16();
    let msg = String::from_utf8_lossy(&body).into_owned();
    match code {
        code::UNKNOWN_SERVICE => RpcError::UnknownService(msg),
        code::UNKNOWN_METHOD => RpcError::UnknownMethod(msg),
        code::VERSION_MISMATCH => RpcError::VersionMismatch(msg),
        code::BAD_REQUEST => RpcError::BadArguments(msg),
        code::DEADLINE_EXCEEDED => RpcError::Timeout(std::time::Duration::ZERO),
        code::CANCELLED => RpcError::Cancelled,
        code::OVERLOADED => RpcError::Overloaded(msg),
        code::SHUTTING_DOWN => RpcError::ShuttingDown,
        code::INTERNAL => RpcError::Internal(msg),
        code::PROTOCOL => RpcError::Protocol(msg),
        code::UNAUTHENTICATED => RpcError::Unauthenticated(msg),
        code::PERMISSION_DENIED => RpcError::PermissionDenied(msg),
        other => RpcError::Protocol(format!("unknown error code {other}: {msg}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_header_round_trips_and_rejects_truncation() {
        let mut b = BytesMut::new();
        put_call_header(&mut b, 5000, "inc", 1, 1);
        b.put_u8(41);
        let (h, args) = parse_call(b.clone().freeze()).unwrap();
        assert_eq!(
            h,
            CallHeader {
                deadline_ms: 5000,
                version: 1,
                method: 1,
                service: "inc".into()
            }
        );
        assert_eq!(&args[..], &[41]);
        assert!(parse_call(b.clone().freeze().slice(..14)).is_err());
        assert!(parse_call(b.freeze().slice(..5)).is_err());
    }
}
