//! The Socket.IO layer: events `join`, `leave` and `send` on namespace `/`.
//!
//! Each handler parses its payload at the boundary and always answers the
//! client's ack with a [`Reply`], so a malformed or invalid request gets a
//! reason and the connection stays up. `docs/PROTOCOL.md` documents the
//! events.

use std::sync::Arc;

use herald::protocol::{
    EV_JOIN, EV_LEAVE, EV_MARK_READ, EV_PRESENCE, EV_READ, EV_SEND, EV_SYNC, ErrorReply, JoinRequest, Joined,
    LeaveRequest, MARK_READ_MAX, MarkReadRequest, Object, PresenceSnapshot, ROOMS_PER_SOCKET_MAX, ReadUpdate, Reply,
    SendRequest, SyncRequest, Synced,
};
use herald::{Identity, RoomName, Seq, StoredMessage, UserId};
use serde::{Deserialize, Serialize};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use tracing::{Instrument, Span};

use crate::auth::{TokenError, Tokens};
use crate::chat::{Chat, PostError, room_key};
use crate::config::{Rate, TrustedProxies};
use crate::conn::PeerConn;
use crate::fanout::{Audience, Fanout, Transports};
use crate::inbox::Inbox;
use crate::lifecycle::Drain;
use crate::limits::{ConnectionCaps, ConnectionSlot, TokenBucket};
use crate::metrics::{Metrics, Rejection};
use crate::presence::{Member, SharedPresence};
use crate::session::SESSION_COOKIE;
use crate::visitor::read_cookie;

/// The Socket.IO room of one user's sockets: every tab and device of theirs.
/// No client event can join it: only a verified token puts a socket there.
pub fn user_key(user: &UserId) -> String {
    format!("user:{user}")
}

/// Who is on the other end of a socket, decided once at the handshake.
#[derive(Debug, Clone)]
pub enum Peer {
    User(Identity),
    Anonymous,
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
    pub drain: Drain,
    pub metrics: Arc<Metrics>,
    pub transports: Transports,
}

/// What a connection carries for its lifetime (in the socket's extensions):
/// its span, its send-rate bucket and its place in the per-IP count, which
/// the disconnect handler gives back.
#[derive(Clone)]
struct Connection {
    span: Span,
    send_rate: Arc<TokenBucket>,
    slot: Arc<std::sync::Mutex<Option<ConnectionSlot>>>,
}

/// The connection's span, for its handlers.
fn span_of(socket: &SocketRef) -> Span {
    socket.extensions.get::<Connection>().map(|c| c.span).unwrap_or_else(Span::none)
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
    TryData(auth): TryData<HandshakeAuth>,
    State(gate): State<Gate>,
) -> Result<(), Refused> {
    if gate.drain.is_draining() {
        return Err(Refused::ShuttingDown);
    }
    let presented = auth.ok().and_then(|auth| auth.token);
    let peer = match presented {
        Some(token) => Peer::User(gate.tokens.verify(&token).inspect_err(|err| {
            tracing::info!(sid = %socket.id, %err, "refused a socket's token");
        })?),
        None => match read_cookie(&socket.req_parts().headers, SESSION_COOKIE).map(|t| gate.tokens.verify(&t)) {
            Some(Ok(identity)) => Peer::User(identity),
            Some(Err(err)) if !gate.allow_anonymous => return Err(Refused::Token(err)),
            _ if gate.allow_anonymous => Peer::Anonymous,
            _ => return Err(Refused::AuthRequired),
        },
    };
    let conn = socket.req_parts().extensions.get::<axum::extract::ConnectInfo<PeerConn>>().map(|c| c.0.clone());
    let forwarded_for = socket.req_parts().headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let client_ip = conn.as_ref().map(|c| gate.trusted_proxies.client_ip(c.addr.ip(), forwarded_for));
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
    socket.extensions.insert(Connection {
        span,
        send_rate: Arc::new(TokenBucket::new(gate.send_rate)),
        slot: Arc::new(std::sync::Mutex::new(slot)),
    });
    admit(&socket, &peer);
    socket.extensions.insert(peer);
    Ok(())
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
fn admit(socket: &SocketRef, peer: &Peer) {
    if let Peer::User(identity) = peer {
        socket.join(user_key(&identity.user));
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
               State(presence): State<SharedPresence>,
               State(gate): State<Gate>,
               State(fanout): State<Fanout>| {
            span_of(&socket).in_scope(|| tracing::debug!(%reason, "socket disconnected"));
            gate.transports.forget(&socket.id);
            // Give the per-IP slot back now, before the others hear this
            // connection left, rather than whenever the socket is dropped.
            if let Some(conn) = socket.extensions.get::<Connection>() {
                conn.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            }
            for snapshot in presence.leave_all(&socket.id.to_string()) {
                announce(&io, &fanout, &snapshot);
            }
        },
    );
}

fn answer<T: Serialize>(ack: AckSender, reply: &Reply<T>) {
    if let Err(err) = ack.send(reply) {
        tracing::debug!(%err, "could not send ack");
    }
}

/// Tells a room who is in it now.
fn announce(io: &SocketIo, fanout: &Fanout, snapshot: &PresenceSnapshot) {
    let Ok(room) = RoomName::parse(&snapshot.room) else { return };
    fanout.deliver(io, Audience::Room(&room_key(&room)), EV_PRESENCE, snapshot);
}

async fn on_join(
    socket: SocketRef,
    io: SocketIo,
    TryData(request): TryData<Object<JoinRequest>>,
    State(chat): State<Chat>,
    State(presence): State<SharedPresence>,
    State(fanout): State<Fanout>,
    ack: AckSender,
) {
    let request = request.map(|Object(request)| request);
    let result = match request {
        Ok(request) => join(&socket, &chat, request).instrument(span_of(&socket)).await,
        Err(err) => Err(ErrorReply::malformed(err)),
    };
    let joined_room = result.as_ref().ok().map(|joined| joined.room.clone());
    answer(ack, &Reply::from(result));
    if let Some(room) = joined_room {
        let member = match user_of(&socket) {
            Some(identity) => Member::User(identity),
            None => Member::Anonymous,
        };
        match presence.join(&room, &socket.id.to_string(), member) {
            Some(snapshot) => announce(&io, &fanout, &snapshot),
            // A re-join changes nothing for the others; this socket still
            // needs to know who is there.
            None => {
                fanout.emit(&socket, EV_PRESENCE, &presence.snapshot(&room));
            }
        }
    }
}

async fn join(socket: &SocketRef, chat: &Chat, request: JoinRequest) -> Result<Joined, ErrorReply> {
    let room = RoomName::parse(&request.room)?;
    let key = room_key(&room);
    let rooms = socket.rooms();
    if !rooms.iter().any(|r| *r == key) && rooms.len() >= ROOMS_PER_SOCKET_MAX {
        return Err(ErrorReply::new(
            "too_many_rooms",
            format!("a connection may join at most {ROOMS_PER_SOCKET_MAX} rooms"),
        ));
    }
    // Join first, read second: a message stored from now on is broadcast to
    // this socket, one stored before is in the read. One stored in between
    // arrives both ways and the client keeps it once (by sequence number).
    socket.join(key.clone());
    match chat.store().since(&room, Seq(request.since)).await {
        Ok(catch_up) => {
            Ok(Joined { room, head: catch_up.head, messages: catch_up.messages, truncated: catch_up.truncated })
        }
        Err(err) => {
            tracing::warn!(%err, %room, "join: reading history failed");
            socket.leave(key);
            Err(ErrorReply::unavailable())
        }
    }
}

async fn on_leave(
    socket: SocketRef,
    io: SocketIo,
    TryData(request): TryData<Object<LeaveRequest>>,
    State(presence): State<SharedPresence>,
    State(fanout): State<Fanout>,
    ack: AckSender,
) {
    let request = request.map(|Object(request)| request);
    let result = request.map_err(ErrorReply::malformed).and_then(|request| {
        let room = RoomName::parse(&request.room)?;
        socket.leave(room_key(&room));
        Ok(room)
    });
    let left = result.as_ref().ok().cloned();
    answer(ack, &Reply::from(result.map(|_| ())));
    if let Some(snapshot) = left.and_then(|room| presence.leave(&room, &socket.id.to_string())) {
        announce(&io, &fanout, &snapshot);
    }
}

async fn on_send(
    socket: SocketRef,
    io: SocketIo,
    TryData(request): TryData<Object<SendRequest>>,
    State(chat): State<Chat>,
    State(gate): State<Gate>,
    ack: AckSender,
) {
    let request = request.map(|Object(request)| request);
    let result = match admit_send(&socket, &gate) {
        Err(refusal) => Err(refusal),
        Ok(_work) => match request {
            Ok(request) => {
                send(&io, &chat, request, socket.extensions.get::<Peer>()).instrument(span_of(&socket)).await
            }
            Err(err) => Err(ErrorReply::malformed(err)),
        },
    };
    answer(ack, &Reply::from(result));
}

/// Whether this socket may send now: not while draining, and not faster
/// than its rate. The returned guard keeps a shutdown waiting until the
/// send has been answered.
fn admit_send(socket: &SocketRef, gate: &Gate) -> Result<crate::lifecycle::Work, ErrorReply> {
    let work = gate.drain.start().ok_or_else(ErrorReply::shutting_down)?;
    if let Some(conn) = socket.extensions.get::<Connection>()
        && let Err(wait) = conn.send_rate.take()
    {
        gate.metrics.rejected(Rejection::SendRate);
        return Err(ErrorReply::rate_limited("messages", u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)));
    }
    Ok(work)
}

async fn send(
    io: &SocketIo,
    chat: &Chat,
    request: SendRequest,
    peer: Option<Peer>,
) -> Result<StoredMessage, ErrorReply> {
    let mut message = request.validate()?;
    // A signed-in user chats under the token's name, whatever the payload says.
    if let Some(Peer::User(identity)) = peer {
        message.name = identity.display_name();
    }
    chat.post(io, &message, request.retry).await.map_err(|err| match err {
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
    State(inbox): State<Inbox>,
    ack: AckSender,
) {
    let request = request.map(|Object(request)| request);
    let user = user_of(&socket);
    let result: Result<Synced, ErrorReply> = match request {
        Ok(request) => inbox
            .missed(user.as_ref().map(|i| &i.user), Seq(request.inbox), Seq(request.broadcast))
            .await
            .map_err(|err| {
                tracing::warn!(%err, "sync: reading notifications failed");
                ErrorReply::new("unavailable", "notifications can't be read right now; try again")
            }),
        Err(err) => Err(ErrorReply::malformed(err)),
    };
    answer(ack, &Reply::from(result));
}

async fn on_mark_read(
    socket: SocketRef,
    io: SocketIo,
    TryData(request): TryData<Object<MarkReadRequest>>,
    State(inbox): State<Inbox>,
    State(fanout): State<Fanout>,
    ack: AckSender,
) {
    let request = request.map(|Object(request)| request);
    let result = match (request, user_of(&socket)) {
        (Err(err), _) => Err(ErrorReply::malformed(err)),
        (Ok(_), None) => Err(ErrorReply::new("no_inbox", "anonymous connections have no inbox")),
        (Ok(request), Some(identity)) => {
            mark_read(&io, &fanout, &inbox, &identity.user, request).instrument(span_of(&socket)).await
        }
    };
    answer(ack, &Reply::from(result));
}

/// Marks notifications read and tells every connection of the user.
pub async fn mark_read(
    io: &SocketIo,
    fanout: &Fanout,
    inbox: &Inbox,
    user: &UserId,
    request: MarkReadRequest,
) -> Result<ReadUpdate, ErrorReply> {
    if request.seqs.len() > MARK_READ_MAX {
        return Err(ErrorReply::new("too_many", format!("mark at most {MARK_READ_MAX} notifications at once, or all")));
    }
    let seqs: Vec<Seq> = request.seqs.iter().copied().map(Seq).collect();
    let unread = inbox.mark_read(user, (!request.all).then_some(seqs.as_slice())).await.map_err(|err| {
        tracing::warn!(%err, "mark_read failed");
        ErrorReply::new("unavailable", "read state can't be saved right now; try again")
    })?;
    let update = ReadUpdate { seqs: if request.all { Vec::new() } else { request.seqs }, all: request.all, unread };
    fanout.deliver(io, Audience::Room(&user_key(user)), EV_READ, &update);
    Ok(update)
}
