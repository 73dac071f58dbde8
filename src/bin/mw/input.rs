//! Where `mw send` and `mw pub` take their messages from, and how `mw recv` writes raw
//! bodies: one argument, a whole file, one message per stdin line, or length-framed
//! stdin for binary data.
//!
//! A length-framed stream is a sequence of messages, each a 4-byte big-endian length
//! followed by that many bytes of body:
//!
//! ```text
//! +----------------+-----------------+----------------+-----------------+---
//! | len: u32 (BE)  | body: len bytes | len: u32 (BE)  | body: len bytes | ...
//! +----------------+-----------------+----------------+-----------------+---
//! ```
//!
//! It ends at end of input on a frame boundary; input ending inside a frame is an error
//! naming the message. `mw recv --framed` writes the same format, so
//! `mw recv --framed a | mw send --framed b` copies bodies byte for byte.

use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::sync::mpsc;

/// Largest length a framed input may declare: above the largest message any broker
/// accepts ([`mw::queue::MAX_MESSAGE_SIZE`]), so a larger one is corrupt input, not a
/// message (and is not allocated).
pub const MAX_FRAMED_LEN: usize = 64 << 20;

/// Messages the stdin reader holds ahead of the sender. Bounded so that a broker slower
/// than stdin slows the reading down instead of growing memory; large enough to fill
/// a batch of `mw send`.
const READ_AHEAD: usize = 1024;

/// Where the messages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One message: the command-line argument.
    Arg(String),
    /// One message: the whole file (`-`: the whole of stdin), byte for byte.
    File(PathBuf),
    /// One message per line of stdin (without its line ending).
    Lines,
    /// Length-framed messages on stdin (see the module docs).
    Framed,
}

impl Source {
    /// The source the flags name: MESSAGE, `--file PATH` or `--framed` (at most one),
    /// else stdin lines.
    ///
    /// # Errors
    /// More than one of them given.
    pub fn from_flags(
        message: Option<String>,
        file: Option<PathBuf>,
        framed: bool,
    ) -> Result<Source, String> {
        match (message, file, framed) {
            (Some(m), None, false) => Ok(Source::Arg(m)),
            (None, Some(f), false) => Ok(Source::File(f)),
            (None, None, true) => Ok(Source::Framed),
            (None, None, false) => Ok(Source::Lines),
            _ => Err("give at most one of MESSAGE, --file and --framed".into()),
        }
    }

    /// Whether the source holds exactly one message.
    pub fn is_single(&self) -> bool {
        matches!(self, Source::Arg(_) | Source::File(_))
    }
}

/// What an input line or frame was called in errors: `line N` or `message N`.
pub fn item_name(source: &Source) -> &'static str {
    match source {
        Source::Lines => "line",
        _ => "message",
    }
}

/// Reads `source` on a task of its own and hands its messages over, in order, through a
/// bounded channel; a read error is the last item. The receiver sees the end of input
/// as the channel closing.
pub fn spawn_reader(source: Source) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    tokio::spawn(async move {
        let result = read_into(source, &tx).await;
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

async fn read_into(
    source: Source,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    match source {
        Source::Arg(m) => {
            let _ = tx.send(Ok(Bytes::from(m))).await;
        }
        Source::File(path) if path.as_os_str() == "-" => {
            let mut body = Vec::new();
            tokio::io::stdin().read_to_end(&mut body).await?;
            let _ = tx.send(Ok(Bytes::from(body))).await;
        }
        Source::File(path) => {
            let body = tokio::fs::read(&path).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
            })?;
            let _ = tx.send(Ok(Bytes::from(body))).await;
        }
        Source::Lines => {
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Some(line) = lines.next_line().await? {
                if tx.send(Ok(Bytes::from(line))).await.is_err() {
                    break;
                }
            }
        }
        Source::Framed => {
            let mut input = tokio::io::BufReader::new(tokio::io::stdin());
            let mut n = 0u64;
            while let Some(body) = read_frame(&mut input, n + 1).await? {
                n += 1;
                if tx.send(Ok(body)).await.is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Reads one length-framed message; `None` at end of input on a frame boundary.
async fn read_frame(
    input: &mut (impl tokio::io::AsyncRead + Unpin),
    n: u64,
) -> std::io::Result<Option<Bytes>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("framed input ended inside the length of message {n}"),
                ))
            }
            k => got += k,
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAMED_LEN {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "framed message {n} declares {len} bytes, more than the {MAX_FRAMED_LEN} any broker accepts (is the input framed?)"
            ),
        ));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("framed input ended inside message {n} ({len} bytes declared)"),
        )
    })?;
    Ok(Some(Bytes::from(body)))
}

/// Writes `body` as one length-framed message.
///
/// # Errors
/// A failed write, or a body over 4 GiB − 1 (which no broker sends).
pub fn write_framed(out: &mut dyn Write, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| std::io::Error::other("message too large for a 4-byte length"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(body)
}

/// `body` for a JSON line: `"body"` as text when it is UTF-8, else `"body_hex"`.
pub fn body_json(body: &[u8]) -> (&'static str, String) {
    match std::str::from_utf8(body) {
        Ok(text) => ("body", text.to_string()),
        Err(_) => (
            "body_hex",
            body.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_read_back_what_was_written_and_torn_input_is_an_error() {
        let mut buf = Vec::new();
        write_framed(&mut buf, b"one").unwrap();
        write_framed(&mut buf, b"").unwrap();
        write_framed(&mut buf, &[0, 255, 10]).unwrap();
        let mut input = &buf[..];
        assert_eq!(read_frame(&mut input, 1).await.unwrap().unwrap(), "one");
        assert_eq!(read_frame(&mut input, 2).await.unwrap().unwrap(), "");
        assert_eq!(
            read_frame(&mut input, 3).await.unwrap().unwrap(),
            &[0u8, 255, 10][..]
        );
        assert!(read_frame(&mut input, 4).await.unwrap().is_none());

        let torn = &buf[..5];
        let mut input = torn;
        let e = read_frame(&mut input, 1).await.unwrap_err();
        assert!(e.to_string().contains("inside message 1"), "{e}");
        let mut input = &[0u8, 0][..];
        let e = read_frame(&mut input, 7).await.unwrap_err();
        assert!(e.to_string().contains("length of message 7"), "{e}");
        let mut input = &[0xffu8, 0xff, 0xff, 0xff][..];
        assert!(read_frame(&mut input, 1).await.is_err());
    }

    #[test]
    fn sources_are_one_of_message_file_framed_or_lines() {
        assert_eq!(Source::from_flags(None, None, false), Ok(Source::Lines));
        assert!(Source::from_flags(Some("m".into()), None, true).is_err());
        assert!(Source::from_flags(None, Some("f".into()), false)
            .unwrap()
            .is_single());
    }
}
