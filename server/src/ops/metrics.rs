//! Counters for operators, served as Prometheus text at `GET /metrics`.
//!
//! Plain atomics, no registry: counting costs one relaxed add on the hot
//! path, and the exposition is written by hand in [`Metrics::render`].
//! Gauges that the Socket.IO server already knows (connections, rooms) are
//! read from it at scrape time instead of being tracked twice. Nothing here
//! holds a secret or a user id: labels are fixed words.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the store latency histogram's buckets.
const STORE_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// What became of an event between nodes (a cluster's Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusEvent {
    /// Sent to Redis.
    Published,
    /// Taken from Redis and handed to this node's streams.
    Received,
    /// Not sent (Redis down, queue full) or not taken (too many waiting):
    /// the streams fill it from MongoDB.
    Dropped,
    /// A node's probe of its own connection did not come back: it
    /// connected again.
    ProbeLost,
}

impl BusEvent {
    const ALL: [Self; 4] = [Self::Published, Self::Received, Self::Dropped, Self::ProbeLost];

    fn label(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Received => "received",
            Self::Dropped => "dropped",
            Self::ProbeLost => "probe_lost",
        }
    }
}

/// Why a node checked its streams against the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The periodic check (`HERALD_POSITION_CHECK`).
    PositionCheck,
    /// Redis came back after the node was cut off from it.
    Reconnect,
}

impl Repair {
    const ALL: [Self; 2] = [Self::PositionCheck, Self::Reconnect];

    fn label(self) -> &'static str {
        match self {
            Self::PositionCheck => "position_check",
            Self::Reconnect => "reconnect",
        }
    }
}

/// What a private room's access check came to (public rooms are not
/// counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomCheck {
    /// Let in: listed in the room's settings, or granted by the token.
    Granted,
    /// Let in by the backend's answer (asked, or remembered).
    GrantedByBackend,
    /// Turned away: not signed in, not granted, or denied by the backend.
    Refused,
    /// The backend did not answer in time, or answered nonsense: turned away.
    BackendUnavailable,
}

impl RoomCheck {
    const ALL: [Self; 4] = [Self::Granted, Self::GrantedByBackend, Self::Refused, Self::BackendUnavailable];

    fn label(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::GrantedByBackend => "granted_by_backend",
            Self::Refused => "refused",
            Self::BackendUnavailable => "backend_unavailable",
        }
    }
}

/// What became of a webhook delivery (one event to one receiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// It did not; the delivery is due again after a backoff.
    Failed,
    /// Not queued: the queue was full, or MongoDB could not take it.
    Dropped,
    /// Given up after failing for `HOOK_RETRY_FOR`.
    Expired,
}

impl HookOutcome {
    const ALL: [Self; 4] = [Self::Delivered, Self::Failed, Self::Dropped, Self::Expired];

    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
            Self::Expired => "expired",
        }
    }
}

/// How a publish request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    Ok,
    Unauthorized,
    Invalid,
    RateLimited,
    Unavailable,
}

impl PublishOutcome {
    const ALL: [Self; 5] = [Self::Ok, Self::Unauthorized, Self::Invalid, Self::RateLimited, Self::Unavailable];

    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unauthorized => "unauthorized",
            Self::Invalid => "invalid",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What a rate limit or admission rule turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A socket `send` over its connection's rate.
    SendRate,
    /// A publish request over its API key's rate.
    PublishRate,
    /// Another API call over its API key's rate.
    ApiRate,
    /// A Socket.IO connection over the per-IP limit.
    ConnectionsPerIp,
    /// A TCP connection over the per-IP limit.
    TcpConnectionsPerIp,
    /// A handshake from an origin that is not allowed.
    Origin,
    /// A client event over its connection's event budget.
    EventRate,
    /// A client event while its connection had the most requests in flight.
    InFlight,
    /// An Engine.IO handshake over the per-IP limit.
    HandshakesPerIp,
    /// A no-JavaScript form post over its visitor's or address's rate.
    FormRate,
}

impl Rejection {
    const ALL: [Self; 10] = [
        Self::SendRate,
        Self::PublishRate,
        Self::ApiRate,
        Self::ConnectionsPerIp,
        Self::TcpConnectionsPerIp,
        Self::Origin,
        Self::EventRate,
        Self::InFlight,
        Self::HandshakesPerIp,
        Self::FormRate,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::SendRate => "send_rate",
            Self::PublishRate => "publish_rate",
            Self::ApiRate => "api_rate",
            Self::ConnectionsPerIp => "connections_per_ip",
            Self::TcpConnectionsPerIp => "tcp_connections_per_ip",
            Self::Origin => "origin",
            Self::EventRate => "event_rate",
            Self::InFlight => "requests_in_flight",
            Self::HandshakesPerIp => "handshakes_per_ip",
            Self::FormRate => "form_rate",
        }
    }
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; STORE_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = STORE_BUCKETS.iter().position(|bound| secs <= *bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// Herald's counters. One per server, shared by `Arc`.
#[derive(Default)]
pub struct Metrics {
    messages_received: AtomicU64,
    messages_stored: AtomicU64,
    delivered: AtomicU64,
    notifications_stored: AtomicU64,
    publish: [AtomicU64; PublishOutcome::ALL.len()],
    rejections: [AtomicU64; Rejection::ALL.len()],
    slow_consumer_disconnects: AtomicU64,
    presence_snapshots: AtomicU64,
    token_expiries: AtomicU64,
    store_errors: AtomicU64,
    store_commands: AtomicU64,
    store_latency: Histogram,
    bus: [AtomicU64; BusEvent::ALL.len()],
    repairs: [AtomicU64; Repair::ALL.len()],
    unknown_session_polls: AtomicU64,
    room_checks: [AtomicU64; RoomCheck::ALL.len()],
    hooks: [AtomicU64; HookOutcome::ALL.len()],
}

/// Values read from the Socket.IO server when scraped.
pub struct Live {
    pub websocket: usize,
    pub polling: usize,
    pub rooms: usize,
    /// WebSocket upgrades whose TCP connection is tracked (see
    /// `engine::fanout::Transports`).
    pub upgrades_tracked: usize,
    /// Bytes of encoded items the engine's windows hold, and the streams
    /// it keeps.
    pub window_bytes: usize,
    pub streams: usize,
    /// Whether this node reaches the cluster's Redis; `None` on one node.
    pub redis_up: Option<bool>,
    /// The webhooks' queue and receivers, when webhooks are configured.
    pub webhooks: Option<HookGauges>,
}

/// The webhooks' state when scraped.
pub struct HookGauges {
    /// Deliveries waiting in MongoDB (as last counted).
    pub queued: u64,
    /// Whether each receiver, by position in `HERALD_WEBHOOK_URLS`, is
    /// paused for failing.
    pub paused: Vec<bool>,
}

/// A counter family with one sample per value of its one label.
fn labelled(
    family: &mut impl FnMut(&str, &str, &str, &[(&str, u64)]),
    name: &str,
    help: &str,
    label: &str,
    counts: &[(&str, u64)],
) {
    let labels: Vec<String> = counts.iter().map(|(value, _)| format!(r#"{{{label}="{value}"}}"#)).collect();
    let samples: Vec<(&str, u64)> = labels.iter().map(String::as_str).zip(counts.iter().map(|(_, n)| *n)).collect();
    family(name, "counter", help, &samples);
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn message_received(&self) {
        inc(&self.messages_received);
    }

    pub fn message_stored(&self) {
        inc(&self.messages_stored);
    }

    pub fn notification_stored(&self) {
        inc(&self.notifications_stored);
    }

    /// Packets handed to connections' outbound buffers.
    pub fn delivered(&self, packets: u64) {
        self.delivered.fetch_add(packets, Ordering::Relaxed);
    }

    pub fn publish(&self, outcome: PublishOutcome) {
        inc(&self.publish[outcome as usize]);
    }

    pub fn rejected(&self, what: Rejection) {
        inc(&self.rejections[what as usize]);
    }

    pub fn slow_consumer_disconnected(&self) {
        inc(&self.slow_consumer_disconnects);
    }

    /// One presence snapshot sent to a room.
    pub fn presence_snapshot(&self) {
        inc(&self.presence_snapshots);
    }

    /// A connection closed because its token expired.
    pub fn token_expired(&self) {
        inc(&self.token_expiries);
    }

    /// One storage operation finished (or timed out) after `elapsed`.
    pub fn store_op(&self, elapsed: Duration, ok: bool) {
        self.store_latency.observe(elapsed);
        if !ok {
            inc(&self.store_errors);
        }
    }

    /// One command was sent to MongoDB (a round trip; an operation may
    /// take several).
    pub fn store_command(&self) {
        inc(&self.store_commands);
    }

    /// One event between nodes published, received or dropped.
    pub fn bus(&self, event: BusEvent) {
        inc(&self.bus[event as usize]);
    }

    /// A long-polling request for an Engine.IO session this node does not
    /// have.
    pub fn unknown_session_poll(&self) {
        inc(&self.unknown_session_polls);
    }

    /// One webhook delivery's outcome (`count` of them).
    pub fn hook(&self, outcome: HookOutcome, count: u64) {
        self.hooks[outcome as usize].fetch_add(count, Ordering::Relaxed);
    }

    /// One check of who may enter a private room.
    pub fn room_check(&self, outcome: RoomCheck) {
        inc(&self.room_checks[outcome as usize]);
    }

    /// `streams` streams found behind the store, and filled from it.
    pub fn repairs(&self, reason: Repair, streams: u64) {
        self.repairs[reason as usize].fetch_add(streams, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, live: &Live) -> String {
        let mut out = String::with_capacity(4096);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "herald_connections",
            "gauge",
            "Open Socket.IO connections by transport.",
            &[(r#"{transport="websocket"}"#, live.websocket as u64), (r#"{transport="polling"}"#, live.polling as u64)],
        );
        family("herald_rooms", "gauge", "Chat rooms with at least one connection.", &[("", live.rooms as u64)]);
        family(
            "herald_messages_received_total",
            "counter",
            "Chat messages received (socket send events and form posts).",
            &[("", get(&self.messages_received))],
        );
        family("herald_messages_stored_total", "counter", "Chat messages stored.", &[("", get(&self.messages_stored))]);
        family(
            "herald_notifications_stored_total",
            "counter",
            "Published notifications stored.",
            &[("", get(&self.notifications_stored))],
        );
        family(
            "herald_packets_delivered_total",
            "counter",
            "Messages, notifications and updates handed to connections' outbound buffers.",
            &[("", get(&self.delivered))],
        );
        let publish = PublishOutcome::ALL.map(|o| (o.label(), get(&self.publish[o as usize])));
        labelled(&mut family, "herald_publish_requests_total", "Publish API requests by outcome.", "outcome", &publish);
        let rejected = Rejection::ALL.map(|r| (r.label(), get(&self.rejections[r as usize])));
        let help = "Requests and connections turned away by a limit.";
        labelled(&mut family, "herald_rate_limited_total", help, "limit", &rejected);
        family(
            "herald_slow_consumer_disconnects_total",
            "counter",
            "Connections closed because their outbound buffer was full.",
            &[("", get(&self.slow_consumer_disconnects))],
        );
        family(
            "herald_presence_snapshots_total",
            "counter",
            "Presence snapshots sent to rooms (coalesced: at most one per room per HERALD_PRESENCE_INTERVAL).",
            &[("", get(&self.presence_snapshots))],
        );
        family(
            "herald_token_expired_disconnects_total",
            "counter",
            "Connections closed because their token expired.",
            &[("", get(&self.token_expiries))],
        );
        family(
            "herald_upgrades_tracked",
            "gauge",
            "WebSocket upgrades whose TCP connection is tracked for slow-consumer cut-off.",
            &[("", live.upgrades_tracked as u64)],
        );
        family(
            "herald_window_bytes",
            "gauge",
            "Bytes of encoded messages the streams' windows keep for catch-ups (bounded by HERALD_WINDOW_BYTES).",
            &[("", live.window_bytes as u64)],
        );
        family(
            "herald_streams",
            "gauge",
            "Streams (rooms, inboxes, the broadcast stream) this node keeps: listened to, written or waited on.",
            &[("", live.streams as u64)],
        );
        family(
            "herald_store_errors_total",
            "counter",
            "Storage operations that failed or timed out.",
            &[("", get(&self.store_errors))],
        );
        family(
            "herald_store_commands_total",
            "counter",
            "Commands sent to MongoDB: its round trips (an operation may take several).",
            &[("", get(&self.store_commands))],
        );

        family(
            "herald_polls_unknown_session_total",
            "counter",
            "Long-polling requests for a session this node does not have (a load balancer without session affinity).",
            &[("", get(&self.unknown_session_polls))],
        );
        let checks = RoomCheck::ALL.map(|c| (c.label(), get(&self.room_checks[c as usize])));
        let help = "Checks of who may enter a private room (joins, sends, pages), by outcome.";
        labelled(&mut family, "herald_private_room_checks_total", help, "outcome", &checks);
        if let Some(hooks) = &live.webhooks {
            let outcomes = HookOutcome::ALL.map(|o| (o.label(), get(&self.hooks[o as usize])));
            let help = "Webhook deliveries (an event to a receiver), by outcome.";
            labelled(&mut family, "herald_webhook_deliveries_total", help, "outcome", &outcomes);
            family(
                "herald_webhook_queue",
                "gauge",
                "Webhook deliveries waiting in MongoDB (bounded by HERALD_WEBHOOK_QUEUE_MAX).",
                &[("", hooks.queued)],
            );
            let labels: Vec<String> = (0..hooks.paused.len()).map(|i| format!(r#"{{receiver="{i}"}}"#)).collect();
            let samples: Vec<(&str, u64)> =
                labels.iter().map(String::as_str).zip(hooks.paused.iter().map(|p| u64::from(*p))).collect();
            family(
                "herald_webhook_receiver_paused",
                "gauge",
                "1 while a receiver (by position in HERALD_WEBHOOK_URLS) is paused for failing again and again.",
                &samples,
            );
        }
        if let Some(up) = live.redis_up {
            family(
                "herald_redis_up",
                "gauge",
                "1 while this node reaches the cluster's Redis (only in a cluster).",
                &[("", u64::from(up))],
            );
            let bus = BusEvent::ALL.map(|e| (e.label(), get(&self.bus[e as usize])));
            let help = "Events between nodes, by what became of them.";
            labelled(&mut family, "herald_redis_events_total", help, "outcome", &bus);
            let repairs = Repair::ALL.map(|r| (r.label(), get(&self.repairs[r as usize])));
            let help = "Streams found behind the store and filled from it, by why they were checked.";
            labelled(&mut family, "herald_stream_repairs_total", help, "reason", &repairs);
        }

        let h = &self.store_latency;
        let _ = writeln!(
            out,
            "# HELP herald_store_duration_seconds MongoDB operation latency.\n# TYPE herald_store_duration_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, bucket) in STORE_BUCKETS.iter().zip(&h.buckets) {
            cumulative += get(bucket);
            let _ = writeln!(out, r#"herald_store_duration_seconds_bucket{{le="{bound}"}} {cumulative}"#);
        }
        let count = get(&h.count);
        let _ = writeln!(out, r#"herald_store_duration_seconds_bucket{{le="+Inf"}} {count}"#);
        let _ = writeln!(out, "herald_store_duration_seconds_sum {}", get(&h.sum_micros) as f64 / 1e6);
        let _ = writeln!(out, "herald_store_duration_seconds_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.message_received();
        m.publish(PublishOutcome::RateLimited);
        m.store_op(Duration::from_micros(700), true);
        m.store_op(Duration::from_secs(10), false);
        m.store_command();
        let text = m.render(&Live {
            websocket: 3,
            polling: 1,
            rooms: 2,
            upgrades_tracked: 0,
            window_bytes: 0,
            streams: 0,
            redis_up: None,
            webhooks: None,
        });
        assert!(text.contains("herald_connections{transport=\"websocket\"} 3\n"), "{text}");
        assert!(text.contains("herald_messages_received_total 1\n"));
        assert!(text.contains("herald_publish_requests_total{outcome=\"rate_limited\"} 1\n"));
        assert!(text.contains("herald_store_duration_seconds_bucket{le=\"0.0005\"} 0\n"));
        assert!(text.contains("herald_store_duration_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("herald_store_duration_seconds_bucket{le=\"5\"} 1\n"));
        assert!(text.contains("herald_store_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("herald_store_errors_total 1\n"));
        assert!(text.contains("herald_store_commands_total 1\n"), "{text}");
    }
}
