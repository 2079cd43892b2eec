//! What a socket carries for its life, and admitting each of its events.
//!
//! [`Peer`] is who is on the other end; `Connection` holds the
//! connection's budgets, rooms and span; [`Gate`] holds the rules and
//! limits every connection shares. Every event goes through
//! `admit_or_answer` first (see the [module docs](super)), and reads of
//! the store take a `ReadTurn`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::Identity;
use herald::protocol::{ErrorReply, Object, REQUESTS_IN_FLIGHT_MAX, Reply};
use herald::{RoomName, Seq};
use serde::de::DeserializeOwned;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use tokio::sync::Semaphore;
use tracing::Span;

use crate::access::RoomAccess;
use crate::auth::tokens::Tokens;
use crate::config::{Rate, TrustedProxies};
use crate::engine::fanout::{Fanout, Transports};
use crate::http::admission::{ConnectionCaps, ConnectionSlot, TokenBucket, retry_after_ms};
use crate::ops::lifecycle::Drain;
use crate::ops::metrics::{Metrics, Rejection};

/// Who is on the other end of a socket, decided once at the handshake.
#[derive(Debug, Clone)]
pub enum Peer {
    User(Identity),
    Anonymous,
}

/// What each client event takes from its connection's event budget: reads
/// of the store cost most, a leave least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventCost {
    Join,
    Sync,
    MarkRead,
    Send,
    Leave,
}

impl EventCost {
    pub const fn tokens(self) -> u32 {
        match self {
            Self::Join | Self::Sync => 5,
            Self::MarkRead => 2,
            Self::Send | Self::Leave => 1,
        }
    }
}

/// An event's payload, parsed at the boundary: the request (a JSON object),
/// or the `malformed` answer to give instead. Never fails, so a handler
/// always runs and always answers.
pub struct Payload<T>(pub Result<T, ErrorReply>);

impl<T: DeserializeOwned, A: Adapter> FromMessageParts<A> for Payload<T> {
    type Error = std::convert::Infallible;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        value: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        let TryData(data) = TryData::<Object<T>>::from_message_parts(socket, value, ack_id)?;
        Ok(Self(data.map(|Object(request)| request).map_err(ErrorReply::malformed)))
    }
}

/// The handshake's admission rules, and the per-connection limits it sets
/// up.
#[derive(Clone)]
pub struct Gate {
    pub tokens: Tokens,
    pub allow_anonymous: bool,
    pub caps: ConnectionCaps,
    pub trusted_proxies: TrustedProxies,
    pub send_rate: Rate,
    pub event_rate: Rate,
    /// Places for store operations of client events, server-wide
    /// (`HERALD_EVENT_STORE_CONCURRENCY`).
    pub store_ops: Arc<Semaphore>,
    /// How long an event waits for such a place: `HERALD_STORE_TIMEOUT`.
    pub store_timeout: Duration,
    pub drain: Drain,
    pub metrics: Arc<Metrics>,
    pub transports: Transports,
    /// Who may enter which room.
    pub access: RoomAccess,
}

/// A connection's turn to run a store operation for one of its events: its
/// own (one at a time per connection) and a place server-wide. Held until
/// the answer is queued, so that one connection has one answer being read
/// and encoded at a time.
pub(super) struct ReadTurn {
    _mine: tokio::sync::OwnedSemaphorePermit,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl Gate {
    /// Waits for `conn`'s turn to read (or write) the store for an event.
    /// One at a time per connection, so that its answers are sent one by
    /// one: a connection that owes more than its budget by its turn asked
    /// for more than it reads, and is let go instead of served.
    pub(super) async fn read_turn(
        &self,
        conn: &ConnectionState,
        socket: &SocketRef,
        fanout: &Fanout,
    ) -> Result<ReadTurn, Refusal> {
        let busy =
            || Refusal::Answer(ErrorReply::new("unavailable", "the server is too busy to read that now; try again"));
        let deadline = tokio::time::Instant::now() + self.store_timeout;
        let mine = tokio::time::timeout_at(deadline, conn.reads.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        if fanout.let_go_if_behind(socket) {
            return Err(Refusal::Ignore);
        }
        let place = tokio::time::timeout_at(deadline, self.store_ops.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        Ok(ReadTurn { _mine: mine, _place: place })
    }
}

/// What a connection carries for its lifetime (in the socket's extensions,
/// which hold clones: hence one `Arc`).
#[derive(Clone)]
pub(super) struct Connection(pub(super) Arc<ConnectionState>);

pub(super) struct ConnectionState {
    pub(super) span: Span,
    pub(super) send_rate: TokenBucket,
    pub(super) events: TokenBucket,
    /// Requests admitted and not yet answered.
    pub(super) in_flight: AtomicUsize,
    /// Its place in the per-IP count, which the disconnect handler gives
    /// back.
    pub(super) slot: Mutex<Option<ConnectionSlot>>,
    /// The chat rooms it joined, with each room's head when it did.
    pub(super) joined: Mutex<HashMap<RoomName, Seq>>,
    /// Closes the connection when its token expires.
    pub(super) expiry: Mutex<Option<tokio::task::AbortHandle>>,
    /// One store operation at a time (see [`Gate::read_turn`]).
    pub(super) reads: Arc<Semaphore>,
    /// One presence change at a time, in the order its rooms changed: a
    /// join answered before its presence is recorded still records it
    /// before the leave or disconnect that follows takes it out.
    pub(super) presence: Arc<tokio::sync::Mutex<()>>,
}

pub(super) fn connection(socket: &SocketRef) -> Option<Arc<ConnectionState>> {
    socket.extensions.get::<Connection>().map(|c| c.0)
}

/// The connection's span, for its handlers.
pub(super) fn span_of(socket: &SocketRef) -> Span {
    connection(socket).map(|c| c.span.clone()).unwrap_or_else(Span::none)
}

/// Why an event is not served.
pub(super) enum Refusal {
    /// The socket was let go as a slow consumer: it is sent nothing more.
    Ignore,
    Answer(ErrorReply),
}

/// An admitted request: holds its place among the connection's requests in
/// flight until it is answered (dropped).
pub(super) struct Admitted(Arc<ConnectionState>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Admits an event costing `cost`; see the module docs.
pub(super) fn admit(socket: &SocketRef, gate: &Gate, fanout: &Fanout, cost: EventCost) -> Result<Admitted, Refusal> {
    if fanout.is_let_go(socket) {
        return Err(Refusal::Ignore);
    }
    let Some(conn) = connection(socket) else { return Err(Refusal::Ignore) };
    if conn.in_flight.fetch_add(1, Ordering::AcqRel) >= REQUESTS_IN_FLIGHT_MAX {
        conn.in_flight.fetch_sub(1, Ordering::AcqRel);
        gate.metrics.rejected(Rejection::InFlight);
        return Err(Refusal::Answer(ErrorReply {
            code: "rate_limited".to_owned(),
            reason: format!(
                "at most {REQUESTS_IN_FLIGHT_MAX} requests of a connection may wait for an answer; \
                 try again once one is answered"
            ),
            retry_after_ms: Some(100),
        }));
    }
    let admitted = Admitted(conn);
    if let Err(wait) = admitted.0.events.take_n(cost.tokens()) {
        gate.metrics.rejected(Rejection::EventRate);
        return Err(Refusal::Answer(ErrorReply::rate_limited("requests", retry_after_ms(wait))));
    }
    Ok(admitted)
}

/// Admits an event, or answers why not; `None` means it was answered (or
/// is ignored) already.
pub(super) fn admit_or_answer(
    socket: &SocketRef,
    gate: &Gate,
    fanout: &Fanout,
    cost: EventCost,
    ack: AckSender,
) -> Option<(Admitted, AckSender)> {
    match admit(socket, gate, fanout, cost) {
        Ok(admitted) => Some((admitted, ack)),
        Err(Refusal::Ignore) => None,
        Err(Refusal::Answer(error)) => {
            fanout.reply(socket, ack, &Reply::<()>::Error(error));
            None
        }
    }
}

pub(super) fn user_of(socket: &SocketRef) -> Option<Identity> {
    match socket.extensions.get::<Peer>() {
        Some(Peer::User(identity)) => Some(identity),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cost_more_than_a_leave_and_a_browser_start_fits_the_default_burst() {
        assert!(EventCost::Join.tokens() > EventCost::Leave.tokens());
        assert!(EventCost::Sync.tokens() > EventCost::MarkRead.tokens());
        let start = EventCost::Join.tokens() + EventCost::Sync.tokens();
        let burst = crate::config::Limits::default().event_rate.burst;
        // A page (re)connecting joins and syncs, then resends what it has
        // queued: that must fit in a fresh budget with room to spare.
        assert!(start + 20 * EventCost::Send.tokens() <= burst, "{start} + 20 sends > {burst}");
    }
}
