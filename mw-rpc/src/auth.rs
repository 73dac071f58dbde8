//! Authentication: who is calling, and which services they may call.
//!
//! A server with an [`Authenticator`] ([`ServerConfig::auth`](crate::ServerConfig::auth))
//! requires every connection to log in first: the client's first call is `login` of the
//! reserved service [`AUTH_SERVICE`] (`mw.auth` v1, method 0) with its [`Credentials`];
//! until it succeeds, every other call is refused with
//! [`RpcError::Unauthenticated`](crate::RpcError::Unauthenticated). A client with
//! [`ClientConfig::credentials`](crate::ClientConfig::credentials) logs in as part of
//! connecting (and reconnecting). After login, a call to a service the user may not call
//! is refused with [`RpcError::PermissionDenied`](crate::RpcError::PermissionDenied) and
//! the connection stays usable for what is allowed. PROTOCOL.md §4.8 has the bytes.

use serde::{Deserialize, Serialize};

/// The reserved service a client logs in with.
pub const AUTH_SERVICE: &str = "mw.auth";
/// Its version.
pub const AUTH_VERSION: u32 = 1;
/// Its one method, `login(Credentials) -> String` (the user name).
pub const LOGIN_METHOD: u32 = 0;

/// What a client proves its identity with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credentials {
    /// A user name and password.
    Password {
        /// The user.
        user: String,
        /// The password (sent inside the connection: use TLS on a network).
        password: String,
    },
    /// A bearer token: `USER.SECRET`.
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { user, .. } => {
                write!(f, "Password {{ user: {user:?}, password: <hidden> }}")
            }
            Credentials::Token(_) => write!(f, "Token(<hidden>)"),
        }
    }
}

impl Credentials {
    /// The user these credentials claim to be (a token's part before the first `.`).
    pub fn user(&self) -> &str {
        match self {
            Credentials::Password { user, .. } => user,
            Credentials::Token(t) => t.split_once('.').map_or(t.as_str(), |(u, _)| u),
        }
    }
}

/// An authenticated user and the services they may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name.
    pub user: String,
    /// Service name patterns the user may call: a name, a prefix ending in `*`
    /// (`mw.queue*`), or `*` for every service.
    pub services: Vec<String>,
}

impl Identity {
    /// Whether the user may call `service`.
    pub fn may_call(&self, service: &str) -> bool {
        self.services.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => service.starts_with(prefix),
            None => p == service,
        })
    }
}

/// Checks credentials. Called on the blocking pool (password hashing is slow on purpose).
pub trait Authenticator: Send + Sync + std::fmt::Debug + 'static {
    /// The identity `credentials` prove, or why not. The error text is shown to the
    /// client as it is (say which user, never why exactly: `authentication failed for
    /// user "alice"`).
    ///
    /// # Errors
    /// Unknown user, wrong password or token.
    fn authenticate(&self, credentials: &Credentials) -> Result<Identity, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_patterns_match_names_and_prefixes() {
        let id = Identity {
            user: "a".into(),
            services: vec!["mw.queue".into(), "mw.pub*".into()],
        };
        assert!(id.may_call("mw.queue"));
        assert!(!id.may_call("mw.queue2"));
        assert!(id.may_call("mw.pubsub"));
        assert!(!id.may_call("mw.space"));
        let all = Identity {
            user: "b".into(),
            services: vec!["*".into()],
        };
        assert!(all.may_call("anything"));
    }

    #[test]
    fn login_arguments_are_the_bytes_protocol_md_shows() {
        let c = Credentials::Password {
            user: "alice".into(),
            password: "pw".into(),
        };
        assert_eq!(
            postcard::to_allocvec(&c).unwrap(),
            [0x00, 0x05, b'a', b'l', b'i', b'c', b'e', 0x02, b'p', b'w']
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Credentials::Password {
            user: "alice".into(),
            password: "alice-secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(Credentials::Token("ci.s3cr3t".into()).user(), "ci");
    }
}
