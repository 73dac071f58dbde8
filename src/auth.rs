//! Users, from a TOML file: `mw broker --auth FILE` (and `mw registry --auth FILE`).
//!
//! ```toml
//! [users.alice]
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # from `mw passwd`
//! services = ["mw.queue", "mw.admin"]              # default: every service
//!
//! [users.ci]
//! tokens = ["$argon2id$v=19$..."]                   # the SECRET of token `ci.SECRET`
//! ```
//!
//! Passwords and token secrets are stored only as argon2 hashes (PHC strings, made by
//! `mw passwd` or [`hash_password`]). `examples/auth.toml` is a complete, commented
//! example. What users may do inside a service (which queues, topics, keys) is not
//! checked yet: a user admitted to `mw.queue` may use every queue.

use std::collections::BTreeMap;
use std::path::Path;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use mw_rpc::auth::{Authenticator, Credentials, Identity};
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
    #[serde(default = "every_service")]
    services: Vec<String>,
}

fn every_service() -> Vec<String> {
    vec!["*".into()]
}

/// The users of an auth file, checked when loaded.
#[derive(Debug)]
pub struct AuthFile {
    users: BTreeMap<String, User>,
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
            if user.password.is_none() && user.tokens.is_empty() {
                return Err(format!("user {name:?} has neither a password nor a token"));
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
        Ok(AuthFile { users: file.users })
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
        Ok(Identity {
            user: name.to_string(),
            services: user.services.clone(),
        })
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
        assert_eq!(
            (token.user.as_str(), &token.services[..]),
            ("ci", &["*".to_string()][..])
        );
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
            ("not toml", "expected"),
        ] {
            let e = AuthFile::parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
