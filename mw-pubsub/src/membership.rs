//! The link from a [`Subscription`](crate::Subscription) or [`Attachment`](crate::Attachment)
//! back to the bus it is registered on: dropping the handle removes the registration.
//!
//! The bus implements [`Unsubscribe`]; handles hold a [`Membership`]. So `subscriber` and
//! `sink` never name the bus, and imports point one way: `bus` → `subscriber`, `sink` →
//! `membership`.

use std::sync::Weak;

use crate::trie::SubscriptionId;

/// The bus side of "unsubscribe".
pub(crate) trait Unsubscribe: Send + Sync {
    /// Removes subscription or sink `id`; a no-op if it is already gone.
    fn unsubscribe(&self, id: SubscriptionId);
}

/// A registration on a bus, removed when this is dropped.
///
/// Holds the bus weakly: a subscription must not keep a bus alive (the bus closes when its last
/// clone is dropped), and a bus already gone has nothing to remove.
pub(crate) struct Membership {
    id: SubscriptionId,
    bus: Weak<dyn Unsubscribe>,
}

impl Membership {
    pub(crate) fn new(id: SubscriptionId, bus: Weak<dyn Unsubscribe>) -> Self {
        Membership { id, bus }
    }

    /// The registration's id on its bus.
    pub(crate) fn id(&self) -> SubscriptionId {
        self.id
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            bus.unsubscribe(self.id);
        }
    }
}
