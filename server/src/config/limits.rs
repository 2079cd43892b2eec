//! Bounds on what clients may send and how much the server holds for them:
//! [`Limits`], with their defaults, and the [`Rate`] of a token bucket.

use std::time::Duration;

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
