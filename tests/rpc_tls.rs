//! TLS on mw's TCP transport, over real sockets with certificates made by rcgen: calls
//! work over TLS and mutual TLS; every refusal fails at once with a message that says
//! what is wrong (a plaintext client meeting a TLS server and the reverse, an untrusted
//! server certificate, a missing, untrusted or expired client certificate, unreadable
//! or mismatched files); and the server keeps serving the clients it admitted.

#[path = "support/certs.rs"]
mod certs;
#[allow(unused_macros)]
mod common;

use std::path::Path;

use certs::Ca;
use common::within;
use mw::core::tls::{TlsClient, TlsServer};
use mw::rpc::{Channel, ClientConfig, RunningServer, Server, ServerConfig};

#[mw::service(name = "tls.echo", version = 1)]
pub trait Echo {
    async fn echo(&self, s: String) -> String;
}

struct EchoImpl;

impl Echo for EchoImpl {
    async fn echo(&self, s: String) -> String {
        s
    }
}

async fn server(tls: Option<TlsServer>) -> RunningServer {
    Server::builder()
        .add(EchoServer::new(EchoImpl))
        .config(ServerConfig {
            tls,
            ..ServerConfig::default()
        })
        .build()
        .spawn("127.0.0.1:0")
        .await
        .unwrap()
}

async fn connect(addr: &str, tls: Option<TlsClient>) -> Result<EchoClient, String> {
    let config = ClientConfig {
        tls,
        ..ClientConfig::default()
    };
    match within("connect", Channel::connect_with(addr, config)).await {
        Ok(ch) => Ok(EchoClient::new(ch)),
        Err(e) => Err(mw::run::chain(&e)),
    }
}

async fn echo_ok(c: &EchoClient) {
    assert_eq!(
        within("echo", c.echo("hi".into())).await.unwrap(),
        "hi",
        "an admitted client is served"
    );
}

/// A first call: with TLS 1.3, a server refuses a client certificate only after the
/// client's side of the handshake is done, so the refusal can surface here.
async fn connect_and_call(addr: &str, tls: Option<TlsClient>) -> Result<(), String> {
    let c = connect(addr, tls).await?;
    within("echo", c.echo("x".into()))
        .await
        .map(|_| ())
        .map_err(|e| mw::run::chain(&e))
}

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    other: Ca,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let other = Ca::new(dir.path(), "other-ca");
    Pki { dir, ca, other }
}

impl Pki {
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn server_tls(&self, mutual: bool) -> TlsServer {
        let (cert, key) = self.ca.server(self.path(), "server");
        TlsServer::from_pem_files(&cert, &key, mutual.then_some(self.ca.pem.as_path())).unwrap()
    }
    fn client_tls(&self) -> TlsClient {
        TlsClient::new(Some(&self.ca.pem), None).unwrap()
    }
}

#[tokio::test]
async fn calls_work_over_tls_by_ip_and_by_host_name() {
    let p = pki();
    let s = server(Some(p.server_tls(false))).await;
    let addr = s.local_addr().to_string();
    let c = connect(&addr, Some(p.client_tls())).await.unwrap();
    echo_ok(&c).await;
    let by_name = addr.replace("127.0.0.1", "localhost");
    let c = connect(&by_name, Some(p.client_tls())).await.unwrap();
    echo_ok(&c).await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_plaintext_client_is_told_the_server_requires_tls() {
    let p = pki();
    let s = server(Some(p.server_tls(false))).await;
    let addr = s.local_addr().to_string();
    let good = connect(&addr, Some(p.client_tls())).await.unwrap();
    let e = connect(&addr, None).await.unwrap_err();
    println!("{e}");
    assert!(e.contains("requires TLS"), "{e}");
    echo_ok(&good).await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_tls_client_is_told_the_server_is_plaintext() {
    let p = pki();
    let s = server(None).await;
    let addr = s.local_addr().to_string();
    let e = connect(&addr, Some(p.client_tls())).await.unwrap_err();
    println!("{e}");
    assert!(e.contains("plaintext server"), "{e}");
    // The server still serves plaintext clients.
    echo_ok(&connect(&addr, None).await.unwrap()).await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_not_trusted() {
    let p = pki();
    let s = server(Some(p.server_tls(false))).await;
    let addr = s.local_addr().to_string();
    let wrong = TlsClient::new(Some(&p.other.pem), None).unwrap();
    let e = connect(&addr, Some(wrong)).await.unwrap_err();
    println!("{e}");
    assert!(
        e.contains("not trusted") && e.contains("UnknownIssuer"),
        "{e}"
    );
    // A name the certificate does not hold.
    let renamed = p.client_tls().with_server_name("elsewhere.example");
    let e = connect(&addr, Some(renamed)).await.unwrap_err();
    println!("{e}");
    assert!(
        e.contains("not trusted") && e.contains("not valid for name \"elsewhere.example\""),
        "{e}"
    );
    echo_ok(&connect(&addr, Some(p.client_tls())).await.unwrap()).await;
    s.shutdown().await;
}

#[tokio::test]
async fn an_expired_server_certificate_is_not_trusted() {
    let p = pki();
    let (cert, key) =
        p.ca.leaf(p.path(), "old-server", &["127.0.0.1"], false, true);
    let s = server(Some(TlsServer::from_pem_files(&cert, &key, None).unwrap())).await;
    let e = connect(&s.local_addr().to_string(), Some(p.client_tls()))
        .await
        .unwrap_err();
    println!("{e}");
    assert!(
        e.contains("not trusted") && e.contains("certificate expired"),
        "{e}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_trusted_current_certificate() {
    let p = pki();
    let s = server(Some(p.server_tls(true))).await;
    let addr = s.local_addr().to_string();
    let (cert, key) = p.ca.client(p.path(), "alice");
    let alice = TlsClient::new(Some(&p.ca.pem), Some((&cert, &key))).unwrap();
    let admitted = connect(&addr, Some(alice)).await.unwrap();
    echo_ok(&admitted).await;

    // No client certificate.
    let e = connect_and_call(&addr, Some(p.client_tls()))
        .await
        .unwrap_err();
    println!("{e}");
    assert!(e.contains("requires a client certificate"), "{e}");
    // One signed by a CA the server does not trust.
    let (cert, key) = p.other.client(p.path(), "mallory");
    let mallory = TlsClient::new(Some(&p.ca.pem), Some((&cert, &key))).unwrap();
    let e = connect_and_call(&addr, Some(mallory)).await.unwrap_err();
    println!("{e}");
    assert!(e.contains("refused our client certificate"), "{e}");
    // An expired one.
    let (cert, key) = p.ca.leaf(p.path(), "old-bob", &["old-bob"], true, true);
    let old = TlsClient::new(Some(&p.ca.pem), Some((&cert, &key))).unwrap();
    let e = connect_and_call(&addr, Some(old)).await.unwrap_err();
    println!("{e}");
    assert!(e.contains("refused our client certificate"), "{e}");
    // A server certificate (serverAuth only) used as a client certificate.
    let (cert, key) = p.ca.server(p.path(), "not-a-client");
    let wrong_use = TlsClient::new(Some(&p.ca.pem), Some((&cert, &key))).unwrap();
    let e = connect_and_call(&addr, Some(wrong_use)).await.unwrap_err();
    println!("{e}");
    assert!(e.contains("extendedKeyUsage=clientAuth"), "{e}");
    // A plaintext client.
    let e = connect(&addr, None).await.unwrap_err();
    println!("{e}");
    assert!(e.contains("requires TLS"), "{e}");

    echo_ok(&admitted).await;
    s.shutdown().await;
}

#[test]
fn unusable_files_are_refused_naming_the_file() {
    let p = pki();
    let missing = p.path().join("missing.pem");
    let (cert, key) = p.ca.server(p.path(), "server");
    let (_, other_key) = p.ca.server(p.path(), "server2");

    let e = TlsServer::from_pem_files(&missing, &key, None).unwrap_err();
    println!("{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = TlsServer::from_pem_files(&cert, &missing, None).unwrap_err();
    println!("{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    // A key that is not the certificate's.
    let e = TlsServer::from_pem_files(&cert, &other_key, None).unwrap_err();
    println!("{e}");
    assert!(e.to_string().contains("do not belong together"), "{e}");
    // An encrypted key (mw reads unencrypted ones) is named as such.
    let encrypted = p.path().join("encrypted.key");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0w\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = TlsServer::from_pem_files(&cert, &encrypted, None).unwrap_err();
    println!("{e}");
    assert!(e.to_string().contains("encrypted.key is encrypted"), "{e}");
    // A key file given as a certificate: no certificate in it.
    let e = TlsServer::from_pem_files(&key, &key, None).unwrap_err();
    println!("{e}");
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
    let e = TlsClient::new(Some(&missing), None).unwrap_err();
    println!("{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");
    let e = TlsClient::new(Some(&p.ca.pem), Some((&cert, &other_key))).unwrap_err();
    println!("{e}");
    assert!(e.to_string().contains("do not belong together"), "{e}");
}
