//! `mw broker`: one process hosting the queue manager, the event bus, the tuple space and a
//! registry, all as mw services on one listening address.
//!
//! Each part contributes its services to one [`ServerBuilder`]; [`open`] opens the
//! data directory and assembles them.

use std::path::PathBuf;

use crate::pubsub::remote::{PubSubServer, PubSubService};
use crate::pubsub::Bus;
use crate::queue::remote::QueueServiceServer;
use crate::queue::QueueManager;
use crate::rpc::registry::{RegistryImpl, RegistryServer};
use crate::rpc::{Server, ServerBuilder, ServerConfig};
use crate::run::BoxError;
use crate::space::remote::{SpaceService, TupleSpaceServer};
use crate::space::Space;

/// The subdirectory of the data directory holding the tuple space's log.
pub const SPACE_DIR: &str = "space";

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where queues keep their segment files (created if missing).
    pub data_dir: PathBuf,
    /// Connection limits and scheduling of the shared server.
    pub server: ServerConfig,
    /// Queue manager settings (fsync policy, visibility timeout, length limit, ...).
    pub queue: crate::queue::Config,
    /// Store-and-forward routes (`mw broker --route 'orders.*=HOST:PORT'`): sends to a
    /// queue matching a route are stored in the transmission queue `xmit.<hop>` and
    /// forwarded to that hop's `mw.queue` service. Empty: every queue is local.
    pub routes: crate::queue::forward::RoutingTable,
    /// How the routes' next brokers are connected to: TLS (`route_client.tls`) and
    /// credentials (`route_client.credentials`) for hops that require them (`mw broker
    /// --route-tls-ca FILE --route-token USER.SECRET`).
    pub route_client: crate::rpc::ClientConfig,
    /// Tuple space limits. Its `fsync` is ignored: the space follows `queue.fsync`, so
    /// one `--fsync` policy governs everything the broker stores.
    pub space: crate::space::Config,
    /// Event bus limits: event size (`max_event_size`, 1 MiB), subscriptions, subscriber
    /// buffers, retained topics.
    pub pubsub: crate::pubsub::Config,
}

/// Bytes a frame needs besides the message or event it carries (frame and call
/// headers, queue or topic name, metadata), generously.
pub const FRAME_HEADROOM: usize = 64 * 1024;

/// Bytes a durable subscription's stored event needs besides its payload: the topic (at
/// most 255 bytes) and its packing.
pub const DURABLE_HEADROOM: usize = 512;

impl BrokerConfig {
    /// Defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            server: ServerConfig::default(),
            queue: crate::queue::Config::default(),
            routes: crate::queue::forward::RoutingTable::new(),
            route_client: crate::rpc::ClientConfig::default(),
            space: crate::space::Config::default(),
            pubsub: crate::pubsub::Config::default(),
        }
    }
}

/// A broker setting that cannot work, refused before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A zero visibility timeout would redeliver every message at once, before it could
    /// be acked.
    #[error("invalid broker setting: the visibility timeout must be at least 1 second (0 would redeliver every message before it could be acknowledged)")]
    ZeroVisibilityTimeout,
    /// A zero length limit would refuse every send.
    #[error("invalid broker setting: the max queue length must be at least 1 (0 would refuse every message)")]
    ZeroMaxQueueLen,
    /// The queue message size limit is 0 or more than the segment format holds.
    #[error("invalid broker setting: the max message size must be 1 to {max} bytes, not {size}")]
    MessageSizeOutOfRange {
        /// The setting.
        size: usize,
        /// [`crate::queue::MAX_MESSAGE_SIZE`].
        max: usize,
    },
    /// A zero event size limit would refuse every publish.
    #[error("invalid broker setting: the max event size must be at least 1 byte")]
    ZeroEventSize,
    /// Durable subscriptions store each event as a queue message, so an event the bus
    /// accepts must fit in one.
    #[error("invalid broker setting: the max event size ({event} bytes) must be at least {headroom} bytes below the max message size ({message} bytes): durable subscriptions store events as queue messages")]
    EventLargerThanMessage {
        /// The event size limit.
        event: usize,
        /// The message size limit.
        message: usize,
        /// [`DURABLE_HEADROOM`].
        headroom: usize,
    },
    /// A frame could not carry the largest message or event the broker accepts.
    #[error("invalid broker setting: the max frame size ({frame} bytes) must exceed the {what} ({size} bytes) by at least {headroom} bytes")]
    FrameTooSmall {
        /// `max message size` or `max event size`.
        what: &'static str,
        /// That limit.
        size: usize,
        /// The frame limit.
        frame: usize,
        /// [`FRAME_HEADROOM`].
        headroom: usize,
    },
    /// The metrics endpoint's address is not a TCP `HOST:PORT`.
    #[error("invalid broker setting: --metrics-addr {addr}: {reason}")]
    BadMetricsAddress {
        /// The address as given.
        addr: String,
        /// Why it is unusable.
        reason: String,
    },
    /// A route's next hop is not an address the broker can connect to.
    #[error("invalid broker setting: route {route}: {reason}")]
    BadRouteAddress {
        /// The route as given.
        route: String,
        /// Why the address is unusable.
        reason: String,
    },
}

impl BrokerConfig {
    /// Checks the settings that would make the broker misbehave later: a zero visibility
    /// timeout or queue length limit, size limits that disagree (a message or event
    /// larger than a frame, an event larger than a message), a metrics address or a route
    /// to something that is not an address.
    ///
    /// # Errors
    /// The first such setting found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.queue.visibility_timeout.is_zero() {
            return Err(ConfigError::ZeroVisibilityTimeout);
        }
        if self.queue.max_queue_len == Some(0) {
            return Err(ConfigError::ZeroMaxQueueLen);
        }
        self.validate_sizes()?;
        if let Some(addr) = &self.server.metrics_addr {
            use std::net::ToSocketAddrs;
            let bad = |reason: String| ConfigError::BadMetricsAddress {
                addr: addr.clone(),
                reason,
            };
            match addr.to_socket_addrs().map(|mut found| found.next()) {
                Ok(Some(_)) => {}
                Ok(None) => return Err(bad("it resolves to no address".into())),
                Err(e) => return Err(bad(format!("expected HOST:PORT ({e})"))),
            }
        }
        for route in self.routes.routes() {
            let bad = |reason: String| ConfigError::BadRouteAddress {
                route: format!("{}={}", route.pattern, route.hop),
                reason,
            };
            match route.hop.parse::<crate::core::Address>() {
                Ok(crate::core::Address::Tcp(_)) if route.hop.ends_with(":0") => {
                    return Err(bad("port 0 cannot be connected to".into()))
                }
                Ok(_) => {}
                Err(e) => return Err(bad(e.to_string())),
            }
        }
        Ok(())
    }
}

impl BrokerConfig {
    /// The size limits agree: a message or event the broker accepts fits in a frame and
    /// (for events) in a durable subscription's queue.
    fn validate_sizes(&self) -> Result<(), ConfigError> {
        let message = self.queue.max_message_size;
        let event = self.pubsub.max_event_size;
        let frame = self.server.transport.max_frame_len;
        if message == 0 || message > crate::queue::MAX_MESSAGE_SIZE {
            return Err(ConfigError::MessageSizeOutOfRange {
                size: message,
                max: crate::queue::MAX_MESSAGE_SIZE,
            });
        }
        if event == 0 {
            return Err(ConfigError::ZeroEventSize);
        }
        if event.saturating_add(DURABLE_HEADROOM) > message {
            return Err(ConfigError::EventLargerThanMessage {
                event,
                message,
                headroom: DURABLE_HEADROOM,
            });
        }
        // The event fits whenever the message does (checked just above).
        if message.saturating_add(FRAME_HEADROOM) > frame {
            return Err(ConfigError::FrameTooSmall {
                what: "max message size",
                size: message,
                frame,
                headroom: FRAME_HEADROOM,
            });
        }
        Ok(())
    }
}

/// The broker's parts, kept alive for as long as the broker serves.
#[derive(Debug)]
#[non_exhaustive]
pub struct Broker {
    /// The server hosting every service.
    pub server: Server,
    /// The event bus the `mw.pubsub` service publishes to, shared with in-process users.
    pub bus: Bus,
    /// The queue manager on the data directory: durable subscriptions store their events in
    /// it (queues `durable.<name>`), and the queue service serves it.
    pub queues: QueueManager,
    /// The router behind the queue service: forwards the queues of
    /// [`BrokerConfig::routes`] (and transmission queues left from an earlier start).
    /// Stop it (`router.shutdown()`) before closing `queues`.
    pub router: crate::queue::forward::Router,
    /// The tuple space the `mw.space` service serves (log in `DATA/space/`), publishing
    /// its notifications on `bus`. Close it (`space.close()`) after the server drained.
    pub space: Space,
}

/// File descriptors kept for everything but client connections (segment files, data
/// directory, listener, forwarders' connections, logs).
pub const RESERVED_FDS: usize = 256;

/// Raises the process's soft open-file limit as far as the hard limit allows, and keeps
/// `config.server.max_connections` under what it allows (less [`RESERVED_FDS`]), so that
/// clients beyond it get a readable `server busy` refusal instead of failing to connect.
/// Returns what an operator should read: the limit raised, or `max_connections`
/// lowered (with how to raise the limit).
pub fn fit_open_files(config: &mut BrokerConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let before = rlimit::Resource::NOFILE.get().map(|(soft, _)| soft).ok();
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => soft,
        Err(e) => {
            notes.push(format!("cannot raise the open-file limit: {e}"));
            before.unwrap_or(1024)
        }
    };
    if before.is_some_and(|b| b < soft) {
        notes.push(format!(
            "open-file limit raised from {} to {soft}",
            before.unwrap_or_default()
        ));
    }
    let room = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(RESERVED_FDS)
        .max(1);
    if config.server.max_connections > room {
        notes.push(format!(
            "max connections lowered from {} to {room}: the open-file limit is {soft} \
             (raise it with `ulimit -n` or LimitNOFILE= in a systemd unit)",
            config.server.max_connections
        ));
        config.server.max_connections = room;
    }
    notes
}

/// Opens the data directory and assembles every broker service into one server.
///
/// # Errors
/// A setting that cannot work ([`BrokerConfig::validate`]); the data directory cannot be
/// created or opened (recovery errors name file and offset).
pub async fn open(config: BrokerConfig) -> Result<Broker, BoxError> {
    config.validate()?;
    // Owner-only: the directory holds every message and subscription in plain files.
    let mut dir = std::fs::DirBuilder::new();
    dir.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
    dir.create(&config.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let queues = QueueManager::open(&config.data_dir, config.queue.clone())
        .await
        .map_err(|e| format!("cannot open queues in {}: {e}", config.data_dir.display()))?;
    let bus = Bus::new(config.pubsub.clone());
    let pubsub = PubSubService::with_durable(bus.clone(), queues.clone(), &config.data_dir)?;
    let space_dir = config.data_dir.join(SPACE_DIR);
    let space_config = crate::space::Config {
        fsync: config.queue.fsync,
        ..config.space.clone()
    };
    let space = Space::open(&space_dir, space_config, bus.clone())
        .await
        .map_err(|e| {
            format!(
                "cannot open the tuple space in {}: {e}",
                space_dir.display()
            )
        })?;
    let builder: ServerBuilder = Server::builder().config(config.server.clone());
    let connections = builder.connections();
    let builder = builder
        .add(crate::admin::AdminServer::new(
            crate::admin::AdminService::new(connections),
        ))
        .add(RegistryServer::new(RegistryImpl::new()))
        .add(PubSubServer::new(pubsub))
        .add(TupleSpaceServer::new(SpaceService::new(space.clone())));
    // Always a router, even without routes: it also forwards transmission queues left
    // from an earlier start with routes, so nothing stays stranded.
    let router = crate::queue::forward::Router::start(
        queues.clone(),
        config.routes.clone(),
        crate::queue::forward::RemoteConnect {
            client: config.route_client.clone(),
            ..crate::queue::forward::RemoteConnect::default()
        },
        crate::queue::forward::ForwarderConfig::default(),
    );
    let mut builder = builder.add(QueueServiceServer::new(
        crate::queue::remote::QueueServiceImpl::new(queues.clone()).with_route(router.clone()),
    ));
    if config.server.metrics_addr.is_some() {
        builder.metrics_registry().register_collector(Box::new(
            crate::metrics::BrokerCollector::new(queues.clone(), bus.clone(), router.clone()),
        ));
    }
    Ok(Broker {
        server: builder.build(),
        bus,
        queues,
        router,
        space,
    })
}
