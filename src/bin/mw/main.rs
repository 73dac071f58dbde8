//! The `mw` command: hosts daemons (registry, broker) and small client verbs.
//!
//! Thin by design: it parses flags and calls the library.

mod admin;
mod input;
mod pubsub;
mod queue;
mod space;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mw",
    version,
    about = "mw middleware: daemons and client verbs"
)]
struct Cli {
    /// Log lines on stderr as `text` (colored only on a terminal) or `json` (one object
    /// per line). Levels: RUST_LOG (default `info` for `broker` and `registry`, `error`
    /// for client verbs).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: mw::logs::LogFormat,
    #[command(flatten)]
    tls: mw::cli_tls::TlsArgs,
    #[command(flatten)]
    auth: mw::cli_tls::AuthArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tour every part of mw in one process, on a temporary data directory (no servers needed).
    Demo,
    /// Run a service registry (like rpcbind): servers register name+version -> address.
    Registry {
        /// Address to listen on: HOST:PORT or unix:PATH.
        #[arg(long, default_value = "127.0.0.1:7700")]
        addr: String,
        /// Serve Prometheus metrics on http://ADDR/metrics; off when absent.
        #[arg(long, value_name = "HOST:PORT")]
        metrics_addr: Option<String>,
    },
    /// Run the broker: queues, the event bus, the tuple space and a registry on one address.
    Broker(BrokerOpts),
    /// Publish MESSAGE (or each line of stdin, a file, framed stdin) to TOPIC on a broker's
    /// event bus; prints how many subscribers each event reached.
    Pub(pubsub::PubArgs),
    /// Subscribe to PATTERN on a broker and print `TOPIC BODY` lines.
    Sub(pubsub::SubArgs),
    /// Send MESSAGE (or each line of stdin, a file, framed stdin) to QUEUE on a broker;
    /// prints each message id once stored.
    Send(queue::SendArgs),
    /// Receive from QUEUE on a broker: print each message body, then acknowledge it.
    Recv(queue::RecvArgs),
    /// List a broker's queues: depth, in flight, consumers, dead letters.
    Queues(queue::QueuesArgs),
    /// Administer a broker's queues: list, peek, purge, delete, redrive.
    Queue {
        #[command(subcommand)]
        verb: admin::QueueVerb,
    },
    /// Administer a broker's durable subscriptions: list, delete.
    Durable {
        #[command(subcommand)]
        verb: admin::DurableVerb,
    },
    /// Administer a broker's client connections: list, close.
    Conn {
        #[command(subcommand)]
        verb: admin::ConnVerb,
    },
    /// Administer a broker's queue consumers: list, close.
    Consumer {
        #[command(subcommand)]
        verb: admin::ConsumerVerb,
    },
    /// Administer a broker's retained messages: clear.
    Retained {
        #[command(subcommand)]
        verb: admin::RetainedVerb,
    },
    /// Use a broker's tuple space: out, rd, in, rdp, inp, notify (tuples and patterns as JSON).
    #[command(after_help = SPACE_HELP)]
    Space {
        #[command(subcommand)]
        verb: space::Op,
    },
    /// Print an argon2 hash of PASSWORD (or of the first line of stdin) for an auth file
    /// (`password = "..."`, or a token's secret in `tokens = [...]`).
    Passwd {
        /// The password; read from stdin when absent (keeps it out of shell history).
        #[arg(value_name = "PASSWORD")]
        secret: Option<String>,
    },
    /// Show what a registry knows.
    Lookup {
        /// The registry's address.
        #[arg(long)]
        registry: String,
        /// Print a JSON array of objects (name, version, addr, ttl_ms).
        #[arg(long)]
        json: bool,
    },
}

/// `mw broker` flags.
#[derive(Debug, clap::Args)]
struct BrokerOpts {
    /// Address to listen on: HOST:PORT or unix:PATH.
    #[arg(long, default_value = mw::cli_args::DEFAULT_BROKER)]
    addr: String,
    /// Data directory for persistent queues (created if missing).
    #[arg(long, default_value = "mw-data")]
    data: std::path::PathBuf,
    /// Forward queues matching PATTERN to the broker at ADDR (store and forward):
    /// `orders.eu=HOST:PORT` (one queue), `orders.*=...` (a prefix), `*=...` (the
    /// rest). Repeat for more routes; the most specific match wins.
    #[arg(long = "route", value_name = "PATTERN=ADDR")]
    routes: Vec<mw::queue::forward::Route>,
    /// Connect to the routes' next brokers over TLS, trusting the CA certificates in
    /// FILE (PEM).
    #[arg(long, value_name = "FILE")]
    route_tls_ca: Option<std::path::PathBuf>,
    /// Present this client certificate (PEM) to the routes' next brokers, for those that
    /// require client certificates (--tls-client-ca); with --route-tls-key.
    #[arg(long, value_name = "FILE", requires = "route_tls_key")]
    route_tls_cert: Option<std::path::PathBuf>,
    /// The key of --route-tls-cert (PEM, unencrypted).
    #[arg(long, value_name = "FILE", requires = "route_tls_cert")]
    route_tls_key: Option<std::path::PathBuf>,
    /// Log in to the routes' next brokers (started with --auth) with this token,
    /// USER.SECRET; or MW_ROUTE_TOKEN. The user needs `queues.send` on the routed queues.
    #[arg(
        long,
        value_name = "USER.SECRET",
        env = "MW_ROUTE_TOKEN",
        hide_env_values = true
    )]
    route_token: Option<String>,
    /// When confirmed sends are fsynced: `always` (group commit: nothing acknowledged
    /// is lost even on power failure), `interval:MS`, or `never` (leave it to the OS).
    #[arg(long, default_value = "always", value_parser = parse_fsync)]
    fsync: mw::queue::FsyncPolicy,
    /// Seconds a delivery stays invisible to other consumers before it is redelivered
    /// unless acked.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    visibility_timeout: u64,
    /// Deliveries after which a message moves to its queue's dead-letter queue
    /// (`QUEUE.dlq`); 0 means never.
    #[arg(long, value_name = "N", default_value_t = 5)]
    max_attempts: u32,
    /// Refuse new sends to a queue holding this many messages (a clear `queue full`
    /// error); unlimited when absent.
    #[arg(long, value_name = "N")]
    max_queue_len: Option<u64>,
    /// Largest queue message body; a larger send is refused, naming the limit. Bytes, or
    /// with a unit: 512KiB, 4MiB (at most 64 MiB less 4 KiB).
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = mw::cli_args::parse_size)]
    max_message_size: usize,
    /// Largest published event payload; a larger publish is refused, naming the limit.
    /// At least 512 bytes below --max-message-size (durable subscriptions store events as
    /// queue messages).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = mw::cli_args::parse_size)]
    max_event_size: usize,
    /// Largest frame accepted from a client; at least 64 KiB above --max-message-size.
    /// Clients refuse to send frames over their own limit (16 MiB by default).
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = mw::cli_args::parse_size)]
    max_frame_size: usize,
    /// Concurrent client connections; further connections are refused (`server busy:
    /// connection limit N reached`). Lowered at start to what the open-file limit allows.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Concurrent TCP connections from one client IP address; further ones are refused.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_ip: u64,
    /// Close client connections that hold no call, consumer or subscription for SECS
    /// seconds (they are told GoAway first); off when absent.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: Option<u64>,
    /// Serve Prometheus metrics on http://ADDR/metrics (queues, calls, connections, bus,
    /// routes); off when absent.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// Event bus subscriptions (transient plus durable) held at once.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    max_subscriptions: usize,
    /// Topics holding a retained message at once.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_retained_topics: usize,
}

impl BrokerOpts {
    fn into_config(self) -> Result<(String, mw::broker::BrokerConfig), String> {
        if self.routes.is_empty() && self.route_tls_ca.is_some() {
            return Err("--route-tls-ca needs a --route".into());
        }
        let mut config = mw::broker::BrokerConfig::new(self.data);
        config.routes = self.routes.into_iter().collect();
        let identity = self
            .route_tls_cert
            .as_deref()
            .zip(self.route_tls_key.as_deref());
        match (&self.route_tls_ca, identity) {
            (Some(ca), identity) => {
                let tls = mw::core::tls::TlsClient::new(Some(ca.as_path()), identity)
                    .map_err(|e| format!("--route-tls-ca: {e}"))?;
                config.route_client.tls = Some(tls);
            }
            (None, Some(_)) => {
                return Err(
                    "--route-tls-cert needs --route-tls-ca (routes use TLS only with it)".into(),
                )
            }
            (None, None) => {}
        }

        if let Some(token) = self.route_token.filter(|t| !t.is_empty()) {
            if !token.contains('.') {
                return Err("--route-token must be USER.SECRET".into());
            }
            config.route_client.credentials = Some(mw::rpc::auth::Credentials::Token(token));
        }
        config.queue.fsync = self.fsync;
        config.queue.visibility_timeout = std::time::Duration::from_secs(self.visibility_timeout);
        config.queue.max_attempts = (self.max_attempts > 0).then_some(self.max_attempts);
        config.queue.max_queue_len = self.max_queue_len;
        config.queue.max_message_size = self.max_message_size;
        config.pubsub.max_event_size = self.max_event_size;
        config.pubsub.max_subscriptions = self.max_subscriptions;
        config.pubsub.max_retained_topics = self.max_retained_topics;
        config.server.transport.max_frame_len = self.max_frame_size;
        config.server.max_connections = usize::try_from(self.max_connections).unwrap_or(usize::MAX);
        config.server.max_connections_per_ip =
            usize::try_from(self.max_connections_per_ip).unwrap_or(usize::MAX);
        config.server.idle_timeout = self.idle_timeout.map(std::time::Duration::from_secs);
        config.server.metrics_addr = self.metrics_addr;
        Ok((self.addr, config))
    }
}

const SPACE_HELP: &str = "\
Tuples are JSON arrays of strings, ints, floats, booleans and {\"bytes\": \"<hex>\"}:
  mw space out --broker 127.0.0.1:7800 '[\"task\", 7, 2.5, true]'
Patterns are arrays of the same length; null matches any value and {\"?\": \"int\"} any int
(also string, float, bool, bytes); other values must be equal (7 is an int, 7.0 a float):
  mw space in --broker 127.0.0.1:7800 --timeout 5 '[\"task\", {\"?\": \"int\"}, null, null]'
Found tuples are printed as JSON on one line; nothing found prints `no matching tuple`
and exits with status 1.";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let daemon = matches!(cli.command, Command::Broker(_) | Command::Registry { .. });
    mw::logs::init(cli.log_format, if daemon { "info" } else { "error" });
    // TLS settings: a server's own, or the ones every client verb connects with.
    let server_tls = if daemon {
        cli.tls.server()
    } else {
        cli.tls.client().map(|c| {
            mw::cli_tls::install_client(c);
            None
        })
    };
    let server_tls = match server_tls {
        Ok(t) => t,
        Err(e) => return mw::run::exit_boxed("mw", Err(e.into())),
    };
    let server_auth = if daemon {
        cli.auth.server()
    } else {
        cli.auth.client().map(|c| {
            mw::cli_tls::install_credentials(c);
            None
        })
    };
    let server_auth = match server_auth {
        Ok(a) => a,
        Err(e) => return mw::run::exit_boxed("mw", Err(e.into())),
    };
    let listen = match &cli.command {
        Command::Registry { addr, .. } => Some(addr.as_str()),
        Command::Broker(opts) => Some(opts.addr.as_str()),
        _ => None,
    };
    if let Some(warning) = listen
        .and_then(|a| mw::cli_tls::exposure_warning(a, server_tls.as_ref(), server_auth.is_some()))
    {
        tracing::warn!("{warning}");
    }
    let result: Result<(), mw::run::BoxError> = match cli.command {
        Command::Registry { addr, metrics_addr } => {
            tracing::info!(version = env!("CARGO_PKG_VERSION"), %addr, tls = server_tls.is_some(), "registry starting");
            let config = mw::rpc::ServerConfig {
                metrics_addr,
                tls: server_tls,
                auth: server_auth,
                ..Default::default()
            };
            let server = mw::rpc::Server::builder()
                .config(config)
                .add(mw::rpc::registry::RegistryServer::new(
                    mw::rpc::registry::RegistryImpl::new(),
                ))
                .build();
            mw::run::serve(server, &addr, None, &[])
                .await
                .map_err(Into::into)
        }
        Command::Lookup { registry, json } => lookup(&registry, json).await,
        Command::Passwd { secret } => passwd(secret),
        Command::Space { verb } => space::run(verb, &mut std::io::stdout()).await,
        Command::Send(args) => queue::send(args, &mut std::io::stdout()).await,
        Command::Recv(args) => queue::recv(args, &mut std::io::stdout()).await,
        Command::Queues(args) => queue::queues(args, &mut std::io::stdout()).await,
        Command::Queue { verb } => admin::queue(verb, &mut std::io::stdout()).await,
        Command::Durable { verb } => admin::durable(verb, &mut std::io::stdout()).await,
        Command::Conn { verb } => admin::conn(verb, &mut std::io::stdout()).await,
        Command::Consumer { verb } => admin::consumer(verb, &mut std::io::stdout()).await,
        Command::Retained { verb } => admin::retained(verb, &mut std::io::stdout()).await,
        Command::Demo => demo().await,
        Command::Broker(opts) => {
            let (addr, mut config) = match opts.into_config() {
                Ok(x) => x,
                Err(e) => return mw::run::exit_boxed("mw", Err(e.into())),
            };
            config.server.tls = server_tls;
            config.server.auth = server_auth;
            broker(&addr, config).await
        }
        Command::Pub(args) => pubsub::publish(args, &mut std::io::stdout()).await,
        Command::Sub(args) => pubsub::subscribe(args, &mut std::io::stdout()).await,
    };
    mw::run::exit_boxed("mw", result)
}

async fn lookup(registry: &str, json: bool) -> Result<(), mw::run::BoxError> {
    let channel = mw::rpc::Channel::connect_with(registry, mw::cli_tls::client_config()).await?;
    let client = mw::rpc::registry::RegistryClient::new(channel);
    let list = client.list().await?;
    if json {
        let rows: Vec<_> = list
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "version": r.version, "addr": r.addr, "ttl_ms": r.ttl_ms,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    for r in list {
        println!("{} v{} {} (ttl {} ms)", r.name, r.version, r.addr, r.ttl_ms);
    }
    Ok(())
}

fn passwd(password: Option<String>) -> Result<(), mw::run::BoxError> {
    let password = match password {
        Some(p) => p,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
    };
    if password.is_empty() {
        return Err("an empty password cannot be used".into());
    }
    println!("{}", mw::auth::hash_password(&password)?);
    Ok(())
}

async fn demo() -> Result<(), mw::run::BoxError> {
    let dir = tempfile::tempdir()?;
    let mut out = std::io::stdout();
    mw::tour::run(&mut out, dir.path()).await
}

/// `always`, `never` or `interval:MS`.
fn parse_fsync(s: &str) -> Result<mw::queue::FsyncPolicy, String> {
    match s {
        "always" => Ok(mw::queue::FsyncPolicy::Always),
        "never" => Ok(mw::queue::FsyncPolicy::Never),
        _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
            Some(Ok(ms)) if ms > 0 => Ok(mw::queue::FsyncPolicy::Interval(
                std::time::Duration::from_millis(ms),
            )),
            _ => Err(format!(
                "{s:?}: expected always, never or interval:MS (MS > 0)"
            )),
        },
    }
}

async fn broker(addr: &str, mut config: mw::broker::BrokerConfig) -> Result<(), mw::run::BoxError> {
    let opening = std::time::Instant::now();
    for note in mw::broker::fit_open_files(&mut config) {
        if note.starts_with("open-file limit raised") {
            tracing::info!("{note}");
        } else {
            tracing::warn!("{note}");
        }
    }
    let summary = mw::logs::BrokerSummary::of(&config, addr);
    let broker = mw::broker::open(config).await?;
    summary.log(&broker, opening.elapsed());
    let space = broker.space.clone();
    // Callers blocked in `rd` / `in` would hold the drain until its timeout: wake them
    // (they are told the space closed) before draining.
    let wake_blocked = async move {
        if let Err(e) = space.close().await {
            tracing::error!(error = %e, "closing the tuple space failed");
        }
    };
    mw::run::serve_with(broker.server, addr, None, &[], wake_blocked).await?;
    // Messages a forwarder holds stay in its transmission queue for the next start.
    broker.router.shutdown().await;
    // The server has drained: sync what is pending and release the data directory.
    broker.queues.close().await?;
    Ok(())
}
