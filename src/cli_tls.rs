//! TLS and login flags of the `mw` command (also used by `mw-kv`), shared by every verb:
//! [`TlsArgs`] and [`AuthArgs`], and the client settings every verb connects with.
//!
//! Servers (`mw broker`, `mw registry`): `--tls-cert FILE --tls-key FILE
//! [--tls-client-ca FILE]`, from flags only. Client verbs: `--tls-ca FILE [--tls-cert FILE
//! --tls-key FILE]`, or `--tls` alone to trust the platform's roots; a client flag not
//! given is taken from the environment (`MW_TLS_CA`, `MW_TLS_CERT`, `MW_TLS_KEY`; empty
//! counts as unset), so one `export MW_TLS_CA=ca.pem` serves every client verb and never
//! changes how a server in the same shell starts.
//! [`install_client`] sets the client settings once per process; every client verb
//! connects with [`client_config`].

use std::path::PathBuf;
use std::sync::OnceLock;

use mw_core::tls::{TlsClient, TlsServer};
use mw_rpc::ClientConfig;

/// The TLS flags (global: they may be given before or after the verb).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Client verbs: connect with TLS, trusting the CA certificates in this PEM file.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client verbs: connect with TLS, trusting the platform's root certificates
    /// (implied by --tls-ca and by a client --tls-cert).
    #[arg(long, global = true)]
    pub tls: bool,
    /// Servers: their certificate chain (PEM, leaf first). Client verbs: a client
    /// certificate, for servers that require one. Needs --tls-key.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Servers: require a client certificate signed by a CA in this PEM file (mutual TLS).
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
}

impl TlsArgs {
    fn identity(&self) -> Result<Option<(&PathBuf, &PathBuf)>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            (Some(_), None) => Err("--tls-cert needs --tls-key".into()),
            (None, Some(_)) => Err("--tls-key needs --tls-cert".into()),
        }
    }

    /// The server's TLS settings: `None` without `--tls-cert`.
    ///
    /// # Errors
    /// A half-given pair, a client-only flag, or a file that cannot be read or used.
    pub fn server(&self) -> Result<Option<TlsServer>, String> {
        if self.tls_ca.is_some() || self.tls {
            return Err(
                "--tls-ca and --tls are for client verbs; a server takes --tls-cert, --tls-key \
                 and --tls-client-ca"
                    .into(),
            );
        }
        let Some((cert, key)) = self.identity()? else {
            if self.tls_client_ca.is_some() {
                return Err("--tls-client-ca needs --tls-cert and --tls-key".into());
            }
            return Ok(None);
        };
        TlsServer::from_pem_files(cert, key, self.tls_client_ca.as_deref())
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// These flags, with the client flags not given taken from `MW_TLS_CA`,
    /// `MW_TLS_CERT` and `MW_TLS_KEY` (an empty value counts as unset).
    pub fn with_client_env(&self) -> TlsArgs {
        let env = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let mut args = self.clone();
        if args.tls_ca.is_none() {
            args.tls_ca = env("MW_TLS_CA");
        }
        if args.tls_cert.is_none() && args.tls_key.is_none() {
            args.tls_cert = env("MW_TLS_CERT");
            args.tls_key = env("MW_TLS_KEY");
        }
        args
    }

    /// The client's TLS settings: `None` (plaintext) unless `--tls`, `--tls-ca` or a
    /// client certificate is given (by flag or, see [`with_client_env`](Self::with_client_env),
    /// the environment).
    ///
    /// # Errors
    /// A half-given pair, a server-only flag, or a file that cannot be read or used.
    pub fn client(&self) -> Result<Option<TlsClient>, String> {
        if self.tls_client_ca.is_some() {
            return Err("--tls-client-ca is for servers; a client verb takes --tls-ca".into());
        }
        let this = self.with_client_env();
        let identity = this.identity().map_err(|e| {
            if self.tls_cert.is_none() && self.tls_key.is_none() {
                format!("{e} (MW_TLS_CERT and MW_TLS_KEY go together)")
            } else {
                e
            }
        })?;
        let this = &this;
        if !this.tls && this.tls_ca.is_none() && identity.is_none() {
            return Ok(None);
        }
        TlsClient::new(
            this.tls_ca.as_deref(),
            identity.map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .map(Some)
        .map_err(|e| e.to_string())
    }
}

/// The login flags (global): servers `--auth FILE`; client verbs `--user USER --password
/// PASSWORD` or `--token USER.SECRET`, each taken from `MW_USER`, `MW_PASSWORD`,
/// `MW_TOKEN` when not given (empty counts as unset).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// Servers: admit only the users of this file (TOML; see examples/auth.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub auth: Option<PathBuf>,
    /// Client verbs: log in as USER, with --password (or MW_USER).
    #[arg(long, global = true, value_name = "USER")]
    pub user: Option<String>,
    /// Client verbs: the password of --user (or MW_PASSWORD).
    #[arg(long, global = true, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Client verbs: log in with a token, USER.SECRET (or MW_TOKEN).
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

fn env_text(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl AuthArgs {
    /// The server's authenticator: `None` without `--auth`.
    ///
    /// # Errors
    /// A client flag given to a server, or an auth file that cannot be used.
    pub fn server(
        &self,
    ) -> Result<Option<std::sync::Arc<dyn mw_rpc::auth::Authenticator>>, String> {
        if self.user.is_some() || self.password.is_some() || self.token.is_some() {
            return Err(
                "--user, --password and --token are for client verbs; a server takes --auth FILE"
                    .into(),
            );
        }
        match &self.auth {
            None => Ok(None),
            Some(path) => Ok(Some(std::sync::Arc::new(crate::auth::AuthFile::load(
                path,
            )?))),
        }
    }

    /// The client's credentials: `None` unless a user or token is given (by flag or
    /// environment).
    ///
    /// # Errors
    /// `--auth` given to a client, a user without a password or the reverse.
    pub fn client(&self) -> Result<Option<mw_rpc::auth::Credentials>, String> {
        use mw_rpc::auth::Credentials;
        if self.auth.is_some() {
            return Err(
                "--auth is for servers; a client verb takes --user/--password or --token".into(),
            );
        }
        if self.token.is_some() && (self.user.is_some() || self.password.is_some()) {
            return Err("give --token or --user and --password, not both".into());
        }
        let token = self.token.clone().or_else(|| env_text("MW_TOKEN"));
        let user = self.user.clone().or_else(|| env_text("MW_USER"));
        let password = self.password.clone().or_else(|| env_text("MW_PASSWORD"));
        match (token, user, password) {
            (Some(t), _, _) if self.user.is_none() && self.password.is_none() => {
                Ok(Some(Credentials::Token(t)))
            }
            (_, Some(user), Some(password)) => Ok(Some(Credentials::Password { user, password })),
            (_, Some(_), None) => Err("--user needs --password (or MW_PASSWORD)".into()),
            (_, None, Some(_)) => Err("--password needs --user (or MW_USER)".into()),
            (Some(t), None, None) => Ok(Some(Credentials::Token(t))),
            (None, None, None) => Ok(None),
        }
    }
}

static CREDENTIALS: OnceLock<Option<mw_rpc::auth::Credentials>> = OnceLock::new();

/// Sets the credentials every client verb of this process logs in with (the first call
/// wins).
pub fn install_credentials(credentials: Option<mw_rpc::auth::Credentials>) {
    let _ = CREDENTIALS.set(credentials);
}

static CLIENT_TLS: OnceLock<Option<TlsClient>> = OnceLock::new();

/// Sets the TLS settings every client verb of this process connects with (the first
/// call wins).
pub fn install_client(tls: Option<TlsClient>) {
    let _ = CLIENT_TLS.set(tls);
}

/// The client settings of this process's verbs: defaults, with the TLS settings of
/// [`install_client`], and reconnecting on the next call after the connection was closed
/// (a broker's idle timeout closes the connection of a verb waiting on slow stdin; calls
/// in flight when a connection breaks still fail, as mw cannot know whether they ran).
pub fn client_config() -> ClientConfig {
    ClientConfig {
        tls: CLIENT_TLS.get().cloned().flatten(),
        credentials: CREDENTIALS.get().cloned().flatten(),
        reconnect: true,
        ..ClientConfig::default()
    }
}

/// [`client_config`] for the event bus client ([`mw_pubsub::RemoteConfig`]'s defaults
/// otherwise).
pub fn bus_config() -> mw_pubsub::RemoteConfig {
    let mut config = mw_pubsub::RemoteConfig::default();
    let client = client_config();
    config.client.tls = client.tls;
    config.client.reconnect = client.reconnect;
    config.client.credentials = client.credentials;
    config
}

/// The warning a server prints when it listens on `addr`, reachable from other machines,
/// while every client that connects may do everything (no client certificates required):
/// `None` for loopback, Unix-socket and in-process addresses, and with mutual TLS.
///
/// With `authenticated` (`--auth`), only an unencrypted listener is warned about.
pub fn exposure_warning(
    addr: &str,
    tls: Option<&TlsServer>,
    authenticated: bool,
) -> Option<String> {
    let Ok(mw_core::Address::Tcp(hostport)) = addr.parse::<mw_core::Address>() else {
        return tls.is_some().then(|| {
            format!(
                "WARNING: the TLS flags apply to TCP only: connections to {addr} stay \
                 plaintext and need no client certificate (protect the socket file's \
                 permissions instead)"
            )
        });
    };
    if tls.is_some_and(TlsServer::requires_client_certificates) {
        return None;
    }
    let host = hostport
        .rsplit_once(':')
        .map_or(hostport.as_str(), |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if loopback || (authenticated && tls.is_some()) {
        return None;
    }
    if authenticated {
        return Some(format!(
            "WARNING: listening on {addr}, reachable from other machines, without TLS: \
             passwords, tokens and traffic cross the network unencrypted (add --tls-cert \
             and --tls-key)."
        ));
    }
    Some(format!(
        "WARNING: listening on {addr}, reachable from other machines: every client that can \
         connect may read and change everything this server holds (no --auth). Require \
         logins (--auth FILE) or client certificates (--tls-client-ca), or listen on \
         127.0.0.1 or a unix: socket.{}",
        if tls.is_none() {
            " Traffic is not encrypted (no --tls-cert)."
        } else {
            ""
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_non_loopback_tcp_without_client_certificates_is_warned_about() {
        for quiet in [
            "127.0.0.1:7800",
            "[::1]:7800",
            "localhost:7800",
            "unix:/tmp/s",
            "inproc:x",
        ] {
            assert!(exposure_warning(quiet, None, false).is_none(), "{quiet}");
        }
        for loud in [
            "0.0.0.0:7800",
            "10.0.0.5:7800",
            "[::]:7800",
            "broker.example:7800",
        ] {
            let w = exposure_warning(loud, None, false).unwrap_or_default();
            assert!(
                w.starts_with("WARNING: listening on") && w.contains("not encrypted"),
                "{loud}: {w}"
            );
        }
    }

    #[test]
    fn half_given_or_misplaced_flags_are_refused() {
        let cert_only = TlsArgs {
            tls_cert: Some("c.pem".into()),
            ..TlsArgs::default()
        };
        assert_eq!(
            cert_only.server().unwrap_err(),
            "--tls-cert needs --tls-key"
        );
        assert_eq!(
            cert_only.client().unwrap_err(),
            "--tls-cert needs --tls-key"
        );
        let ca = TlsArgs {
            tls_ca: Some("ca.pem".into()),
            ..TlsArgs::default()
        };
        assert!(ca.server().unwrap_err().contains("for client verbs"));
        let client_ca = TlsArgs {
            tls_client_ca: Some("ca.pem".into()),
            ..TlsArgs::default()
        };
        assert!(client_ca.client().unwrap_err().contains("for servers"));
        assert!(client_ca.server().unwrap_err().contains("needs --tls-cert"));
        let none = TlsArgs::default();
        assert!(none.server().unwrap().is_none());
        assert!(none.client().unwrap().is_none());
    }
}
