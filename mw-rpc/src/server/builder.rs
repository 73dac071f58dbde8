//! [`ServerBuilder`]: services and a configuration in, a [`Server`] out.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::config::{ExecutionMode, ServerConfig};
use super::instance::{Server, Shared};
use super::login_failures::LoginFailures;
use super::services::ServiceTable;
use crate::connections::Connections;
use crate::metrics::ServerMetrics;
use crate::service::Service;

/// Builds a [`Server`] from services and a configuration.
#[derive(Default)]
pub struct ServerBuilder {
    services: ServiceTable,
    config: ServerConfig,
    connections: Connections,
    metrics: prometheus_client::registry::Registry,
    /// Whether [`ServerBuilder::metrics_registry`] was asked for: then calls are
    /// measured even without an endpoint.
    metrics_wanted: bool,
}

impl ServerBuilder {
    /// Adds a service (for example `IncrementServer::new(MyImpl)`). Several versions of
    /// one service name may be added side by side.
    ///
    /// # Panics
    /// If the same name and version is added twice, or the name is longer than 255 bytes.
    // A builder verb, not arithmetic: `std::ops::Add` would not fit a by-value builder.
    #[allow(clippy::should_implement_trait)]
    pub fn add<S: Service>(mut self, service: S) -> Self {
        let id = service.id();
        assert!(
            id.name.len() <= 255,
            "service name {:?} is longer than 255 bytes",
            id.name
        );
        let versions = self
            .services
            .by_name
            .entry(id.name.to_string())
            .or_default();
        assert!(
            versions.iter().all(|s| s.id().version != id.version),
            "service {id} added twice"
        );
        versions.push(Arc::new(service));
        self
    }

    /// The table of the connections the server will have open: available before
    /// [`build`](Self::build) so that a service (an administration service) can list and
    /// close them.
    pub fn connections(&self) -> Connections {
        self.connections.clone()
    }

    /// The registry the server's metrics go to, for an application to add its own
    /// (metrics, or collectors read at each scrape). Asking for it turns the server's
    /// call measurements on.
    pub fn metrics_registry(&mut self) -> &mut prometheus_client::registry::Registry {
        self.metrics_wanted = true;
        &mut self.metrics
    }

    /// Replaces the configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Finishes building.
    pub fn build(mut self) -> Server {
        let iterative =
            (self.config.mode == ExecutionMode::Iterative).then(|| Arc::new(Semaphore::new(1)));
        let measured = self.metrics_wanted || self.config.metrics_addr.is_some();
        let metrics =
            measured.then(|| ServerMetrics::register(&mut self.metrics, &self.connections));
        Server {
            shared: Arc::new(Shared {
                services: self.services,
                config: self.config,
                iterative,
                connections: self.connections,
                metrics,
                metrics_registry: Arc::new(self.metrics),
                login_failures: LoginFailures::default(),
            }),
        }
    }
}

impl Server {
    /// Starts building a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}
