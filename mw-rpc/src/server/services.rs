//! [`ServiceTable`]: the services one server hosts, found by name and version.

use std::collections::HashMap;
use std::sync::Arc;

use crate::service::Service;
use crate::wire::code;

/// The services a server hosts, by name and then version. Not the service registry
/// ([`crate::registry`]), which maps names to the addresses of other servers.
#[derive(Default)]
pub(super) struct ServiceTable {
    pub(super) by_name: HashMap<String, Vec<Arc<dyn Service>>>,
}

impl ServiceTable {
    pub(super) fn find(
        &self,
        name: &str,
        version: u32,
    ) -> Result<&Arc<dyn Service>, (u16, String)> {
        let Some(versions) = self.by_name.get(name) else {
            return Err((
                code::UNKNOWN_SERVICE,
                format!("no service named {name:?} on this server"),
            ));
        };
        versions
            .iter()
            .find(|s| s.id().version == version)
            .ok_or_else(|| {
                let have: Vec<String> = versions
                    .iter()
                    .map(|s| s.id().version.to_string())
                    .collect();
                (
                    code::VERSION_MISMATCH,
                    format!(
                        "service {name:?}: client wants version {version}, server has version {}",
                        have.join(", ")
                    ),
                )
            })
    }
}
