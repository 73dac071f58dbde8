//! Authentication: who is calling, and which services they may call.
//!
//! A server with an [`Authenticator`] ([`ServerConfig::auth`](crate::ServerConfig::auth))
//! requires every connection to log in first: the client's first call is `login` of the
//! reserved service [`AUTH_SERVICE`] (`mw.auth` v1, method 0) with its [`Credentials`];
//! until it succeeds, every other call is refused with
//! [`RpcError::Unauthenticated`](crate::RpcError::Unauthenticated). A client with
//! [`ClientConfig::credentials`](crate::ClientConfig::credentials) logs in as part of
//! connecting (and reconnecting); over mutual TLS, a client certificate whose subject
//! common name the authenticator accepts
//! ([`Authenticator::authenticate_certificate`]) logs the connection in by itself. After
//! login, a call to a service the user may not call
//! is refused with [`RpcError::PermissionDenied`](crate::RpcError::PermissionDenied) and
//! the connection stays usable for what is allowed. PROTOCOL.md §4.8 has the bytes.
//!
//! Inside a service, what a user may do with each queue, topic or key is in their
//! [`Permissions`]. The server runs every call of a logged-in connection with its
//! [`Identity`] at hand: a service asks [`check`] (or [`caller`]) before it acts, and
//! answers a refusal with its own typed error carrying the [`Denied`]. On a server
//! without an authenticator there is no caller and everything is allowed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub mod pattern;

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

/// An authenticated user, the services they may call and what they may do inside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name.
    pub user: String,
    /// Service name patterns the user may call: a name, a prefix ending in `*`
    /// (`mw.queue*`), or `*` for every service.
    pub services: Vec<String>,
    /// What the user may do with queues, topics and keys.
    pub permissions: Permissions,
}

/// Something a user may be allowed to do with a named resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Send messages to a queue.
    QueueSend,
    /// Receive from a queue: consume, settle (ack, nack, reject, extend), peek.
    QueueReceive,
    /// Administer a queue: purge, delete, redrive, peek, close its consumers.
    QueueManage,
    /// Publish to a topic, set or clear its retained message.
    TopicPublish,
    /// Subscribe to topics (a subscription pattern must be covered by a grant).
    TopicSubscribe,
    /// Read keys (get, scan, watch: a scanned or watched prefix must lie within a grant).
    KvRead,
    /// Write keys (put, delete, incr).
    KvWrite,
}

impl Action {
    /// What the action does to its resource, for messages: `send to queue`.
    pub fn describe(self) -> &'static str {
        match self {
            Action::QueueSend => "send to queue",
            Action::QueueReceive => "receive from queue",
            Action::QueueManage => "manage queue",
            Action::TopicPublish => "publish to topic",
            Action::TopicSubscribe => "subscribe to",
            Action::KvRead => "read key",
            Action::KvWrite => "write key",
        }
    }
}

/// What a user may do with queues, topics and keys: for each [`Action`], the patterns it
/// is granted on. Queue and topic patterns are dot-separated with `*` and `>` wildcards
/// ([`pattern`]); kv patterns are key prefixes (`""` for every key). Nothing is granted
/// unless listed, and internal queue names only when a grant names them literally
/// ([`pattern::admits_queue`]).
///
/// ```
/// use mw_rpc::auth::{Action, Permissions};
/// let mut p = Permissions::default();
/// p.grant(Action::QueueSend, "orders.*");
/// assert!(p.allows(Action::QueueSend, "orders.new"));
/// assert!(!p.allows(Action::QueueReceive, "orders.new"));
/// assert!(!p.allows(Action::QueueSend, "payments.new"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    everything: bool,
    grants: BTreeMap<Action, Vec<String>>,
}

impl Permissions {
    /// Every action on every name, internal names included (an operator).
    pub fn everything() -> Permissions {
        Permissions {
            everything: true,
            grants: BTreeMap::new(),
        }
    }

    /// Grants `action` on the names `pattern` admits.
    pub fn grant(&mut self, action: Action, pattern: impl Into<String>) -> &mut Self {
        self.grants.entry(action).or_default().push(pattern.into());
        self
    }

    /// The patterns `action` is granted on.
    pub fn granted(&self, action: Action) -> &[String] {
        self.grants.get(&action).map_or(&[], Vec::as_slice)
    }

    /// Whether this is [`everything`](Self::everything).
    pub fn is_everything(&self) -> bool {
        self.everything
    }

    /// Whether `action` is allowed on `resource`: a queue name, a topic, a subscription
    /// pattern (for [`Action::TopicSubscribe`]) or a key / key prefix.
    pub fn allows(&self, action: Action, resource: &str) -> bool {
        if self.everything {
            return true;
        }
        let granted = self.granted(action);
        match action {
            Action::QueueSend | Action::QueueReceive | Action::QueueManage => {
                granted.iter().any(|p| pattern::admits_queue(p, resource))
            }
            Action::TopicPublish => granted.iter().any(|p| pattern::matches(p, resource)),
            Action::TopicSubscribe => granted.iter().any(|p| pattern::covers(p, resource)),
            Action::KvRead | Action::KvWrite => self.allows_key(action, resource.as_bytes()),
        }
    }

    /// [`allows`](Self::allows) for a kv key (or scanned prefix) as bytes, not
    /// necessarily UTF-8: a granted prefix must be a prefix of `key`.
    pub fn allows_key(&self, action: Action, key: &[u8]) -> bool {
        self.everything
            || self
                .granted(action)
                .iter()
                .any(|p| key.starts_with(p.as_bytes()))
    }
}

/// A refused operation: who, what, on which resource. Services carry it in their typed
/// errors (`permission denied: user "bob" may not send to queue orders.new`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("user {user:?} may not {} {resource}", action.describe())]
pub struct Denied {
    /// The user refused.
    pub user: String,
    /// What they tried.
    pub action: Action,
    /// On what: the queue, topic, pattern or key.
    pub resource: String,
}

tokio::task_local! {
    static CALLER: Arc<Identity>;
}

/// The logged-in user whose call is running, on a server with an authenticator; `None`
/// elsewhere (no authenticator, or not inside a call's handler).
pub fn caller() -> Option<Arc<Identity>> {
    CALLER.try_with(Arc::clone).ok()
}

/// Whether the running call's user may do `action` on `resource`: `Ok` without an
/// authenticated caller (a server without `auth`, or code outside a call).
///
/// # Errors
/// [`Denied`] naming the user, the action and the resource.
pub fn check(action: Action, resource: &str) -> Result<(), Denied> {
    match caller() {
        Some(who) if !who.permissions.allows(action, resource) => {
            Err(denied(&who, action, resource.to_string()))
        }
        _ => Ok(()),
    }
}

/// The refusal, logged for the operator (at `info`: a client can cause it at will).
fn denied(who: &Identity, action: Action, resource: String) -> Denied {
    let d = Denied {
        user: who.user.clone(),
        action,
        resource,
    };
    tracing::info!(user = %d.user, action = ?d.action, resource = %d.resource, "permission denied");
    d
}

/// [`check`] for a key of the kv store (bytes, not necessarily UTF-8): `action` is
/// [`Action::KvRead`] or [`Action::KvWrite`], allowed when a granted prefix is a prefix of
/// `key` (for a scan or watch, `key` is the prefix asked for).
///
/// # Errors
/// [`Denied`], the key shown as text (invalid UTF-8 replaced).
pub fn check_key(action: Action, key: &[u8]) -> Result<(), Denied> {
    match caller() {
        Some(who) if !who.permissions.allows_key(action, key) => Err(denied(
            &who,
            action,
            String::from_utf8_lossy(key).into_owned(),
        )),
        _ => Ok(()),
    }
}

/// [`check_key`] for a scanned or watched key prefix: allowed when a granted prefix is a
/// prefix of `prefix`; the refusal names it as `prefix "…"` (so an empty prefix, every
/// key, is visible in the message).
///
/// # Errors
/// [`Denied`] with the resource `prefix "…"` (invalid UTF-8 replaced).
pub fn check_prefix(action: Action, prefix: &[u8]) -> Result<(), Denied> {
    match caller() {
        Some(who) if !who.permissions.allows_key(action, prefix) => Err(denied(
            &who,
            action,
            format!("prefix {:?}", String::from_utf8_lossy(prefix)),
        )),
        _ => Ok(()),
    }
}

/// Whether the running call's user may do `action` on `resource`, without logging a
/// refusal: for filtering listings (what a user may see), where a "no" is not an
/// attempt. `true` without an authenticated caller.
pub fn allowed(action: Action, resource: &str) -> bool {
    caller().is_none_or(|who| who.permissions.allows(action, resource))
}

/// Runs `fut` as a call of `who` (what [`caller`] answers inside it).
pub(crate) fn scope<F: std::future::Future>(
    who: Arc<Identity>,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    CALLER.scope(who, fut)
}

/// Polls `stream` as items of a call of `who`.
pub(crate) struct ScopedStream<S> {
    pub(crate) who: Arc<Identity>,
    pub(crate) stream: S,
}

impl<S: futures::Stream + Unpin> futures::Stream for ScopedStream<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        let this = &mut *self;
        let stream = &mut this.stream;
        CALLER.sync_scope(this.who.clone(), || {
            futures::StreamExt::poll_next_unpin(stream, cx)
        })
    }
}

/// Services that reach past every per-name permission — `mw.admin` (every connection
/// of the server) and `mw.kv.replica` (a ring member's raw store and membership) — are
/// granted only by name (or [`Permissions::everything`]), never by a pattern.
pub const INTERNAL_SERVICES: &[&str] = &["mw.admin", "mw.kv.replica"];

impl Identity {
    /// Whether the user may call `service`: a pattern of [`services`](Self::services)
    /// admits it, and for one of the [`INTERNAL_SERVICES`] the list names it exactly.
    pub fn may_call(&self, service: &str) -> bool {
        if INTERNAL_SERVICES.contains(&service) && !self.permissions.is_everything() {
            return self.services.iter().any(|p| p == service);
        }
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

    /// The identity proven by a client certificate whose subject common name is
    /// `common_name`, the certificate verified against the server's client CA
    /// (`ServerConfig::tls` with client certificates required). `None` (the default) when
    /// certificates do not log anyone in: the client must then log in as usual.
    fn authenticate_certificate(&self, common_name: &str) -> Option<Identity> {
        let _ = common_name;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_patterns_match_names_and_prefixes() {
        let id = Identity {
            user: "a".into(),
            services: vec!["mw.queue".into(), "mw.pub*".into()],
            permissions: Permissions::default(),
        };
        assert!(id.may_call("mw.queue"));
        assert!(!id.may_call("mw.queue2"));
        assert!(id.may_call("mw.pubsub"));
        assert!(!id.may_call("mw.space"));
        let all = Identity {
            user: "b".into(),
            services: vec!["*".into()],
            permissions: Permissions::everything(),
        };
        assert!(all.may_call("anything"));
        assert!(all.may_call("mw.admin"));
        let wildcard = Identity {
            user: "c".into(),
            services: vec!["*".into(), "mw.*".into()],
            permissions: Permissions::default(),
        };
        assert!(wildcard.may_call("mw.queue"));
        assert!(!wildcard.may_call("mw.admin"), "internal: by name only");
        assert!(
            !wildcard.may_call("mw.kv.replica"),
            "internal: by name only"
        );
        let named = Identity {
            user: "d".into(),
            services: vec!["mw.admin".into()],
            permissions: Permissions::default(),
        };
        assert!(named.may_call("mw.admin"));
    }

    #[test]
    fn grants_are_per_action_and_kind_of_resource() {
        let mut p = Permissions::default();
        p.grant(Action::QueueSend, "orders.*")
            .grant(Action::QueueReceive, ">")
            .grant(Action::TopicSubscribe, "sensors.>")
            .grant(Action::TopicPublish, "sensors.*.temp")
            .grant(Action::KvRead, "config/");
        assert!(p.allows(Action::QueueSend, "orders.new"));
        assert!(!p.allows(Action::QueueSend, "orders"));
        assert!(!p.allows(Action::QueueManage, "orders.new"));
        assert!(p.allows(Action::QueueReceive, "payments"));
        assert!(!p.allows(Action::QueueReceive, "xmit.qm2"), "internal");
        assert!(!p.allows(Action::QueueReceive, "orders.dlq"), "internal");
        assert!(p.allows(Action::TopicSubscribe, "sensors.*.temp"));
        assert!(!p.allows(Action::TopicSubscribe, ">"));
        assert!(p.allows(Action::TopicPublish, "sensors.k1.temp"));
        assert!(p.allows(Action::KvRead, "config/app"));
        assert!(!p.allows(Action::KvRead, "conf"));
        assert!(!p.allows(Action::KvWrite, "config/app"));
        assert!(Permissions::everything().allows(Action::QueueManage, "xmit.qm2"));
        assert!(!Permissions::default().allows(Action::KvRead, ""));
    }

    #[tokio::test]
    async fn check_answers_for_the_caller_in_scope() {
        let mut p = Permissions::default();
        p.grant(Action::QueueSend, "orders.*");
        let bob = Arc::new(Identity {
            user: "bob".into(),
            services: vec!["*".into()],
            permissions: p,
        });
        assert!(
            check(Action::QueueManage, "x").is_ok(),
            "no caller: allowed"
        );
        let denied = scope(bob, async { check(Action::QueueReceive, "orders.new") }).await;
        let denied = denied.unwrap_err();
        assert_eq!(
            denied.to_string(),
            "user \"bob\" may not receive from queue orders.new"
        );
        assert_eq!(denied.action, Action::QueueReceive);
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
