//! The Socket.IO layer: events `join`, `leave`, `send`, `sync` and
//! `mark_read` on namespace `/`.
//!
//! Each handler parses its payload at the boundary and always answers the
//! client's ack with a [`Reply`](herald::protocol::Reply), so a malformed
//! or invalid request gets a reason and the connection stays up.
//! `docs/PROTOCOL.md` documents the events.
//!
//! ## What one connection may cost
//!
//! Every event is admitted first ([`admit`](socket::admit)): a connection
//! has at most [`REQUESTS_IN_FLIGHT_MAX`](herald::protocol::REQUESTS_IN_FLIGHT_MAX)
//! requests waiting for an answer, and each event takes its
//! [`EventCost`](socket::EventCost) from the connection's event budget
//! (`HERALD_EVENT_RATE` / `HERALD_EVENT_BURST`), reads costing more than a
//! leave. Over either, the answer is `rate_limited` with `retry_after_ms`,
//! at once and without touching the store. Events that read or write the
//! store (other than `send`, which has its own rate) then wait for one of
//! `HERALD_EVENT_STORE_CONCURRENCY` places server-wide, so however many
//! sockets ask at once the rest of the database pool stays free for sends,
//! publishes and pages. Every reply is counted against the socket's outbound
//! byte budget ([`Fanout::reply`](crate::engine::fanout::Fanout::reply)),
//! and a socket let go as a slow consumer is served nothing more. A `join`
//! of a room the socket is already in is answered from memory.
//!
//! ## Files
//!
//! - [`handshake`]: who a socket is, whether its address may connect once
//!   more, closing it at its token's expiry; it registers the events below.
//! - [`socket`]: what a connection carries ([`socket::Peer`],
//!   [`socket::Gate`]) and admitting each event.
//! - [`rooms`]: `join` and `leave`, with presence.
//! - [`send`]: the `send` event.
//! - [`inbox`]: `sync` and `mark_read`.
//! - [`transport`]: the HTTP-level guard on `/socket.io/` requests.

pub mod handshake;
pub mod inbox;
pub mod rooms;
pub mod send;
pub mod socket;
pub mod transport;

use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;

use crate::realtime::handshake::authenticate;
use crate::realtime::socket::span_of;

/// Registers Herald's handlers on the default namespace.
pub fn register(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate));
}

async fn on_connect(socket: SocketRef) {
    span_of(&socket).in_scope(|| tracing::debug!("socket connected"));
}
