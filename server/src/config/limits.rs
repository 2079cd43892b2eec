//! Bounds on what clients may send and how much the server holds for them:
//! [`Limits`], with their defaults, and the [`Rate`] of a token bucket.

use std::time::Duration;

use super::ConfigError;
use super::source::{Lookup, Source};

/// A token bucket's shape: `per_sec` tokens refill each second, up to
/// `burst`. A `per_sec` of 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

/// Bounds on what clients may send and how much the server holds for them.
/// `docs/CONFIG.md` gives the reason for each default.
#[derive(Debug, Clone)]
pub struct Limits {
    pub message_max_chars: usize,
    pub name_max_chars: usize,
    pub publish_data_max_bytes: usize,
    pub http_body_max_bytes: usize,
    pub socket_payload_max_bytes: u64,
    pub outbound_buffer_packets: usize,
    /// Unsent bytes a WebSocket may owe before it is a slow consumer.
    pub outbound_buffer_bytes: u64,
    /// Socket.IO connections; 0: no limit.
    pub connections_per_ip: u32,
    /// TCP connections, whatever they carry; 0: no limit.
    pub tcp_connections_per_ip: u32,
    /// Engine.IO handshakes per address within a connect timeout; 0: no
    /// limit.
    pub handshakes_per_ip: u32,
    pub send_rate: Rate,
    pub publish_rate: Rate,
    /// Every API call but a publish, per API key.
    pub api_rate: Rate,
    /// Every client event's cost is taken from this (see
    /// `realtime::socket::EventCost`).
    pub event_rate: Rate,
    /// Store operations client events other than `send` may run at once,
    /// server-wide.
    pub event_store_concurrency: usize,
    /// At most one presence snapshot per room per this.
    pub presence_interval: Duration,
    /// How long a stream holds a later item while an earlier one may still
    /// arrive, before it reads the hole from the store.
    pub order_hold: Duration,
    /// The newest items each active stream keeps in memory for catch-ups.
    pub window_messages: usize,
    /// Memory all streams' windows may use together.
    pub window_bytes: usize,
    /// How long an Engine.IO session may take to connect to Socket.IO.
    pub connect_timeout: Duration,
    /// How often Engine.IO pings each client.
    pub ping_interval: Duration,
    /// How long a client may take to answer a ping before it is closed.
    pub ping_timeout: Duration,
    /// How long a connection may take to send a request's head.
    pub head_timeout: Duration,
    pub request_timeout: Duration,
    pub store_timeout: Duration,
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            message_max_chars: herald::message::BODY_MAX_CHARS,
            name_max_chars: herald::message::NAME_MAX_CHARS,
            publish_data_max_bytes: 16 * 1024,
            http_body_max_bytes: 64 * 1024,
            socket_payload_max_bytes: 32 * 1024,
            outbound_buffer_packets: 1024,
            outbound_buffer_bytes: 128 * 1024,
            connections_per_ip: 256,
            tcp_connections_per_ip: 1024,
            handshakes_per_ip: 256,
            send_rate: Rate { per_sec: 10, burst: 20 },
            publish_rate: Rate { per_sec: 1000, burst: 2000 },
            api_rate: Rate { per_sec: 100, burst: 200 },
            event_rate: Rate { per_sec: 20, burst: 60 },
            event_store_concurrency: 4,
            presence_interval: Duration::from_secs(1),
            order_hold: Duration::from_millis(500),
            window_messages: herald::protocol::CATCH_UP_MAX as usize,
            window_bytes: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            head_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(15),
            store_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// Reads every limit, each key over its default.
    pub(super) fn read(src: &Source<impl Lookup>) -> Result<Self, ConfigError> {
        let mut limits = Limits::default();
        limits.read_sizes(src)?;
        limits.read_connections(src)?;
        limits.read_rates(src)?;
        limits.read_delivery(src)?;
        limits.read_timeouts(src)?;
        Ok(limits)
    }

    /// How big a message, a name, a body or a buffer may be.
    fn read_sizes(&mut self, src: &Source<impl Lookup>) -> Result<(), ConfigError> {
        self.message_max_chars =
            src.number("HERALD_MESSAGE_MAX_CHARS", 1..=herald::message::BODY_MAX_CHARS, self.message_max_chars)?;
        self.name_max_chars =
            src.number("HERALD_NAME_MAX_CHARS", 1..=herald::message::NAME_MAX_CHARS, self.name_max_chars)?;
        self.publish_data_max_bytes =
            src.number("HERALD_PUBLISH_DATA_MAX_BYTES", 64..=1024 * 1024, self.publish_data_max_bytes)?;
        self.http_body_max_bytes =
            src.number("HERALD_HTTP_BODY_MAX_BYTES", 4 * 1024..=16 * 1024 * 1024, self.http_body_max_bytes)?;
        self.socket_payload_max_bytes =
            src.number("HERALD_SOCKET_PAYLOAD_MAX_BYTES", 16 * 1024..=16 * 1024 * 1024, self.socket_payload_max_bytes)?;
        self.outbound_buffer_packets =
            src.number("HERALD_OUTBOUND_BUFFER_PACKETS", 16..=65_536, self.outbound_buffer_packets)?;
        self.outbound_buffer_bytes =
            src.number("HERALD_OUTBOUND_BUFFER_BYTES", 16 * 1024..=256 * 1024 * 1024, self.outbound_buffer_bytes)?;
        Ok(())
    }

    /// How many connections and handshakes one address may hold.
    fn read_connections(&mut self, src: &Source<impl Lookup>) -> Result<(), ConfigError> {
        self.connections_per_ip = src.number("HERALD_CONNECTIONS_PER_IP", 0..=1_000_000, self.connections_per_ip)?;
        self.tcp_connections_per_ip =
            src.number("HERALD_TCP_CONNECTIONS_PER_IP", 0..=1_000_000, self.tcp_connections_per_ip)?;
        self.handshakes_per_ip = src.number("HERALD_HANDSHAKES_PER_IP", 0..=1_000_000, self.handshakes_per_ip)?;
        Ok(())
    }

    /// The token buckets, and how much store work client events may do.
    fn read_rates(&mut self, src: &Source<impl Lookup>) -> Result<(), ConfigError> {
        self.send_rate = Rate::read(src, "HERALD_SEND_RATE", "HERALD_SEND_BURST", self.send_rate)?;
        self.publish_rate = Rate::read(src, "HERALD_PUBLISH_RATE", "HERALD_PUBLISH_BURST", self.publish_rate)?;
        self.api_rate = Rate::read(src, "HERALD_API_RATE", "HERALD_API_BURST", self.api_rate)?;
        self.event_rate = Rate::read(src, "HERALD_EVENT_RATE", "HERALD_EVENT_BURST", self.event_rate)?;
        self.event_store_concurrency =
            src.number("HERALD_EVENT_STORE_CONCURRENCY", 1..=1024, self.event_store_concurrency)?;
        Ok(())
    }

    /// The engine's streams: presence snapshots, order holds and windows.
    fn read_delivery(&mut self, src: &Source<impl Lookup>) -> Result<(), ConfigError> {
        let ms = Duration::from_millis;
        self.presence_interval =
            src.duration("HERALD_PRESENCE_INTERVAL", ms(50)..=Duration::from_secs(60), self.presence_interval)?;
        self.order_hold = src.duration("HERALD_ORDER_HOLD", ms(10)..=Duration::from_secs(10), self.order_hold)?;
        self.window_messages = src.number("HERALD_WINDOW_MESSAGES", 0..=100_000, self.window_messages)?;
        self.window_bytes = src.number("HERALD_WINDOW_BYTES", 0..=16 * 1024 * 1024 * 1024, self.window_bytes)?;
        Ok(())
    }

    /// How long connections, requests, the store and shutdown may take.
    fn read_timeouts(&mut self, src: &Source<impl Lookup>) -> Result<(), ConfigError> {
        let (ms, secs) = (Duration::from_millis, Duration::from_secs);
        self.connect_timeout = src.duration("HERALD_CONNECT_TIMEOUT", ms(500)..=secs(120), self.connect_timeout)?;
        self.ping_interval = src.duration("HERALD_PING_INTERVAL", ms(50)..=secs(300), self.ping_interval)?;
        self.ping_timeout = src.duration("HERALD_PING_TIMEOUT", ms(50)..=secs(300), self.ping_timeout)?;
        self.head_timeout = src.duration("HERALD_HEAD_TIMEOUT", secs(1)..=secs(600), self.head_timeout)?;
        self.request_timeout = src.duration("HERALD_REQUEST_TIMEOUT", secs(1)..=secs(600), self.request_timeout)?;
        self.store_timeout = src.duration("HERALD_STORE_TIMEOUT", ms(100)..=secs(120), self.store_timeout)?;
        self.shutdown_timeout = src.duration("HERALD_SHUTDOWN_TIMEOUT", secs(1)..=secs(600), self.shutdown_timeout)?;
        Ok(())
    }
}

impl Rate {
    /// A bucket from its two keys: the refill per second (0: off) and the
    /// burst.
    fn read(src: &Source<impl Lookup>, rate_key: &str, burst_key: &str, default: Rate) -> Result<Self, ConfigError> {
        Ok(Rate {
            per_sec: src.number(rate_key, 0..=1_000_000, default.per_sec)?,
            burst: src.number(burst_key, 1..=1_000_000, default.burst)?,
        })
    }
}
