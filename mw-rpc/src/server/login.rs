//! The login call (`mw.auth` v1, [`crate::auth`]): credentials checked off the
//! connection's task, the identity remembered for the connection, failures answered ever
//! more slowly per client address.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;

use super::call_state::{CallState, Outcome};
use super::connection::{ConnState, Identity};
use super::instance::Shared;
use crate::auth::{Authenticator, Credentials};
use crate::error::ServerError;

impl ConnState {
    /// Runs a login: checks the credentials on the blocking pool, remembers the identity
    /// on success; a failure is answered after a delay that doubles with each recent
    /// failure from the same address (up to 5 s).
    pub(super) fn login(&mut self, id: u64, args: Bytes, auth: Arc<dyn Authenticator>) {
        self.calls.insert(
            id,
            CallState {
                awaits_result: true,
                ..CallState::default()
            },
        );
        let identity = self.identity.clone();
        let shared = self.shared.clone();
        let host = self.peer_host.clone();
        let fut = async move {
            let outcome = match postcard::from_bytes::<Credentials>(&args) {
                Err(e) => Outcome::Reply(Err(ServerError::BadArguments(e.to_string()))),
                // Logged in already (by a client certificate): another user is not let in
                // over it (the same user's credentials are still checked, below).
                Ok(creds) if identity.get().is_some_and(|who| who.user != creds.user()) => {
                    other_user(&identity, &creds)
                }
                Ok(creds) => authenticate(creds, auth, &identity, &shared, host).await,
            };
            (id, outcome)
        };
        self.inflight.push(fut.boxed());
    }
}

/// The refusal of credentials for another user than the one a client certificate
/// logged in.
fn other_user(identity: &Identity, creds: &Credentials) -> Outcome {
    let who = identity.get().map(|w| w.user.clone()).unwrap_or_default();
    Outcome::Reply(Err(ServerError::Unauthenticated(format!(
        "this connection is logged in as {who:?} by its client certificate; \
         it cannot log in as {:?}",
        creds.user()
    ))))
}

async fn authenticate(
    creds: Credentials,
    auth: Arc<dyn Authenticator>,
    identity: &Identity,
    shared: &Shared,
    host: String,
) -> Outcome {
    let user = creds.user().to_string();
    // Password hashing is slow on purpose: off the connection's task.
    match tokio::task::spawn_blocking(move || auth.authenticate(&creds)).await {
        Ok(Ok(who)) => {
            let body = postcard::to_allocvec(&who.user).unwrap_or_default();
            tracing::info!(user = %who.user, peer = %host, "logged in");
            let _ = identity.set(Arc::new(who));
            Outcome::Reply(Ok(Bytes::from(body)))
        }
        other => {
            let why = match other {
                Ok(Err(why)) => why,
                _ => format!("authentication failed for user {user:?}"),
            };
            let failures = shared
                .login_failures
                .count(&host, std::time::Instant::now());
            tracing::warn!(user = %user, peer = %host, failures, "login failed");
            let delay = Duration::from_millis(100)
                .saturating_mul(1 << failures.saturating_sub(1).min(6))
                .min(Duration::from_secs(5));
            tokio::time::sleep(delay).await;
            Outcome::Reply(Err(ServerError::Unauthenticated(why)))
        }
    }
}
