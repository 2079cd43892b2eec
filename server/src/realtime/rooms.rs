//! `join` and `leave`: a socket in and out of a chat room, with what it
//! missed, and the room's presence told.

use herald::protocol::{EV_REMOVED, ErrorReply, JoinRequest, LeaveRequest, ROOMS_PER_SOCKET_MAX, Removed, Reply};
use herald::{RoomName, Seq};
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, State};
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument;

use crate::engine::fanout::Fanout;
use crate::engine::presence::{Announcer, Member};
use crate::engine::{Channel, Encoded, Engine};
use crate::realtime::socket::{
    ConnectionState, EventCost, Gate, Payload, ReadTurn, Refusal, admit_or_answer, connection, span_of, user_of,
};
use crate::sync::lock;

/// A connection's turn to change its presence ([`ConnectionState::presence`]).
type PresenceTurn = tokio::sync::OwnedMutexGuard<()>;

/// The answer to a `join` (`protocol::Joined`), its messages encoded once
/// for every joiner.
#[derive(Serialize)]
struct Joined {
    room: RoomName,
    head: Seq,
    messages: Vec<Encoded>,
    truncated: bool,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn on_join(
    socket: SocketRef,
    Payload(request): Payload<JoinRequest>,
    State(engine): State<Engine>,
    State(announcer): State<Announcer>,
    State(gate): State<Gate>,
    State(fanout): State<Fanout>,
    ack: AckSender,
) {
    let Some((_admitted, ack)) = admit_or_answer(&socket, &gate, &fanout, EventCost::Join, ack) else { return };
    let result = match request {
        Ok(request) => join(&socket, &gate, &fanout, &engine, request).instrument(span_of(&socket)).await,
        Err(malformed) => Err(Refusal::Answer(malformed)),
    };
    // The turn (when the join read the store) is held until the answer is
    // queued.
    let (reply, newly_joined, _turn) = match result {
        Ok((joined, newly, turn)) => (Reply::Ok(joined), newly, turn),
        Err(Refusal::Answer(error)) => (Reply::Error(error), None, None),
        Err(Refusal::Ignore) => return,
    };
    let room = match &reply {
        Reply::Ok(joined) => Some(joined.room.clone()),
        Reply::Error(_) => None,
    };
    fanout.reply(&socket, ack, &reply);
    if let (Some(room), Some(_presence)) = (room, newly_joined) {
        let member = match user_of(&socket) {
            Some(identity) => Member::User(identity),
            None => Member::Anonymous,
        };
        announcer.joined(&room, &socket.id.to_string(), member).await;
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

/// Joins a room and reads what the client missed; when the socket was not
/// in the room before, with the connection's presence turn to record that
/// it now is.
async fn join(
    socket: &SocketRef,
    gate: &Gate,
    fanout: &Fanout,
    engine: &Engine,
    request: JoinRequest,
) -> Result<(Joined, Option<PresenceTurn>, Option<ReadTurn>), Refusal> {
    let room = RoomName::parse(&request.room).map_err(|e| Refusal::Answer(e.into()))?;
    let conn = connection(socket).ok_or(Refusal::Ignore)?;
    gate.access.check(&room, user_of(socket).as_ref()).await.allowed().map_err(|r| Refusal::Answer(r.into()))?;
    let channel = Channel::Room(room.clone());
    {
        let mut joined = lock(&conn.joined);
        // Already in (or joining): everything stored since it joined is sent
        // to it live, and the first join's answer carries the catch-up, so
        // there is nothing to read.
        if let Some(head) = joined.get(&room) {
            let joined = Joined { room, head: (*head).max(Seq(request.since)), messages: Vec::new(), truncated: false };
            return Ok((joined, None, None));
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
            // Taken before looking: a leave or the disconnect coming after
            // this look takes the room out of presence after it is in.
            let presence = conn.presence.clone().lock_owned().await;
            // Still joined (not left meanwhile): remember the head. Left
            // meanwhile: out of the room again, whichever came first.
            let still = lock(&conn.joined).get_mut(&room).map(|head| *head = catch_up.head).is_some();
            if !still && let Some(key) = channel.socket_room() {
                socket.leave(key);
            }
            let joined = Joined { room, head: catch_up.head, messages: catch_up.items, truncated: catch_up.truncated };
            Ok((joined, still.then_some(presence), Some(turn)))
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

/// Keeps sockets out of rooms they may no longer enter: whenever a room's
/// settings change (on this node or another), every socket of this node in
/// that room is checked again, and one refused now is taken out of it and
/// told why (`removed`). Runs for the life of the server.
pub fn enforce_access(io: SocketIo, gate: Gate, engine: Engine, announcer: Announcer, fanout: Fanout) {
    let mut changes = gate.access.changes();
    tokio::spawn(async move {
        loop {
            // `None`: changes were missed, so every room is checked.
            let changed = match changes.recv().await {
                Ok(room) => Some(room),
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "room settings changes missed: checking every room");
                    None
                }
                Err(RecvError::Closed) => return,
            };
            for socket in io.sockets() {
                let Some(conn) = connection(&socket) else { continue };
                let rooms: Vec<RoomName> = lock(&conn.joined)
                    .keys()
                    .filter(|room| changed.as_ref().is_none_or(|c| c == *room))
                    .cloned()
                    .collect();
                for room in rooms {
                    let Err(refusal) = gate.access.check(&room, user_of(&socket).as_ref()).await.allowed() else {
                        continue;
                    };
                    let _presence = conn.presence.lock().await;
                    if forget_room(&socket, &conn, &engine, &room) {
                        let reply = ErrorReply::from(refusal);
                        let removed = Removed { room: room.to_string(), code: reply.code, reason: reply.reason };
                        fanout.emit(&socket, EV_REMOVED, &removed);
                        announcer.left(&room, &socket.id.to_string()).await;
                    }
                }
            }
        }
    });
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn on_leave(
    socket: SocketRef,
    Payload(request): Payload<LeaveRequest>,
    State(announcer): State<Announcer>,
    State(gate): State<Gate>,
    State(fanout): State<Fanout>,
    State(engine): State<Engine>,
    ack: AckSender,
) {
    let Some((_admitted, ack)) = admit_or_answer(&socket, &gate, &fanout, EventCost::Leave, ack) else { return };
    let result = request.and_then(|request| Ok(RoomName::parse(&request.room)?));
    let conn = connection(&socket);
    // Held until the room is out of presence: a join of it recording its
    // presence now finishes first.
    let _presence = match (&result, &conn) {
        (Ok(_), Some(conn)) => Some(conn.presence.clone().lock_owned().await),
        _ => None,
    };
    if let (Ok(room), Some(conn)) = (&result, &conn) {
        forget_room(&socket, conn, &engine, room);
    }
    let left = result.as_ref().ok().cloned();
    fanout.reply(&socket, ack, &Reply::from(result.map(|_| ())));
    if let Some(room) = left {
        announcer.left(&room, &socket.id.to_string()).await;
    }
}
