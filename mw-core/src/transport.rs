//! Transports behind one interface: TCP, Unix domain sockets and in-process pipes.
//!
//! An [`Address`] is written `HOST:PORT` for TCP, `unix:PATH` for a Unix socket,
//! `inproc:NAME` for an in-process endpoint (same process only, no socket at all) and
//! `sim:NET/NAME` (or `sim:NET/FROM>NAME` to connect as endpoint `FROM`) for an endpoint
//! of a simulated, fault-injecting in-process network ([`crate::fault`]).
//! Binding port 0 (`127.0.0.1:0`) or the in-process or simulated name `0` picks a free
//! endpoint; [`Listener::local_addr`] reads back the real one.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
#[cfg(unix)]
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::error::CoreError;
use crate::fault;

/// Size of each direction's buffer of an in-process pipe.
const INPROC_PIPE_BYTES: usize = 256 * 1024;
/// Connections an in-process listener queues before `connect` waits (like a TCP backlog).
const INPROC_BACKLOG: usize = 128;

/// Where a peer listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// `HOST:PORT`, resolved when connecting or binding.
    Tcp(String),
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `inproc:NAME`.
    InProc(String),
    /// `sim:NET/NAME` or `sim:NET/FROM>NAME`: endpoint `NAME` of the simulated network
    /// `NET` (a [`FaultNet`](crate::fault::FaultNet)), reached as endpoint `FROM` when
    /// connecting (anonymously without it; a listener ignores it).
    Sim {
        /// The network's name.
        net: String,
        /// The connecting endpoint's name, if it gives one.
        from: Option<String>,
        /// The listening endpoint's name.
        endpoint: String,
    },
}

impl FromStr for Address {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, CoreError> {
        let bad = |reason: &str| CoreError::BadAddress {
            addr: s.to_string(),
            reason: reason.into(),
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path (write unix:PATH)"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("sim:") {
            return parse_sim(rest).map_err(|r| bad(&r));
        }
        if let Some(name) = s.strip_prefix("inproc:") {
            if name.is_empty() {
                return Err(bad("empty in-process name (write inproc:NAME)"));
            }
            return Ok(Address::InProc(name.to_string()));
        }
        let Some((host, port)) = s.rsplit_once(':') else {
            return Err(bad(
                "expected HOST:PORT, unix:PATH, inproc:NAME or sim:NET/NAME",
            ));
        };
        if host.is_empty() {
            return Err(bad("missing host (write HOST:PORT, e.g. 127.0.0.1:7000)"));
        }
        if port.parse::<u16>().is_err() {
            return Err(bad("port must be a number from 0 to 65535"));
        }
        Ok(Address::Tcp(s.to_string()))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => f.write_str(a),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::InProc(n) => write!(f, "inproc:{n}"),
            Address::Sim {
                net,
                from,
                endpoint,
            } => match from {
                Some(from) => write!(f, "sim:{net}/{from}>{endpoint}"),
                None => write!(f, "sim:{net}/{endpoint}"),
            },
        }
    }
}

impl Address {
    /// The address to dial this one from the endpoint listening at `local`: for two
    /// `sim:` addresses of the same network, `sim:NET/LOCAL>NAME`, so that partitions
    /// between the two endpoints apply to the connection (a server calling its peers
    /// says who it is); any other address comes back unchanged.
    ///
    /// ```
    /// use mw_core::Address;
    ///
    /// let me: Address = "sim:ring/a".parse().unwrap();
    /// let peer: Address = "sim:ring/b".parse().unwrap();
    /// assert_eq!(peer.dialed_from(&me).to_string(), "sim:ring/a>b");
    /// let tcp: Address = "127.0.0.1:7000".parse().unwrap();
    /// assert_eq!(tcp.dialed_from(&me), tcp);
    /// ```
    pub fn dialed_from(&self, local: &Address) -> Address {
        match (self, local) {
            (
                Address::Sim { net, endpoint, .. },
                Address::Sim {
                    net: local_net,
                    endpoint: me,
                    ..
                },
            ) if net == local_net => Address::Sim {
                net: net.clone(),
                from: Some(me.clone()),
                endpoint: endpoint.clone(),
            },
            _ => self.clone(),
        }
    }
}

/// Parses what follows `sim:`: `NET/NAME` or `NET/FROM>NAME`.
fn parse_sim(rest: &str) -> Result<Address, String> {
    let Some((net, who)) = rest.split_once('/') else {
        return Err("expected sim:NET/NAME or sim:NET/FROM>NAME".into());
    };
    fault::check_name(net, "network")?;
    let (from, endpoint) = match who.split_once('>') {
        Some((from, endpoint)) => {
            fault::check_name(from, "endpoint")?;
            (Some(from.to_string()), endpoint)
        }
        None => (None, who),
    };
    fault::check_name(endpoint, "endpoint")?;
    Ok(Address::Sim {
        net: net.to_string(),
        from,
        endpoint: endpoint.to_string(),
    })
}

type InProcRegistry = Mutex<HashMap<String, mpsc::Sender<DuplexStream>>>;

fn inproc_registry() -> &'static InProcRegistry {
    static REG: OnceLock<InProcRegistry> = OnceLock::new();
    REG.get_or_init(Default::default)
}

/// A bound endpoint that accepts connections.
#[derive(Debug)]
pub struct Listener {
    inner: ListenerInner,
    addr: Address,
}

#[derive(Debug)]
enum ListenerInner {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(UnixListener),
    InProc(mpsc::Receiver<DuplexStream>),
    Sim(fault::SimListener),
}

impl Listener {
    /// Binds `addr`. For a Unix socket, a stale socket file at the path is replaced.
    ///
    /// # Errors
    /// [`CoreError::Bind`] naming the address (an in-process or simulated name already in
    /// use, or a simulated network that does not exist).
    pub async fn bind(addr: &Address) -> Result<Listener, CoreError> {
        let bind_err = |source| CoreError::Bind {
            addr: addr.to_string(),
            source,
        };
        match addr {
            Address::Tcp(a) => {
                let l = TcpListener::bind(a.as_str()).await.map_err(bind_err)?;
                let local = l.local_addr().map_err(bind_err)?;
                Ok(Listener {
                    inner: ListenerInner::Tcp(l),
                    addr: Address::Tcp(local.to_string()),
                })
            }
            #[cfg(unix)]
            Address::Unix(p) => {
                if p.exists() && std::os::unix::net::UnixStream::connect(p).is_err() {
                    // Nobody answers: a socket file left behind by a dead process.
                    let _ = std::fs::remove_file(p);
                }
                let l = UnixListener::bind(p).map_err(bind_err)?;
                Ok(Listener {
                    inner: ListenerInner::Unix(l),
                    addr: addr.clone(),
                })
            }
            #[cfg(not(unix))]
            Address::Unix(_) => Err(bind_err(io::Error::new(
                io::ErrorKind::Unsupported,
                "unix sockets are not available on this platform",
            ))),
            Address::InProc(name) => {
                static NEXT: AtomicU64 = AtomicU64::new(1);
                let name = if name == "0" {
                    format!("auto-{}", NEXT.fetch_add(1, Ordering::Relaxed))
                } else {
                    name.clone()
                };
                let (tx, rx) = mpsc::channel(INPROC_BACKLOG);
                let mut reg = inproc_registry().lock().unwrap_or_else(|e| e.into_inner());
                if reg.get(&name).is_some_and(|s| !s.is_closed()) {
                    return Err(bind_err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "in-process name already bound",
                    )));
                }
                reg.insert(name.clone(), tx);
                Ok(Listener {
                    inner: ListenerInner::InProc(rx),
                    addr: Address::InProc(name),
                })
            }
            Address::Sim { net, endpoint, .. } => {
                let l = fault::bind(&addr.to_string(), net, endpoint)?;
                let addr = Address::Sim {
                    net: l.net().to_string(),
                    from: None,
                    endpoint: l.name.clone(),
                };
                Ok(Listener {
                    inner: ListenerInner::Sim(l),
                    addr,
                })
            }
        }
    }

    /// The address peers can connect to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> &Address {
        &self.addr
    }

    /// Waits for the next connection; returns it with a printable peer description.
    ///
    /// # Errors
    /// Accept failures (e.g. too many open files). An in-process listener never fails.
    ///
    /// # Cancel safety
    /// Cancel safe: no connection is lost if the future is dropped.
    pub async fn accept(&mut self) -> io::Result<(Stream, String)> {
        match &mut self.inner {
            ListenerInner::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), peer.to_string()))
            }
            #[cfg(unix)]
            ListenerInner::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), format!("{}", self.addr)))
            }
            ListenerInner::InProc(rx) => match rx.recv().await {
                Some(s) => Ok((Stream::InProc(s), self.addr.to_string())),
                // Unreachable while we hold the registry's sender's receiver, but be total.
                None => std::future::pending().await,
            },
            ListenerInner::Sim(l) => match l.incoming.recv().await {
                Some((s, peer)) => Ok((Stream::InProc(s), peer)),
                // The endpoint was killed: like a dead process, nothing arrives any more.
                None => std::future::pending().await,
            },
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        match &self.addr {
            Address::InProc(name) => {
                let mut reg = inproc_registry().lock().unwrap_or_else(|e| e.into_inner());
                reg.remove(name);
            }
            #[cfg(unix)]
            Address::Unix(p) => {
                let _ = std::fs::remove_file(p);
            }
            _ => {}
        }
    }
}

/// Connects to `addr` (no handshake; see [`crate::handshake`]).
///
/// # Errors
/// [`CoreError::Connect`] naming the address and the cause (refused, unreachable, no such
/// in-process name or simulated endpoint); [`CoreError::Unreachable`] if a simulated
/// network's partition separates the endpoints.
pub async fn connect(addr: &Address) -> Result<Stream, CoreError> {
    let err = |source| CoreError::Connect {
        addr: addr.to_string(),
        source,
    };
    match addr {
        Address::Tcp(a) => {
            let s = TcpStream::connect(a.as_str()).await.map_err(err)?;
            s.set_nodelay(true).map_err(err)?;
            Ok(Stream::Tcp(s))
        }
        #[cfg(unix)]
        Address::Unix(p) => Ok(Stream::Unix(UnixStream::connect(p).await.map_err(err)?)),
        #[cfg(not(unix))]
        Address::Unix(_) => Err(err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no unix sockets",
        ))),
        Address::InProc(name) => {
            let tx = inproc_registry()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned();
            let refused = || {
                err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "no in-process listener by that name",
                ))
            };
            let tx = tx.ok_or_else(refused)?;
            let (ours, theirs) = tokio::io::duplex(INPROC_PIPE_BYTES);
            tx.send(theirs).await.map_err(|_| refused())?;
            Ok(Stream::InProc(ours))
        }
        Address::Sim {
            net,
            from,
            endpoint,
        } => {
            let from = from.as_deref().unwrap_or("");
            let s = fault::connect(&addr.to_string(), net, from, endpoint).await?;
            Ok(Stream::InProc(s))
        }
    }
}

/// A connected byte stream over any transport.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection (with `TCP_NODELAY` set).
    Tcp(TcpStream),
    /// A Unix domain socket connection.
    #[cfg(unix)]
    Unix(UnixStream),
    /// One end of an in-process pipe.
    InProc(DuplexStream),
    /// A TCP connection inside TLS ([`crate::tls`]).
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            #[cfg(unix)]
            Stream::Unix($s) => $e,
            Stream::InProc($s) => $e,
            Stream::Tls($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Stream::Tls(s) = &mut *self {
            // A peer that closes without TLS's close_notify (most clients just drop the
            // connection) is an end of stream like a TCP FIN: frames are length-prefixed,
            // so a cut inside a frame is still detected by the frame codec.
            return match Pin::new(s).poll_read(cx, buf) {
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            };
        }
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            #[cfg(unix)]
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::InProc(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The read half of a [`Stream`], from [`Stream::into_split`].
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a [`Stream`], from [`Stream::into_split`].
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

impl Stream {
    /// Splits into independently owned halves (lock-free for TCP and Unix sockets).
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            #[cfg(unix)]
            Stream::Unix(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Stream::InProc(s) => {
                let (r, w) = tokio::io::split(s);
                (Box::new(r), Box::new(w))
            }
            // Split as a whole, so reads keep `Stream`'s end-of-stream rule for TLS.
            tls @ Stream::Tls(_) => {
                let (r, w) = tokio::io::split(tls);
                (Box::new(r), Box::new(w))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn parses_every_address_form() {
        assert_eq!(
            "127.0.0.1:80".parse::<Address>().unwrap(),
            Address::Tcp("127.0.0.1:80".into())
        );
        assert_eq!(
            "localhost:0".parse::<Address>().unwrap(),
            Address::Tcp("localhost:0".into())
        );
        assert_eq!(
            "unix:/tmp/x.sock".parse::<Address>().unwrap(),
            Address::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            "inproc:kv".parse::<Address>().unwrap(),
            Address::InProc("kv".into())
        );
        assert_eq!(
            "sim:ring/a".parse::<Address>().unwrap(),
            Address::Sim {
                net: "ring".into(),
                from: None,
                endpoint: "a".into()
            }
        );
        let link: Address = "sim:ring/client>a".parse().unwrap();
        assert_eq!(
            link,
            Address::Sim {
                net: "ring".into(),
                from: Some("client".into()),
                endpoint: "a".into()
            }
        );
        assert_eq!(link.to_string(), "sim:ring/client>a");
        for bad in [
            "",
            "nohost",
            ":80",
            "host:port",
            "host:70000",
            "unix:",
            "inproc:",
            "sim:",
            "sim:ring",
            "sim:/a",
            "sim:ring/",
            "sim:ring/>a",
            "sim:ring/a>",
            "sim:ring/a>b>c",
            "sim:ring/a/b",
            "sim:ring/a b",
        ] {
            assert!(
                matches!(bad.parse::<Address>(), Err(CoreError::BadAddress { .. })),
                "{bad}"
            );
        }
    }

    async fn echo_once(addr: Address) {
        let mut l = Listener::bind(&addr).await.unwrap();
        let local = l.local_addr().clone();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
        });
        let mut c = connect(&local).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn echo_over_tcp_unix_and_inproc() {
        echo_once("127.0.0.1:0".parse().unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        echo_once(Address::Unix(dir.path().join("s.sock"))).await;
        echo_once("inproc:0".parse().unwrap()).await;
    }

    #[tokio::test]
    async fn connect_to_nothing_names_the_address() {
        let err = connect(&"inproc:nobody-here".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("inproc:nobody-here"), "{err}");
    }
}
