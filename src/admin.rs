//! The broker's administration service, `mw.admin` v1: list and close client
//! connections. (Queues, durable subscriptions and retained messages are administered
//! through their own services, by the `mw queue|durable|conn|consumer|retained` verbs.)

use crate::rpc::{ConnectionInfo, Connections};

/// Connection administration (`mw.admin`, version 1), hosted by `mw broker`.
#[mw_macros::service(name = "mw.admin", version = 1)]
pub trait Admin {
    /// Every open connection, this caller's own included, by id.
    async fn connections(&self) -> Vec<ConnectionInfo>;
    /// Closes connection `id` at once (its running calls are answered `CANCELLED`);
    /// whether it was open.
    async fn close_connection(&self, id: u64) -> bool;
}

/// The broker side of [`Admin`], over a server's [`Connections`].
#[derive(Debug, Clone)]
pub struct AdminService {
    connections: Connections,
}

impl AdminService {
    /// Administers `connections` (from `ServerBuilder::connections`).
    pub fn new(connections: Connections) -> Self {
        AdminService { connections }
    }
}

impl Admin for AdminService {
    async fn connections(&self) -> Vec<ConnectionInfo> {
        self.connections.list()
    }

    async fn close_connection(&self, id: u64) -> bool {
        let closed = self.connections.close(id);
        if closed {
            tracing::info!(conn = id, "connection closed by an administrator");
        }
        closed
    }
}
