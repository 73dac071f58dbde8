//! Users, from a TOML file: `mw broker --auth FILE` (and `mw registry --auth FILE`,
//! `mw-kv serve --auth FILE`).
//!
//! ```toml
//! [users.alice]
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # from `mw passwd`
//! services = ["mw.queue", "mw.admin"]              # default: what the grants below need
//! queues = { send = ["orders.*"], receive = ["orders.*"] }
//!
//! [users.bob]
//! password = "$argon2id$v=19$..."
//! topics = { subscribe = ["sensors.>"] }
//! kv = { read = ["config/"] }                      # key prefixes; "" is every key
//!
//! [users.ci]
//! tokens = ["$argon2id$v=19$..."]                   # the SECRET of token `ci.SECRET`
//! admin = true                                     # everything, internal names too
//!
//! [users.sensor-7]
//! certificate = true     # a client certificate with common name sensor-7 logs in
//! topics = { publish = ["sensors.7.>"] }
//! ```
//!
//! Passwords and token secrets are stored only as argon2 hashes (PHC strings, made by
//! `mw passwd` or [`hash_password`]). Inside the services a user may do only what is
//! granted: `queues` (`send`, `receive`, `manage`) and `topics` (`publish`,
//! `subscribe`) take name patterns with `*` and `>` as subscriptions do, `kv` (`read`,
//! `write`) takes key prefixes. Internal queues (`xmit.*`, `durable.*`, `*.dlq`) are
//! granted only by patterns that name them literally (`*.dlq`, `xmit.>`), or by
//! `admin = true`. `examples/auth.toml` is a complete, commented example.

use std::collections::BTreeMap;
use std::path::Path;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use mw_rpc::auth::{pattern, Action, Authenticator, Credentials, Identity, Permissions};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    users: BTreeMap<String, User>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    password: Option<String>,
    #[serde(default)]
    tokens: Vec<String>,
    /// Absent: the services the user's grants need (see [`User::services`]).
    services: Option<Vec<String>>,
    /// Every action on every name, internal ones included.
    #[serde(default)]
    admin: bool,
    /// A client certificate whose subject common name is the user's name (verified
    /// against the server's `--tls-client-ca`) logs the user in.
    #[serde(default)]
    certificate: bool,
    #[serde(default)]
    queues: QueueGrants,
    #[serde(default)]
    topics: TopicGrants,
    #[serde(default)]
    kv: KvGrants,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueGrants {
    #[serde(default)]
    send: Vec<String>,
    #[serde(default)]
    receive: Vec<String>,
    #[serde(default)]
    manage: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicGrants {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KvGrants {
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

impl User {
    /// The user's grants, name patterns checked.
    fn permissions(&self) -> Result<Permissions, String> {
        if self.admin {
            return Ok(Permissions::everything());
        }
        let mut p = Permissions::default();
        let named = [
            ("queues.send", Action::QueueSend, &self.queues.send),
            ("queues.receive", Action::QueueReceive, &self.queues.receive),
            ("queues.manage", Action::QueueManage, &self.queues.manage),
            ("topics.publish", Action::TopicPublish, &self.topics.publish),
            (
                "topics.subscribe",
                Action::TopicSubscribe,
                &self.topics.subscribe,
            ),
        ];
        for (key, action, patterns) in named {
            for pat in patterns {
                pattern::check(pat).map_err(|e| format!("{key}: {e}"))?;
                p.grant(action, pat.clone());
            }
        }
        for prefix in &self.kv.read {
            p.grant(Action::KvRead, prefix.clone());
        }
        for prefix in &self.kv.write {
            p.grant(Action::KvWrite, prefix.clone());
        }
        Ok(p)
    }
}

impl User {
    /// The services the user may call: as listed, or, without a list, what the grants
    /// need — `mw.queue` for queue grants, `mw.pubsub` for topic grants, `mw.kv` and
    /// `mw.kv.ring` for kv grants, everything for `admin = true` — so that nothing is
    /// callable unless something is granted.
    fn services(&self) -> Vec<String> {
        if let Some(list) = &self.services {
            return list.clone();
        }
        if self.admin {
            return vec!["*".into()];
        }
        let q = &self.queues;
        let t = &self.topics;
        let mut out = Vec::new();
        if !(q.send.is_empty() && q.receive.is_empty() && q.manage.is_empty()) {
            out.push("mw.queue".to_string());
        }
        if !(t.publish.is_empty() && t.subscribe.is_empty()) {
            out.push("mw.pubsub".to_string());
        }
        if !(self.kv.read.is_empty() && self.kv.write.is_empty()) {
            out.push("mw.kv".to_string());
            out.push("mw.kv.ring".to_string());
        }
        out
    }
}

/// The users of an auth file, checked when loaded.
#[derive(Debug)]
pub struct AuthFile {
    users: BTreeMap<String, User>,
    permissions: BTreeMap<String, Permissions>,
}

impl AuthFile {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// One line naming the file and what is wrong: unreadable, not TOML of this shape,
    /// a user with neither password nor token, a hash that is not a PHC string.
    pub fn load(path: &Path) -> Result<AuthFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read auth file {}: {e}", path.display()))?;
        AuthFile::parse(&text).map_err(|e| format!("auth file {}: {e}", path.display()))
    }

    /// Parses the text of an auth file.
    ///
    /// # Errors
    /// As [`load`](Self::load), without the file name.
    pub fn parse(text: &str) -> Result<AuthFile, String> {
        let file: FileFormat = toml::from_str(text).map_err(|e| e.message().replace('\n', " "))?;
        if file.users.is_empty() {
            return Err("no [users.NAME] sections: nobody could log in".into());
        }
        for (name, user) in &file.users {
            if user.password.is_none() && user.tokens.is_empty() && !user.certificate {
                return Err(format!(
                    "user {name:?} has neither a password nor a token (nor certificate = true)"
                ));
            }
            if name.is_empty() {
                return Err("a user name cannot be empty ([users.\"\"])".into());
            }
            if name.contains('.') {
                return Err(format!(
                    "user {name:?}: a user name cannot contain '.' (tokens are USER.SECRET)"
                ));
            }
            for hash in user.password.iter().chain(&user.tokens) {
                PasswordHash::new(hash).map_err(|e| {
                    format!("user {name:?}: not a password hash ({e}); make one with `mw passwd`")
                })?;
            }
        }
        let permissions = file
            .users
            .iter()
            .map(|(name, user)| {
                Ok((
                    name.clone(),
                    user.permissions()
                        .map_err(|e| format!("user {name:?}: {e}"))?,
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(AuthFile {
            users: file.users,
            permissions,
        })
    }
}

fn verify(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(secret.as_bytes(), &h)
            .is_ok()
    })
}

impl Authenticator for AuthFile {
    fn authenticate(&self, credentials: &Credentials) -> Result<Identity, String> {
        let name = credentials.user();
        let failed = || format!("authentication failed for user {name:?}");
        let user = self.users.get(name).ok_or_else(failed)?;
        let ok = match credentials {
            Credentials::Password { password, .. } => user
                .password
                .as_deref()
                .is_some_and(|h| verify(password, h)),
            Credentials::Token(token) => token
                .split_once('.')
                .is_some_and(|(_, secret)| user.tokens.iter().any(|h| verify(secret, h))),
        };
        if !ok {
            return Err(failed());
        }
        Ok(self.identity(name, user))
    }

    fn authenticate_certificate(&self, common_name: &str) -> Option<Identity> {
        let user = self.users.get(common_name).filter(|u| u.certificate)?;
        Some(self.identity(common_name, user))
    }
}

impl AuthFile {
    fn identity(&self, name: &str, user: &User) -> Identity {
        Identity {
            user: name.to_string(),
            services: user.services(),
            permissions: self.permissions.get(name).cloned().unwrap_or_default(),
        }
    }
}

/// An argon2id hash of `secret` with a fresh salt, as a PHC string for an auth file.
///
/// ```
/// let hash = mw::auth::hash_password("alice-secret").unwrap();
/// assert!(hash.starts_with("$argon2id$"));
/// ```
///
/// # Errors
/// The hasher failed (it does not for any input this accepts).
pub fn hash_password(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> AuthFile {
        let alice = hash_password("alice-secret").unwrap();
        let token = hash_password("t0k3n").unwrap();
        AuthFile::parse(&format!(
            "[users.alice]\npassword = \"{alice}\"\nservices = [\"mw.queue\"]\n\
             [users.ci]\ntokens = [\"{token}\"]\n"
        ))
        .unwrap()
    }

    #[test]
    fn passwords_and_tokens_are_checked_against_their_hashes() {
        let f = file();
        let ok = f
            .authenticate(&Credentials::Password {
                user: "alice".into(),
                password: "alice-secret".into(),
            })
            .unwrap();
        assert_eq!(ok.services, ["mw.queue"]);
        let wrong = f.authenticate(&Credentials::Password {
            user: "alice".into(),
            password: "nope".into(),
        });
        assert_eq!(
            wrong.unwrap_err(),
            "authentication failed for user \"alice\""
        );
        let nobody = f.authenticate(&Credentials::Password {
            user: "mallory".into(),
            password: "x".into(),
        });
        assert_eq!(
            nobody.unwrap_err(),
            "authentication failed for user \"mallory\""
        );
        let token = f
            .authenticate(&Credentials::Token("ci.t0k3n".into()))
            .unwrap();
        // No grants and no list: nothing to call.
        assert_eq!((token.user.as_str(), token.services.len()), ("ci", 0));
        assert!(f
            .authenticate(&Credentials::Token("ci.wrong".into()))
            .is_err());
        assert!(f
            .authenticate(&Credentials::Token("alice.t0k3n".into()))
            .is_err());
    }

    #[test]
    fn files_that_cannot_work_are_refused() {
        for (text, says) in [
            ("", "nobody could log in"),
            ("[users.bob]\n", "neither a password nor a token"),
            ("[users.bob]\npassword = \"plain\"\n", "not a password hash"),
            ("[users.bob]\npasword = \"x\"\n", "unknown field"),
            ("[users.\"a.b\"]\npassword = \"x\"\n", "cannot contain '.'"),
            ("[users.\"\"]\npassword = \"x\"\n", "cannot be empty"),
            ("not toml", "expected"),
        ] {
            let e = AuthFile::parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        let hash = hash_password("x").unwrap();
        for (grants, says) in [
            (
                "queues = { send = [\"a.>.b\"] }",
                "queues.send: pattern \"a.>.b\"",
            ),
            (
                "topics = { subscribe = [\"\"] }",
                "topics.subscribe: a pattern cannot be empty",
            ),
            ("queues = { sned = [\"a\"] }", "unknown field `sned`"),
            ("kv = { read = \"a\" }", "invalid type"),
        ] {
            let text = format!("[users.bob]\npassword = \"{hash}\"\n{grants}\n");
            let e = AuthFile::parse(&text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn grants_become_the_users_permissions() {
        let hash = hash_password("pw").unwrap();
        let f = AuthFile::parse(&format!(
            "[users.alice]\npassword = \"{hash}\"\n\
             queues = {{ send = [\"orders.*\"], receive = [\"orders.*\"] }}\n\
             kv = {{ read = [\"\"], write = [\"app/\"] }}\n\
             [users.ops]\npassword = \"{hash}\"\nadmin = true\n"
        ))
        .unwrap();
        let identity = |user: &str| {
            f.authenticate(&Credentials::Password {
                user: user.into(),
                password: "pw".into(),
            })
            .unwrap()
        };
        let login = |user: &str| identity(user).permissions;
        // Without a services list, the services the grants need.
        assert_eq!(
            identity("alice").services,
            ["mw.queue", "mw.kv", "mw.kv.ring"]
        );
        assert_eq!(identity("ops").services, ["*"]);
        let alice = login("alice");
        assert!(alice.allows(Action::QueueSend, "orders.new"));
        assert!(alice.allows(Action::QueueReceive, "orders.new"));
        assert!(!alice.allows(Action::QueueManage, "orders.new"));
        assert!(!alice.allows(Action::QueueReceive, "orders.dlq"));
        assert!(!alice.allows(Action::TopicSubscribe, "orders.>"));
        assert!(alice.allows(Action::KvRead, "anything"));
        assert!(alice.allows(Action::KvWrite, "app/x"));
        assert!(!alice.allows(Action::KvWrite, "other"));
        let ops = login("ops");
        assert!(ops.is_everything());
        assert!(ops.allows(Action::QueueReceive, "xmit.qm2"));
    }
}
