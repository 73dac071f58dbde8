//! TLS on TCP connections, with rustls.
//!
//! A server holds a [`TlsServer`] (its certificate chain and key from PEM files, and
//! optionally a CA whose client certificates it requires: mutual TLS); a client holds a
//! [`TlsClient`] (the CAs it trusts, from a PEM file or the platform's store, and
//! optionally its own certificate and key). TLS wraps a TCP connection before mw's
//! handshake ([`crate::handshake`]); everything after it is unchanged. Unix-socket and
//! in-process connections are local and stay plaintext.
//!
//! A mismatch fails at once and says so: a server with TLS answers a plaintext mw
//! client with a handshake refusal whose text says that TLS is required (old clients
//! print it too); a TLS client that meets a plaintext server gets [`CoreError::Tls`]
//! saying the server did not answer in TLS.
//!
//! ```no_run
//! # fn main() -> Result<(), mw_core::CoreError> {
//! use std::path::Path;
//! use mw_core::tls::{TlsClient, TlsServer};
//! let server = TlsServer::from_pem_files(Path::new("server.pem"), Path::new("server.key"), None)?;
//! let client = TlsClient::new(Some(Path::new("ca.pem")), None)?;
//! # let _ = (server, client);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::{
    self,
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    server::WebPkiClientVerifier,
    RootCertStore,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::error::CoreError;
use crate::handshake::MAGIC;
use crate::transport::{Address, Stream};

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

pub use crate::handshake::TLS_REQUIRED;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, CoreError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CoreError::Tls(format!("cannot read {what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(CoreError::Tls(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CoreError> {
    // An encrypted key parses as "no key"; say what it is instead.
    if let Ok(text) = std::fs::read_to_string(path) {
        if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(CoreError::Tls(format!(
                "private key {} is encrypted: mw reads unencrypted keys (decrypt it with \
                 `openssl pkey -in KEY -out KEY.plain` and keep that file owner-only)",
                path.display()
            )));
        }
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        CoreError::Tls(format!(
            "cannot read private key {}: {e} (a PEM file with one PKCS#8, PKCS#1 or SEC1 key)",
            path.display()
        ))
    })
}

fn roots(path: &Path, what: &str) -> Result<RootCertStore, CoreError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, what)? {
        roots.add(cert).map_err(|e| {
            CoreError::Tls(format!(
                "{what} {}: unusable certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// Why a certificate and key were refused: they do not belong together, or the
/// certificate itself cannot be used.
fn unusable_pair(what: &str, cert: &Path, e: &rustls::Error) -> CoreError {
    CoreError::Tls(match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{what} {} and its key do not belong together: {e}",
            cert.display()
        ),
        rustls::Error::InvalidCertificate(_) => format!(
            "{what} {} cannot be used: {e} (mw needs an X.509 v3 certificate, with \
             extensions, as `openssl x509 -req ... -extfile FILE` makes)",
            cert.display()
        ),
        _ => format!(
            "{what} {} and its key cannot be used together: {e}",
            cert.display()
        ),
    })
}

/// A server's TLS settings: its certificate and key, and the CA its clients'
/// certificates must be signed by when client certificates are required.
#[derive(Clone)]
pub struct TlsServer {
    acceptor: TlsAcceptor,
    mutual: bool,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Reads the certificate chain (`cert`, leaf first) and private key (`key`) from PEM
    /// files; with `client_ca`, every client must present a certificate signed by a CA in
    /// that PEM file (mutual TLS).
    ///
    /// # Errors
    /// [`CoreError::Tls`] naming the file that cannot be read or used, or a key that
    /// does not match the certificate.
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<TlsServer, CoreError> {
        let chain = read_certs(cert, "certificate")?;
        let key = read_key(key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CoreError::Tls(e.to_string()))?;
        let builder = match client_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca, "client CA file")?),
                    provider(),
                )
                .build()
                .map_err(|e| CoreError::Tls(format!("client CA file {}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| unusable_pair("certificate", cert, &e))?;
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            mutual: client_ca.is_some(),
        })
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.mutual
    }

    /// Runs the server side of TLS on an accepted connection (TCP only; other
    /// transports are returned unchanged). A client that opens with anything but a TLS
    /// handshake is answered with an mw handshake refusal saying that TLS is required,
    /// and refused.
    ///
    /// # Errors
    /// [`CoreError::Tls`]: a plaintext client, or a failed TLS handshake (an untrusted
    /// or missing client certificate, an unsupported protocol version).
    pub async fn accept(&self, stream: Stream) -> Result<Stream, CoreError> {
        let tcp = match stream {
            Stream::Tcp(tcp) => tcp,
            other => return Ok(other),
        };
        let mut first = [0u8; 1];
        let n = tcp.peek(&mut first).await?;
        if n == 0 {
            return Err(CoreError::Closed);
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            refuse_plaintext(tcp).await;
            return Err(CoreError::Tls("a plaintext client was refused".into()));
        }
        let tls = self
            .acceptor
            .accept(tcp)
            .await
            .map_err(|e| CoreError::Tls(format!("handshake with a client failed: {e}")))?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }
}

/// The subject common name of the certificate the client presented on a TLS `stream`
/// (verified against the server's client CA during the handshake), if it has exactly one.
/// `None` for other transports and for clients without a certificate.
pub fn peer_common_name(stream: &Stream) -> Option<String> {
    let Stream::Tls(tls) = stream else {
        return None;
    };
    let leaf = tls.get_ref().1.peer_certificates()?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    // A subject with several common names names nobody for sure.
    let mut names = cert.subject().iter_common_name();
    let name = names.next()?.as_str().ok()?;
    if names.next().is_some() {
        return None;
    }
    Some(name.to_string())
}

/// Tells a plaintext mw client, in the handshake's own refusal form (version 0 and a
/// text), that this server speaks TLS only, then closes.
async fn refuse_plaintext(mut tcp: TcpStream) {
    let text = format!("{TLS_REQUIRED}: connect with TLS (the CLI's --tls-ca FILE)");
    let mut reply = Vec::with_capacity(8 + text.len());
    reply.extend_from_slice(&MAGIC);
    reply.extend_from_slice(&0u16.to_be_bytes());
    reply.extend_from_slice(&u16::try_from(text.len()).unwrap_or(0).to_be_bytes());
    reply.extend_from_slice(text.as_bytes());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        // Read what the client sent first, so that closing does not reset the
        // connection before it reads the refusal.
        let mut hello = [0u8; 8];
        let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut hello).await;
        let _ = tcp.write_all(&reply).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

/// A client's TLS settings: the CAs it trusts and, for mutual TLS, its own
/// certificate and key.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    server_name: Option<String>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trusts the CAs in the PEM file `ca`, or the platform's trusted roots when `None`;
    /// `identity` is this client's certificate chain and key (PEM files) for servers
    /// that require client certificates.
    ///
    /// # Errors
    /// [`CoreError::Tls`] naming a file that cannot be read or used, or when the
    /// platform has no trusted roots.
    pub fn new(
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> Result<TlsClient, CoreError> {
        let roots = match ca {
            Some(ca) => roots(ca, "CA file")?,
            None => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(CoreError::Tls(
                        "the platform has no trusted root certificates; pass a CA file".into(),
                    ));
                }
                roots
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| CoreError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certs(cert, "certificate")?, read_key(key)?)
                .map_err(|e| unusable_pair("client certificate", cert, &e))?,
            None => builder.with_no_client_auth(),
        };
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: None,
        })
    }

    /// Verifies the server's certificate against `name` instead of the host part of the
    /// address connected to.
    #[must_use]
    pub fn with_server_name(mut self, name: impl Into<String>) -> TlsClient {
        self.server_name = Some(name.into());
        self
    }

    /// Runs the client side of TLS on a connection to `addr` (TCP only; other
    /// transports are returned unchanged).
    ///
    /// # Errors
    /// [`CoreError::Tls`] saying what failed: an untrusted server certificate, a server
    /// that did not answer in TLS (a plaintext server), a refused handshake.
    pub async fn connect(&self, stream: Stream, addr: &Address) -> Result<Stream, CoreError> {
        let tcp = match stream {
            Stream::Tcp(tcp) => tcp,
            other => return Ok(other),
        };
        let host = match (&self.server_name, addr) {
            (Some(name), _) => name.clone(),
            (None, Address::Tcp(a)) => host_of(a).to_string(),
            (None, other) => other.to_string(),
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|e| CoreError::Tls(format!("{host:?} is not a valid server name: {e}")))?;
        let tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| explain(&addr.to_string(), &e))?;
        Ok(Stream::Tls(Box::new(tls.into())))
    }
}

/// `host` of `host:port` (without the brackets of an IPv6 address).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Says what a TLS failure talking to `addr` means for the user, or `None` if `e` is
/// not a TLS failure.
pub fn explain_io(addr: &str, e: &io::Error) -> Option<CoreError> {
    let tls = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())?;
    Some(explain_rustls(addr, tls))
}

fn explain(addr: &str, e: &io::Error) -> CoreError {
    if let Some(err) = explain_io(addr, e) {
        return err;
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => CoreError::Tls(format!(
            "{addr} closed the connection during the TLS handshake: is it a plaintext server? \
             (connect without --tls-ca)"
        )),
        _ => CoreError::Tls(format!("handshake with {addr} failed: {e}")),
    }
}

fn explain_rustls(addr: &str, e: &rustls::Error) -> CoreError {
    use rustls::{AlertDescription, Error};
    CoreError::Tls(match e {
        Error::InvalidCertificate(why) => format!(
            "the certificate of {addr} is not trusted: {why} (check --tls-ca and the address's \
             host name)"
        ),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => format!(
            "{addr} did not answer in TLS: is it a plaintext server? (connect without --tls-ca)"
        ),
        Error::AlertReceived(AlertDescription::CertificateRequired) => {
            format!("{addr} requires a client certificate: pass --tls-cert FILE --tls-key FILE")
        }
        Error::AlertReceived(AlertDescription::UnsupportedCertificate) => format!(
            "{addr} refused our client certificate (UnsupportedCertificate): it must allow \
             client authentication (extendedKeyUsage=clientAuth)"
        ),
        Error::AlertReceived(
            a @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied),
        ) => format!("{addr} refused our client certificate ({a:?})"),
        other => format!("handshake with {addr} failed: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_takes_the_host_of_an_address() {
        assert_eq!(host_of("127.0.0.1:7800"), "127.0.0.1");
        assert_eq!(host_of("localhost:1"), "localhost");
        assert_eq!(host_of("[::1]:7800"), "::1");
    }
}
