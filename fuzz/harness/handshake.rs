//! Both sides of mw-core's connection handshake.
//!
//! Input: byte 0 picks the mode, bytes 1..5 the version range our side offers
//! (`min`, `max` as big-endian u16), bytes 5..9 the peer's range in mode 2, the rest is
//! what the peer sends.
//! * mode 0: [`client_handshake`] against a peer that sends the given bytes;
//! * mode 1: [`server_handshake`] against a client that sends the given bytes;
//! * mode 2: the real client against the real server with both ranges.
//!
//! Checked: no panic; an agreed version lies inside the offered range; the server's reply
//! is well formed (magic, version, text length matching the text); the real pair agrees
//! exactly when the ranges overlap, on the highest common version.

use mw_core::handshake::{client_handshake, server_handshake, MAGIC};
use mw_core::CoreError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{block_on, Cursor};

/// Runs one input (see the module docs).
pub fn run(data: &[u8]) {
    let mut c = Cursor::new(data);
    let mode = c.u8() % 3;
    // Version 0 is the wire's refusal, never a version a side speaks: our side's range
    // starts at 1 (mw-core's own constants do), the peer's bytes are arbitrary.
    let (min, max) = (c.u16().max(1), c.u16().max(1));
    let (peer_min, peer_max) = (c.u16(), c.u16());
    let peer_bytes = if mode == 2 { &[][..] } else { c.rest() };
    block_on(async move {
        let cap = peer_bytes.len() + 1024;
        let (mut ours, mut peer) = tokio::io::duplex(cap);
        match mode {
            0 => {
                peer.write_all(peer_bytes).await.expect("duplex write");
                peer.shutdown().await.expect("duplex shutdown");
                let r = client_handshake(&mut ours, min, max).await;
                drop(ours);
                let mut sent = Vec::new();
                peer.read_to_end(&mut sent).await.expect("duplex read");
                assert_eq!(sent.len(), 8, "client hello is 8 bytes");
                assert_eq!(sent[..4], MAGIC);
                assert_eq!(sent[4..6], min.to_be_bytes());
                assert_eq!(sent[6..8], max.to_be_bytes());
                if let Ok(v) = r {
                    assert!(
                        v != 0 && (min..=max).contains(&v),
                        "agreed {v} outside {min}..={max}"
                    );
                    assert!(peer_bytes.len() >= 8 && peer_bytes[..4] == MAGIC);
                }
            }
            1 => {
                peer.write_all(peer_bytes).await.expect("duplex write");
                peer.shutdown().await.expect("duplex shutdown");
                let r = server_handshake(&mut ours, min, max).await;
                drop(ours);
                let mut reply = Vec::new();
                peer.read_to_end(&mut reply).await.expect("duplex read");
                check_server(r, &reply, peer_bytes, min, max);
            }
            _ => {
                let (c, s) = tokio::join!(
                    client_handshake(&mut ours, peer_min, peer_max),
                    server_handshake(&mut peer, min, max)
                );
                let lo = min.max(peer_min);
                let hi = max.min(peer_max);
                if lo <= hi {
                    assert_eq!(c.expect("overlapping ranges agree"), hi);
                    assert_eq!(s.expect("overlapping ranges agree"), hi);
                } else {
                    assert!(matches!(s, Err(CoreError::VersionRefused { .. })), "{s:?}");
                    assert!(
                        matches!(c, Err(CoreError::VersionRefused { .. })),
                        "client sees the refusal: {c:?}"
                    );
                }
            }
        }
    });
}

fn check_server(r: Result<u16, CoreError>, reply: &[u8], hello: &[u8], min: u16, max: u16) {
    if hello.len() < 8 {
        assert!(r.is_err(), "accepted a short hello");
        assert!(reply.is_empty(), "replied to a short hello");
        return;
    }
    if hello[..4] != MAGIC {
        assert!(matches!(r, Err(CoreError::BadHandshake(_))), "{r:?}");
        assert!(reply.is_empty(), "replied to a non-mw peer");
        return;
    }
    assert!(
        reply.len() >= 8 && reply[..4] == MAGIC,
        "reply {reply:02x?}"
    );
    let version = u16::from_be_bytes([reply[4], reply[5]]);
    let n = u16::from_be_bytes([reply[6], reply[7]]) as usize;
    assert_eq!(reply.len(), 8 + n, "reply text length");
    assert!(
        std::str::from_utf8(&reply[8..]).is_ok(),
        "reply text is UTF-8"
    );
    let peer_min = u16::from_be_bytes([hello[4], hello[5]]);
    let peer_max = u16::from_be_bytes([hello[6], hello[7]]);
    match r {
        Ok(v) => {
            assert_eq!(v, version);
            assert_eq!(n, 0, "acceptance carries no text");
            assert!(v != 0, "accepted version 0");
            assert!((min..=max).contains(&v) && (peer_min..=peer_max).contains(&v));
        }
        Err(CoreError::VersionRefused { .. }) => {
            assert_eq!(version, 0, "a refusal says version 0");
            assert!(
                min.max(peer_min) > max.min(peer_max),
                "refused overlapping ranges"
            );
        }
        Err(e) => panic!("unexpected server handshake error {e:?}"),
    }
}
