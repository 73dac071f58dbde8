//! [`ClientConfig`]: the client's tunables and their defaults.

use std::time::Duration;

use mw_core::TransportConfig;

/// Client tunables.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Frame size, write buffer bound and handshake timeout.
    pub transport: TransportConfig,
    /// Deadline of a call when none is given with [`Channel::with_timeout`]. Default 30 s:
    /// long enough for slow work, short enough that a hung server is noticed.
    ///
    /// [`Channel::with_timeout`]: super::Channel::with_timeout
    pub default_timeout: Duration,
    /// Stream items the server may send ahead of the consumer (credit window). Default 64:
    /// enough to hide a round trip, small enough that a slow reader holds little memory.
    pub stream_window: u32,
    /// Reconnect on the next call after the connection broke. Default off: calls in
    /// flight when it broke still fail with [`RpcError::Disconnected`] either way, since
    /// mw cannot know whether they ran. The exception is a call the server went away
    /// without reading ([`RpcError::NotRun`]: it said GoAway, then closed cleanly):
    /// with `reconnect` the channel sends it again on a new connection (at most twice).
    ///
    /// [`RpcError::Disconnected`]: crate::RpcError::Disconnected
    /// [`RpcError::NotRun`]: crate::RpcError::NotRun
    pub reconnect: bool,
    /// Calls and streams outstanding at once on the connection; further calls wait for a
    /// slot. Default 1024, within what a default server accepts per connection (256
    /// running + 1024 queued), so a default client is never refused as overloaded.
    pub max_in_flight: usize,
    /// Liveness pings: every this often the client pings the server; a server that does
    /// not answer within the same interval is declared gone and every outstanding call
    /// fails with [`RpcError::Disconnected`]. Default off (`None`): deadlines alone bound
    /// each call; turn it on for long-lived connections and streams (subscriptions).
    ///
    /// [`RpcError::Disconnected`]: crate::RpcError::Disconnected
    pub keepalive: Option<Duration>,
    /// TLS on TCP connections: the CAs to trust and, for servers that require one, a
    /// client certificate. Default `None`: plaintext.
    pub tls: Option<mw_core::tls::TlsClient>,
    /// Log in with these on every connection (servers that require it,
    /// [`crate::auth`]). Default `None`.
    pub credentials: Option<crate::auth::Credentials>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            transport: TransportConfig::default(),
            default_timeout: Duration::from_secs(30),
            stream_window: 64,
            reconnect: false,
            max_in_flight: 1024,
            keepalive: None,
            tls: None,
            credentials: None,
        }
    }
}
