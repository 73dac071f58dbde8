//! Logins over real sockets (`ServerConfig::auth`, `ClientConfig::credentials`): a
//! connection without a login is refused on its first call, a wrong password or token is
//! refused at connect naming the user, a right one is admitted, a service the user may
//! not call is refused with `PermissionDenied` and the same connection keeps serving
//! what is allowed, and a client reconnecting logs in again. Over mutual TLS, a client
//! certificate named after a user with `certificate = true` logs in by itself.

#[path = "support/certs.rs"]
mod certs;
#[allow(unused_macros)]
mod common;

use std::sync::Arc;

use common::{start_server, within, Transport};
use mw::auth::{hash_password, AuthFile};
use mw::rpc::auth::Credentials;
use mw::rpc::{Channel, ClientConfig, RpcError, ServerConfig};

#[mw::service(name = "auth.open", version = 1)]
pub trait Open {
    async fn hello(&self) -> String;
}

#[mw::service(name = "auth.closed", version = 1)]
pub trait Closed {
    async fn secret(&self) -> String;
}

struct Impl;

impl Open for Impl {
    async fn hello(&self) -> String {
        "hello".into()
    }
}

impl Closed for Impl {
    async fn secret(&self) -> String {
        "secret".into()
    }
}

async fn server() -> common::TestServer {
    let alice = hash_password("alice-secret").unwrap();
    let token = hash_password("t0k3n").unwrap();
    let file = AuthFile::parse(&format!(
        "[users.alice]\npassword = \"{alice}\"\nservices = [\"auth.open\"]\n\
         [users.ci]\ntokens = [\"{token}\"]\nservices = [\"*\"]\n"
    ))
    .unwrap();
    let config = ServerConfig {
        auth: Some(Arc::new(file)),
        ..ServerConfig::default()
    };
    start_server(Transport::Tcp, config, |b| {
        b.add(OpenServer::new(Impl)).add(ClosedServer::new(Impl))
    })
    .await
}

async fn connect(addr: &str, credentials: Option<Credentials>) -> Result<Channel, RpcError> {
    let config = ClientConfig {
        credentials,
        ..ClientConfig::default()
    };
    within("connect", Channel::connect_with(addr, config)).await
}

fn alice(password: &str) -> Option<Credentials> {
    Some(Credentials::Password {
        user: "alice".into(),
        password: password.into(),
    })
}

#[tokio::test]
async fn without_a_login_every_call_is_refused() {
    let s = server().await;
    let ch = connect(&s.addr, None).await.unwrap();
    match within("call", OpenClient::new(ch).hello()).await {
        Err(RpcError::Unauthenticated(m)) => assert!(m.contains("authentication required"), "{m}"),
        other => panic!("{other:?}"),
    }
    s.shutdown().await;
}

#[tokio::test]
async fn wrong_credentials_are_refused_naming_the_user() {
    let s = server().await;
    for creds in [
        alice("wrong"),
        Some(Credentials::Password {
            user: "mallory".into(),
            password: "x".into(),
        }),
        Some(Credentials::Token("ci.wrong".into())),
    ] {
        let user = creds.as_ref().unwrap().user().to_string();
        match connect(&s.addr, creds).await {
            Err(RpcError::Unauthenticated(m)) => {
                assert_eq!(m, format!("authentication failed for user {user:?}"))
            }
            other => panic!("{other:?}"),
        }
    }
    s.shutdown().await;
}

#[tokio::test]
async fn a_user_calls_what_is_allowed_and_is_refused_the_rest_on_one_connection() {
    let s = server().await;
    let ch = connect(&s.addr, alice("alice-secret")).await.unwrap();
    let open = OpenClient::new(ch.clone());
    assert_eq!(within("hello", open.hello()).await.unwrap(), "hello");
    match within("secret", ClosedClient::new(ch).secret()).await {
        Err(RpcError::PermissionDenied(m)) => {
            assert_eq!(m, "user \"alice\" may not call service auth.closed")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(within("hello again", open.hello()).await.unwrap(), "hello");
    // A token user may call everything.
    let ci = connect(&s.addr, Some(Credentials::Token("ci.t0k3n".into())))
        .await
        .unwrap();
    assert_eq!(
        within("ci secret", ClosedClient::new(ci).secret())
            .await
            .unwrap(),
        "secret"
    );
    s.shutdown().await;
}

/// Mutual TLS with `--auth`: a client certificate whose common name is a user with
/// `certificate = true` is logged in without a password, with that user's services; a
/// trusted certificate of anyone else logs nobody in; a password login over a
/// certificate login as another user is refused.
#[tokio::test]
async fn a_client_certificate_logs_its_user_in() {
    use mw::core::tls::{TlsClient, TlsServer};
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::Ca::new(dir.path(), "ca");
    let (cert, key) = ca.server(dir.path(), "server");
    let alice = hash_password("alice-secret").unwrap();
    let file = AuthFile::parse(&format!(
        "[users.sensor-7]\ncertificate = true\nservices = [\"auth.open\"]\n\
         [users.alice]\npassword = \"{alice}\"\nservices = [\"*\"]\n"
    ))
    .unwrap();
    let config = ServerConfig {
        auth: Some(Arc::new(file)),
        tls: Some(TlsServer::from_pem_files(&cert, &key, Some(ca.pem.as_path())).unwrap()),
        ..ServerConfig::default()
    };
    let s = start_server(Transport::Tcp, config, |b| {
        b.add(OpenServer::new(Impl)).add(ClosedServer::new(Impl))
    })
    .await;
    let client = |name: &str, credentials: Option<Credentials>| {
        let (cert, key) = ca.client(dir.path(), name);
        ClientConfig {
            tls: Some(TlsClient::new(Some(&ca.pem), Some((&cert, &key))).unwrap()),
            credentials,
            ..ClientConfig::default()
        }
    };

    let ch = within(
        "connect",
        Channel::connect_with(&s.addr, client("sensor-7", None)),
    )
    .await
    .unwrap();
    assert_eq!(
        within("hello", OpenClient::new(ch.clone()).hello())
            .await
            .unwrap(),
        "hello"
    );
    match within("secret", ClosedClient::new(ch).secret()).await {
        Err(RpcError::PermissionDenied(m)) => {
            assert_eq!(m, "user \"sensor-7\" may not call service auth.closed")
        }
        other => panic!("{other:?}"),
    }

    // A certificate of no certificate user: trusted, but nobody is logged in.
    let ch = within(
        "connect",
        Channel::connect_with(&s.addr, client("stranger", None)),
    )
    .await
    .unwrap();
    match within("hello", OpenClient::new(ch).hello()).await {
        Err(RpcError::Unauthenticated(m)) => assert!(m.contains("authentication required"), "{m}"),
        other => panic!("{other:?}"),
    }
    // ...who may still log in with a password.
    let ch = within(
        "connect",
        Channel::connect_with(&s.addr, client("stranger", alice_creds())),
    )
    .await
    .unwrap();
    assert_eq!(
        within("hello", OpenClient::new(ch).hello()).await.unwrap(),
        "hello"
    );

    // Credentials given over the certificate login are still checked.
    let wrong = Some(Credentials::Password {
        user: "sensor-7".into(),
        password: "guess".into(),
    });
    match within(
        "connect",
        Channel::connect_with(&s.addr, client("sensor-7", wrong)),
    )
    .await
    {
        Err(RpcError::Unauthenticated(m)) => {
            assert_eq!(m, "authentication failed for user \"sensor-7\"")
        }
        other => panic!("{other:?}"),
    }
    // The certificate's user cannot become someone else.
    match within(
        "connect",
        Channel::connect_with(&s.addr, client("sensor-7", alice_creds())),
    )
    .await
    {
        Err(RpcError::Unauthenticated(m)) => {
            assert!(
                m.contains("logged in as \"sensor-7\" by its client certificate"),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    s.shutdown().await;
}

fn alice_creds() -> Option<Credentials> {
    alice("alice-secret")
}
