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
    /// Tuple space limits. Its `fsync` is ignored: the space follows `queue.fsync`, so
    /// one `--fsync` policy governs everything the broker stores.
    pub space: crate::space::Config,
}

impl BrokerConfig {
    /// Defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            server: ServerConfig::default(),
            queue: crate::queue::Config::default(),
            routes: crate::queue::forward::RoutingTable::new(),
            space: crate::space::Config::default(),
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
    /// timeout or queue length limit, a route to something that is not an address.
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

/// Opens the data directory and assembles every broker service into one server.
///
/// # Errors
/// A setting that cannot work ([`BrokerConfig::validate`]); the data directory cannot be
/// created or opened (recovery errors name file and offset).
pub async fn open(config: BrokerConfig) -> Result<Broker, BoxError> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let queues = QueueManager::open(&config.data_dir, config.queue.clone())
        .await
        .map_err(|e| format!("cannot open queues in {}: {e}", config.data_dir.display()))?;
    let bus = Bus::default();
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
    let builder: ServerBuilder = Server::builder()
        .config(config.server.clone())
        .add(RegistryServer::new(RegistryImpl::new()))
        .add(PubSubServer::new(pubsub))
        .add(TupleSpaceServer::new(SpaceService::new(space.clone())));
    // Always a router, even without routes: it also forwards transmission queues left
    // from an earlier start with routes, so nothing stays stranded.
    let router = crate::queue::forward::Router::start(
        queues.clone(),
        config.routes.clone(),
        crate::queue::forward::RemoteConnect::default(),
        crate::queue::forward::ForwarderConfig::default(),
    );
    let builder = builder.add(QueueServiceServer::new(
        crate::queue::forward::RoutingQueueService::new(router.clone()),
    ));
    Ok(Broker {
        server: builder.build(),
        bus,
        queues,
        router,
        space,
    })
}
