//! The handshake: who a socket is (the token it presents, or else its
//! browser's session cookie), whether its address may open one more
//! connection, and closing it when its token expires. A socket let in gets
//! its event handlers and its channels here.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::protocol::{Closing, EV_JOIN, EV_LEAVE, EV_MARK_READ, EV_SEND, EV_SYNC};
use serde::Deserialize;
use socketioxide::SocketIo;
use socketioxide::extract::{SocketRef, State, TryData};
use tokio::sync::Semaphore;

use crate::auth::session::{SESSION_COOKIE, read_cookie};
use crate::auth::tokens::{LEEWAY_SECS, TokenError};
use crate::engine::fanout::Fanout;
use crate::engine::presence::Announcer;
use crate::engine::{Channel, Engine};
use crate::http::admission::TokenBucket;
use crate::http::conn::PeerConn;
use crate::ops::metrics::{Metrics, Rejection};
use crate::realtime::inbox::{on_mark_read, on_sync};
use crate::realtime::rooms::{on_join, on_leave};
use crate::realtime::send::on_send;
use crate::realtime::socket::{Connection, ConnectionState, Gate, Peer, connection, span_of, user_of};
use crate::sync::lock;

/// The handshake's `auth` payload: `{"token": "…"}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct HandshakeAuth {
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
pub(super) async fn authenticate(
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
    let conn = PeerConn::of(&socket.req_parts().extensions).cloned();
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
        presence: Arc::default(),
    });
    if let Some(exp) = expires {
        *lock(&state.expiry) = Some(close_at_expiry(&socket, &io, &fanout, &gate.metrics, exp));
    }
    socket.extensions.insert(Connection(state));
    admit_socket(&socket, &peer, &engine);
    socket.extensions.insert(peer);
    Ok(())
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
            fanout.close(socket, &Closing::token_expired(), EXPIRED_GRACE);
        }
    })
    .abort_handle()
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
            let conn = connection(&socket);
            // Held until its rooms are out of presence: a join recording
            // its presence now finishes first.
            let _presence = match &conn {
                Some(conn) => Some(conn.presence.clone().lock_owned().await),
                None => None,
            };
            if let Some(conn) = &conn {
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
            announcer.disconnected(&socket.id.to_string()).await;
        },
    );
}
