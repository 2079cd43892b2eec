//! The Socket.IO layer: events `join`, `leave`, `send`, `sync` and
//! `mark_read` on namespace `/`.
//!
//! Each handler parses its payload at the boundary and always answers the
//! client's ack with a [`Reply`], so a malformed or invalid request gets a
//! reason and the connection stays up. `docs/PROTOCOL.md` documents the
//! events.
//!
//! ## What one connection may cost
//!
//! Every event is admitted first ([`admit`]): a connection has at most
//! [`REQUESTS_IN_FLIGHT_MAX`] requests waiting for an answer, and each event
//! takes its [`EventCost`] from the connection's event budget
//! (`HERALD_EVENT_RATE` / `HERALD_EVENT_BURST`), reads costing more than a
//! leave. Over either, the answer is `rate_limited` with `retry_after_ms`,
//! at once and without touching the store. Events that read or write the
//! store (other than `send`, which has its own rate) then wait for one of
//! `HERALD_EVENT_STORE_CONCURRENCY` places server-wide, so however many
//! sockets ask at once the rest of the database pool stays free for sends,
//! publishes and pages. Every reply is counted against the socket's outbound
//! byte budget ([`Fanout::reply`]), and a socket let go as a slow consumer
//! is served nothing more. A `join` of a room the socket is already in is
//! answered from memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::protocol::{
    Closing, EV_JOIN, EV_LEAVE, EV_MARK_READ, EV_SEND, EV_SYNC, ErrorReply, JoinRequest, LeaveRequest, MarkReadRequest,
    Object, REQUESTS_IN_FLIGHT_MAX, ROOMS_PER_SOCKET_MAX, Reply, SendRequest, SyncRequest,
};
use herald::{Identity, RoomName, Seq, StoredMessage};
use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use tokio::sync::Semaphore;
use tracing::{Instrument, Span};

use crate::auth::{LEEWAY_SECS, TokenError, Tokens};
use crate::chat::{Chat, PostError};
use crate::config::{Rate, TrustedProxies};
use crate::conn::PeerConn;
use crate::engine::{Channel, Encoded, Engine};
use crate::fanout::{Fanout, Transports};
use crate::lifecycle::{Drain, Work};
use crate::limits::{ConnectionCaps, ConnectionSlot, TokenBucket, retry_after_ms};
use crate::metrics::{Metrics, Rejection};
use crate::notify::Notifier;
use crate::presence::{Announcer, Member};
use crate::session::SESSION_COOKIE;
use crate::sync::lock;
use crate::visitor::read_cookie;

/// The answer to a `join` (`protocol::Joined`), its messages encoded once
/// for every joiner.
#[derive(Serialize)]
struct Joined {
    room: RoomName,
    head: Seq,
    messages: Vec<Encoded>,
    truncated: bool,
}

/// The answer to a `sync` (`protocol::Synced`), likewise.
#[derive(Serialize)]
struct Synced {
    inbox: Vec<Encoded>,
    broadcast: Vec<Encoded>,
    unread: u64,
}

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
}

/// A connection's turn to run a store operation for one of its events: its
/// own (one at a time per connection) and a place server-wide. Held until
/// the answer is queued, so that one connection has one answer being read
/// and encoded at a time.
struct ReadTurn {
    _mine: tokio::sync::OwnedSemaphorePermit,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl Gate {
    /// Waits for `conn`'s turn to read (or write) the store for an event.
    /// One at a time per connection, so that its answers are sent one by
    /// one: a connection that owes more than its budget by its turn asked
    /// for more than it reads, and is let go instead of served.
    async fn read_turn(
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
struct Connection(Arc<ConnectionState>);

struct ConnectionState {
    span: Span,
    send_rate: TokenBucket,
    events: TokenBucket,
    /// Requests admitted and not yet answered.
    in_flight: AtomicUsize,
    /// Its place in the per-IP count, which the disconnect handler gives
    /// back.
    slot: Mutex<Option<ConnectionSlot>>,
    /// The chat rooms it joined, with each room's head when it did.
    joined: Mutex<HashMap<RoomName, Seq>>,
    /// Closes the connection when its token expires.
    expiry: Mutex<Option<tokio::task::AbortHandle>>,
    /// One store operation at a time (see [`Gate::read_turn`]).
    reads: Arc<Semaphore>,
}

fn connection(socket: &SocketRef) -> Option<Arc<ConnectionState>> {
    socket.extensions.get::<Connection>().map(|c| c.0)
}

/// The connection's span, for its handlers.
fn span_of(socket: &SocketRef) -> Span {
    connection(socket).map(|c| c.span.clone()).unwrap_or_else(Span::none)
}

/// The handshake's `auth` payload: `{"token": "…"}`.
#[derive(Debug, Default, Deserialize)]
struct HandshakeAuth {
    #[serde(default)]
    token: Option<String>,
}

/// Why a connection was refused; clients receive the text in their
/// `connect_error`.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("invalid token: {0}")]
    Token(#[from] TokenError),
    #[error("authentication required: connect with auth {{\"token\": \"…\"}}")]
    AuthRequired,
    #[error("too many connections from this address")]
    TooManyConnections,
    #[error("the server is shutting down; reconnect in a moment")]
    ShuttingDown,
}

/// Connect middleware: identifies the socket from the handshake's token, or
/// else the browser's session cookie.
///
/// A token the client presents explicitly must be valid. A session cookie
/// whose token has gone stale (expired, or signed with a retired secret)
/// only means the browser is no longer logged in: it connects as anonymous
/// when that is allowed, rather than being locked out until it logs out.
async fn authenticate(
    socket: SocketRef,
    io: SocketIo,
    TryData(auth): TryData<HandshakeAuth>,
    State(gate): State<Gate>,
    State(fanout): State<Fanout>,
    State(engine): State<Engine>,
) -> Result<(), Refused> {
    if gate.drain.is_draining() {
        return Err(Refused::ShuttingDown);
    }
    let presented = auth.ok().and_then(|auth| auth.token);
    let (peer, expires) = match presented {
        Some(token) => {
            let (identity, exp) = gate.tokens.verify_with_expiry(&token).inspect_err(|err| {
                tracing::info!(sid = %socket.id, %err, "refused a socket's token");
            })?;
            (Peer::User(identity), Some(exp))
        }
        None => {
            match read_cookie(&socket.req_parts().headers, SESSION_COOKIE).map(|t| gate.tokens.verify_with_expiry(&t)) {
                Some(Ok((identity, exp))) => (Peer::User(identity), Some(exp)),
                Some(Err(err)) if !gate.allow_anonymous => return Err(Refused::Token(err)),
                _ if gate.allow_anonymous => (Peer::Anonymous, None),
                _ => return Err(Refused::AuthRequired),
            }
        }
    };
    let conn = socket.req_parts().extensions.get::<axum::extract::ConnectInfo<PeerConn>>().map(|c| c.0.clone());
    let client_ip = conn.as_ref().map(|c| gate.trusted_proxies.client_ip_of(c.addr.ip(), &socket.req_parts().headers));
    let slot = match client_ip.map(|ip| gate.caps.admit(ip)) {
        Some(None) => {
            gate.metrics.rejected(Rejection::ConnectionsPerIp);
            tracing::info!(sid = %socket.id, "refused a socket: too many connections from its address");
            return Err(Refused::TooManyConnections);
        }
        Some(Some(slot)) => Some(slot),
        // Only in-process callers without a listener (none in production).
        None => None,
    };
    let span = match &peer {
        Peer::User(identity) => tracing::info_span!(
            "conn", sid = %socket.id, transport = ?socket.transport_type(), user = %identity.user
        ),
        Peer::Anonymous => tracing::info_span!("conn", sid = %socket.id, transport = ?socket.transport_type()),
    };
    let state = Arc::new(ConnectionState {
        span,
        send_rate: TokenBucket::new(gate.send_rate),
        events: TokenBucket::new(gate.event_rate),
        in_flight: AtomicUsize::new(0),
        slot: Mutex::new(slot),
        joined: Mutex::default(),
        expiry: Mutex::new(None),
        reads: Arc::new(Semaphore::new(1)),
    });
    if let Some(exp) = expires {
        *lock(&state.expiry) = Some(close_at_expiry(&socket, &io, &fanout, &gate.metrics, exp));
    }
    socket.extensions.insert(Connection(state));
    admit_socket(&socket, &peer, &engine);
    socket.extensions.insert(peer);
    Ok(())
}

/// The `closing` a connection gets when its token expires.
pub fn token_expired_closing() -> Closing {
    Closing {
        reason: "token_expired".to_owned(),
        detail: "the token this connection was opened with has expired; reconnect with a new one".to_owned(),
    }
}

/// How long a connection closed for its token has to read why.
const EXPIRED_GRACE: Duration = Duration::from_secs(1);

/// Closes the socket once its token `exp` (seconds since the Unix epoch)
/// has passed, with the leeway tokens are checked with (and a second more,
/// as they are checked in whole seconds): a reconnect with the same token is
/// then refused as expired, rather than let in again.
fn close_at_expiry(
    socket: &SocketRef,
    io: &SocketIo,
    fanout: &Fanout,
    metrics: &Arc<Metrics>,
    exp: u64,
) -> tokio::task::AbortHandle {
    let deadline = UNIX_EPOCH + Duration::from_secs(exp.saturating_add(LEEWAY_SECS + 1));
    let left = deadline.duration_since(SystemTime::now()).unwrap_or_default();
    let (sid, io, fanout, metrics) = (socket.id, io.clone(), fanout.clone(), metrics.clone());
    tokio::spawn(async move {
        tokio::time::sleep(left).await;
        if let Some(socket) = io.get_socket(sid) {
            metrics.token_expired();
            span_of(&socket).in_scope(|| tracing::info!("token expired: closing the connection"));
            fanout.close(socket, &token_expired_closing(), EXPIRED_GRACE);
        }
    })
    .abort_handle()
}

/// Registers Herald's handlers on the default namespace.
pub fn register(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate));
}

async fn on_connect(socket: SocketRef) {
    span_of(&socket).in_scope(|| tracing::debug!("socket connected"));
}

/// Registers the socket's event handlers and puts a user's socket in their
/// channel. Called from the connect middleware, not the connect handler:
/// socketioxide sends the client its CONNECT packet before it runs (spawns)
/// the connect handler, so a client that emits `join` the moment it is
/// connected could otherwise beat the handlers' registration and have its
/// event dropped without an ack.
fn admit_socket(socket: &SocketRef, peer: &Peer, engine: &Engine) {
    engine.listen(&Channel::Everyone);
    if let Peer::User(identity) = peer {
        let channel = Channel::User(identity.user.clone());
        socket.join(channel.socket_room().unwrap_or_default());
        engine.listen(&channel);
    }
    socket.on(EV_JOIN, on_join);
    socket.on(EV_LEAVE, on_leave);
    socket.on(EV_SEND, on_send);
    socket.on(EV_SYNC, on_sync);
    socket.on(EV_MARK_READ, on_mark_read);
    socket.on_disconnect(
        async |socket: SocketRef,
               io: SocketIo,
               reason: socketioxide::socket::DisconnectReason,
               State(announcer): State<Announcer>,
               State(gate): State<Gate>,
               State(engine): State<Engine>| {
            span_of(&socket).in_scope(|| tracing::debug!(%reason, "socket disconnected"));
            gate.transports.forget(&socket.id);
            engine.unlisten(&Channel::Everyone);
            if let Some(identity) = user_of(&socket) {
                engine.unlisten(&Channel::User(identity.user));
            }
            if let Some(conn) = connection(&socket) {
                for (room, _) in lock(&conn.joined).drain() {
                    engine.unlisten(&Channel::Room(room));
                }
                // Give the per-IP slot back now, before the others hear this
                // connection left, rather than whenever the socket is dropped.
                lock(&conn.slot).take();
                if let Some(expiry) = lock(&conn.expiry).take() {
                    expiry.abort();
                }
            }
            for room in announcer.presence().leave_all(&socket.id.to_string()) {
                announcer.changed(&io, &room);
            }
        },
    );
}

/// Why an event is not served.
enum Refusal {
    /// The socket was let go as a slow consumer: it is sent nothing more.
    Ignore,
    Answer(ErrorReply),
}

/// An admitted request: holds its place among the connection's requests in
/// flight until it is answered (dropped).
struct Admitted(Arc<ConnectionState>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Admits an event costing `cost`; see the module docs.
fn admit(socket: &SocketRef, gate: &Gate, fanout: &Fanout, cost: EventCost) -> Result<Admitted, Refusal> {
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
fn admit_or_answer(
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

#[allow(clippy::too_many_arguments)]
async fn on_join(
    socket: SocketRef,
    io: SocketIo,
    TryData(request): TryData<Object<JoinRequest>>,
    State(engine): State<Engine>,
    State(announcer): State<Announcer>,
    State(gate): State<Gate>,
    State(fanout): State<Fanout>,
    ack: AckSender,
) {
    let Some((_admitted, ack)) = admit_or_answer(&socket, &gate, &fanout, EventCost::Join, ack) else { return };
    let result = match request {
        Ok(Object(request)) => join(&socket, &gate, &fanout, &engine, request).instrument(span_of(&socket)).await,
        Err(err) => Err(Refusal::Answer(ErrorReply::malformed(err))),
    };
    // The turn (when the join read the store) is held until the answer is
    // queued.
    let (reply, newly_joined, _turn) = match result {
        Ok((joined, newly, turn)) => (Reply::Ok(joined), newly, turn),
        Err(Refusal::Answer(error)) => (Reply::Error(error), false, None),
        Err(Refusal::Ignore) => return,
    };
    let room = match &reply {
        Reply::Ok(joined) => Some(joined.room.clone()),
        Reply::Error(_) => None,
    };
    fanout.reply(&socket, ack, &reply);
    if let Some(room) = room.filter(|_| newly_joined) {
        let member = match user_of(&socket) {
            Some(identity) => Member::User(identity),
            None => Member::Anonymous,
        };
        if announcer.presence().join(&room, &socket.id.to_string(), member) {
            announcer.changed(&io, &room);
        }
    }
}

/// Forgets that the socket joined `room` (it left, or its join failed):
/// out of the room's sockets and off its listeners. False if it was not in.
fn forget_room(socket: &SocketRef, conn: &ConnectionState, engine: &Engine, room: &RoomName) -> bool {
    let channel = Channel::Room(room.clone());
    if let Some(key) = channel.socket_room() {
        socket.leave(key);
    }
    let was_in = lock(&conn.joined).remove(room).is_some();
    if was_in {
        engine.unlisten(&channel);
    }
    was_in
}

/// Joins a room and reads what the client missed; the flag says whether
/// the socket was not in the room before.
async fn join(
    socket: &SocketRef,
    gate: &Gate,
    fanout: &Fanout,
    engine: &Engine,
    request: JoinRequest,
) -> Result<(Joined, bool, Option<ReadTurn>), Refusal> {
    let room = RoomName::parse(&request.room).map_err(|e| Refusal::Answer(e.into()))?;
    let conn = connection(socket).ok_or(Refusal::Ignore)?;
    let channel = Channel::Room(room.clone());
    {
        let mut joined = lock(&conn.joined);
        // Already in (or joining): everything stored since it joined is sent
        // to it live, and the first join's answer carries the catch-up, so
        // there is nothing to read.
        if let Some(head) = joined.get(&room) {
            let joined = Joined { room, head: (*head).max(Seq(request.since)), messages: Vec::new(), truncated: false };
            return Ok((joined, false, None));
        }
        if joined.len() >= ROOMS_PER_SOCKET_MAX {
            return Err(Refusal::Answer(ErrorReply::new(
                "too_many_rooms",
                format!("a connection may join at most {ROOMS_PER_SOCKET_MAX} rooms"),
            )));
        }
        // Taken now, so that joins of the same room sent together read once;
        // from now on the room's stream is kept for this socket.
        joined.insert(room.clone(), Seq(request.since));
        engine.listen(&channel);
    }
    let turn = match gate.read_turn(&conn, socket, fanout).await {
        Ok(turn) => turn,
        Err(refusal) => {
            forget_room(socket, &conn, engine, &room);
            return Err(refusal);
        }
    };
    // The socket joins the room's sockets in the step the catch-up's end is
    // read: everything after it reaches the socket live, everything up to
    // it is in the answer, nothing both ways.
    let key = channel.socket_room().unwrap_or_default();
    match engine.catch_up(&channel, Seq(request.since), || socket.join(key)).await {
        Ok(catch_up) => {
            // Still joined (not left meanwhile): remember the head. Left
            // meanwhile: out of the room again, whichever came first.
            let still = lock(&conn.joined).get_mut(&room).map(|head| *head = catch_up.head).is_some();
            if !still && let Some(key) = channel.socket_room() {
                socket.leave(key);
            }
            let joined = Joined { room, head: catch_up.head, messages: catch_up.items, truncated: catch_up.truncated };
            Ok((joined, still, Some(turn)))
        }
        Err(err) => {
            tracing::warn!(%err, %room, "join: reading history failed");
            // Not in the room before (or this would have been answered from
            // memory), so not in it after.
            forget_room(socket, &conn, engine, &room);
            Err(Refusal::Answer(ErrorReply::unavailable()))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn on_leave(
    socket: SocketRef,
    io: SocketIo,
    TryData(request): TryData<Object<LeaveRequest>>,
    State(announcer): State<Announcer>,
    State(gate): State<Gate>,
    State(fanout): State<Fanout>,
    State(engine): State<Engine>,
    ack: AckSender,
) {
    let Some((_admitted, ack)) = admit_or_answer(&socket, &gate, &fanout, EventCost::Leave, ack) else { return };
    let result = request.map_err(ErrorReply::malformed).and_then(|Object(request)| {
        let room = RoomName::parse(&request.room)?;
        if let Some(conn) = connection(&socket) {
            forget_room(&socket, &conn, &engine, &room);
        }
        Ok(room)
    });
    let left = result.as_ref().ok().cloned();
    fanout.reply(&socket, ack, &Reply::from(result.map(|_| ())));
    if let Some(room) = left
        && announcer.presence().leave(&room, &socket.id.to_string())
    {
        announcer.changed(&io, &room);
    }
}

async fn on_send(
    socket: SocketRef,
    TryData(request): TryData<Object<SendRequest>>,
    State(chat): State<Chat>,
    State(gate): State<Gate>,
    State(fanout): State<Fanout>,
    ack: AckSender,
) {
    let Some((_admitted, ack)) = admit_or_answer(&socket, &gate, &fanout, EventCost::Send, ack) else { return };
    let result = match admit_send(&socket, &gate) {
        Err(refusal) => Err(refusal),
        Ok(_work) => match request {
            Ok(Object(request)) => {
                send(&chat, request, socket.extensions.get::<Peer>()).instrument(span_of(&socket)).await
            }
            Err(err) => Err(ErrorReply::malformed(err)),
        },
    };
    fanout.reply(&socket, ack, &Reply::from(result));
}

/// Whether this socket may send now: not while draining, and not faster
/// than its rate. The returned guard keeps a shutdown waiting until the
/// send has been answered.
fn admit_send(socket: &SocketRef, gate: &Gate) -> Result<Work, ErrorReply> {
    let work = gate.drain.start().ok_or_else(ErrorReply::shutting_down)?;
    if let Some(conn) = connection(socket)
        && let Err(wait) = conn.send_rate.take()
    {
        gate.metrics.rejected(Rejection::SendRate);
        return Err(ErrorReply::rate_limited("messages", retry_after_ms(wait)));
    }
    Ok(work)
}

async fn send(chat: &Chat, request: SendRequest, peer: Option<Peer>) -> Result<StoredMessage, ErrorReply> {
    let mut message = request.validate()?;
    // A signed-in user chats under the token's name, whatever the payload
    // says, and the message says it was them.
    if let Some(Peer::User(identity)) = peer {
        message.name = identity.display_name();
        message.user = Some(identity.user);
    }
    chat.post(&message, request.retry).await.map_err(|err| match err {
        PostError::Invalid(reply) => reply,
        PostError::Store(err) => {
            tracing::warn!(%err, room = %message.room, "send: storing failed");
            ErrorReply::unavailable()
        }
    })
}

fn user_of(socket: &SocketRef) -> Option<Identity> {
    match socket.extensions.get::<Peer>() {
        Some(Peer::User(identity)) => Some(identity),
        _ => None,
    }
}

async fn on_sync(
    socket: SocketRef,
    TryData(request): TryData<Object<SyncRequest>>,
    State(engine): State<Engine>,
    State(gate): State<Gate>,
    State(fanout): State<Fanout>,
    ack: AckSender,
) {
    let Some((_admitted, ack)) = admit_or_answer(&socket, &gate, &fanout, EventCost::Sync, ack) else { return };
    let user = user_of(&socket);
    let Some(conn) = connection(&socket) else { return };
    // The turn is held until the answer is queued.
    let (result, _turn) = match request {
        Ok(Object(request)) => match gate.read_turn(&conn, &socket, &fanout).await {
            Ok(turn) => {
                let missed = sync(&engine, user.as_ref(), request).await.map_err(|err| {
                    tracing::warn!(%err, "sync: reading notifications failed");
                    ErrorReply::new("unavailable", "notifications can't be read right now; try again")
                });
                (missed, Some(turn))
            }
            Err(Refusal::Answer(busy)) => (Err(busy), None),
            Err(Refusal::Ignore) => return,
        },
        Err(err) => (Err(ErrorReply::malformed(err)), None),
    };
    fanout.reply(&socket, ack, &Reply::from(result));
}

/// What a connection missed of its user's inbox (if it has a user) and of
/// the broadcast stream. The socket has been in both channels since it
/// connected, so a notification delivered live meanwhile may be in the
/// answer too; the client keeps each seq once.
async fn sync(
    engine: &Engine,
    user: Option<&Identity>,
    request: SyncRequest,
) -> Result<Synced, crate::store::StoreError> {
    let broadcast = engine.catch_up(&Channel::Everyone, Seq(request.broadcast), || {}).await?.items;
    let Some(identity) = user else {
        return Ok(Synced { inbox: Vec::new(), broadcast, unread: 0 });
    };
    let inbox = engine.catch_up(&Channel::User(identity.user.clone()), Seq(request.inbox), || {}).await?.items;
    let unread = engine.inbox().unread(&identity.user).await?;
    Ok(Synced { inbox, broadcast, unread })
}

async fn on_mark_read(
    socket: SocketRef,
    TryData(request): TryData<Object<MarkReadRequest>>,
    State(notifier): State<Notifier>,
    State(gate): State<Gate>,
    State(fanout): State<Fanout>,
    ack: AckSender,
) {
    let Some((_admitted, ack)) = admit_or_answer(&socket, &gate, &fanout, EventCost::MarkRead, ack) else { return };
    let Some(conn) = connection(&socket) else { return };
    let (result, _turn) = match (request, user_of(&socket)) {
        (Err(err), _) => (Err(ErrorReply::malformed(err)), None),
        (Ok(_), None) => (Err(ErrorReply::new("no_inbox", "anonymous connections have no inbox")), None),
        (Ok(Object(request)), Some(identity)) => match gate.read_turn(&conn, &socket, &fanout).await {
            Ok(turn) => (notifier.mark_read(&identity.user, request).instrument(span_of(&socket)).await, Some(turn)),
            Err(Refusal::Answer(busy)) => (Err(busy), None),
            Err(Refusal::Ignore) => return,
        },
    };
    fanout.reply(&socket, ack, &Reply::from(result));
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
