//! Logging for the `mw` daemons: the `tracing` subscriber (`--log-format text|json`, no
//! colour codes unless stderr is a terminal) and the broker's start-up summary.
//!
//! What is logged at `info` for an operator: the start-up summary (version, data
//! directory, what recovery found and how long opening took, addresses, limits),
//! connections opened and closed (peer, calls, duration, reason), refused requests
//! (oversized messages and events, full queues, refused connections at `warn`), slow
//! consumers starting to lose events or being disconnected, store-and-forward routes
//! going down (`warn`) and up. Trouble is `warn` or `error`.

use std::io::IsTerminal;
use std::time::Duration;

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`).
    Json,
}

/// Installs the global subscriber writing to stderr in `format`, with the levels of
/// `RUST_LOG`, or `default_level` (such as `info`) when it is unset or invalid.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A failed write (stderr's reader went away) must not bring the daemon down:
        // reporting it would `eprintln!`, which panics on that same broken stderr.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// The settings half of the broker's start-up summary, taken before the configuration
/// is handed to [`crate::broker::open`].
#[derive(Debug, Clone)]
pub struct BrokerSummary {
    addr: String,
    data_dir: String,
    fsync: String,
    routes: usize,
    max_message_size: usize,
    max_event_size: usize,
    max_frame_size: usize,
    max_connections: usize,
    /// `off`, `on`, or `mutual` (client certificates required).
    tls: &'static str,
    auth: bool,
}

impl BrokerSummary {
    /// What `config` says, for a broker listening on `addr`.
    pub fn of(config: &crate::broker::BrokerConfig, addr: &str) -> Self {
        BrokerSummary {
            addr: addr.to_string(),
            data_dir: config.data_dir.display().to_string(),
            fsync: format!("{:?}", config.queue.fsync),
            routes: config.routes.routes().len(),
            max_message_size: config.queue.max_message_size,
            max_event_size: config.pubsub.max_event_size,
            max_frame_size: config.server.transport.max_frame_len,
            max_connections: config.server.max_connections,
            tls: match &config.server.tls {
                None => "off",
                Some(t) if t.requires_client_certificates() => "mutual",
                Some(_) => "on",
            },
            auth: config.server.auth.is_some(),
        }
    }

    /// Logs the summary at `info`: version, data directory, what recovery found and
    /// how long opening took, the address, the limits.
    pub fn log(&self, broker: &crate::broker::Broker, opening: Duration) {
        let r = broker.queues.recovery_report();
        let torn = r
            .torn_tail
            .as_ref()
            .map(|t| format!("{t:?}"))
            .unwrap_or_else(|| "none".into());
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            data_dir = %self.data_dir,
            addr = %self.addr,
            tls = self.tls,
            auth = self.auth,
            fsync = %self.fsync,
            routes = self.routes,
            segments = r.segments,
            records = r.records,
            live_messages = r.live_messages,
            queues = broker.queues.queues().len(),
            torn_tail = %torn,
            open_ms = opening.as_millis() as u64,
            max_message_size = self.max_message_size,
            max_event_size = self.max_event_size,
            max_frame_size = self.max_frame_size,
            max_connections = self.max_connections,
            "broker starting: recovery done"
        );
    }
}
