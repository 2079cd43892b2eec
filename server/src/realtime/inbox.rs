//! `sync` and `mark_read`: what a socket missed of its user's inbox and of
//! the broadcast stream, and marking notifications read.

use herald::protocol::{ErrorReply, MarkReadRequest, Reply, SyncRequest};
use herald::{Identity, Seq};
use serde::Serialize;
use socketioxide::extract::{AckSender, SocketRef, State};
use tracing::Instrument;

use crate::engine::fanout::Fanout;
use crate::engine::{Channel, Encoded, Engine};
use crate::notify::Notifier;
use crate::realtime::socket::{EventCost, Gate, Payload, Refusal, admit_or_answer, connection, span_of, user_of};
use crate::store::StoreError;

/// The answer to a `sync` (`protocol::Synced`), its notifications already
/// encoded, as a join's messages are.
#[derive(Serialize)]
struct Synced {
    inbox: Vec<Encoded>,
    broadcast: Vec<Encoded>,
    unread: u64,
}

pub(super) async fn on_sync(
    socket: SocketRef,
    Payload(request): Payload<SyncRequest>,
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
        Ok(request) => match gate.read_turn(&conn, &socket, &fanout).await {
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
        Err(malformed) => (Err(malformed), None),
    };
    fanout.reply(&socket, ack, &Reply::from(result));
}

/// What a connection missed of its user's inbox (if it has a user) and of
/// the broadcast stream. The socket has been in both channels since it
/// connected, so a notification delivered live meanwhile may be in the
/// answer too; the client keeps each seq once.
async fn sync(engine: &Engine, user: Option<&Identity>, request: SyncRequest) -> Result<Synced, StoreError> {
    let broadcast = engine.catch_up(&Channel::Everyone, Seq(request.broadcast), || {}).await?.items;
    let Some(identity) = user else {
        return Ok(Synced { inbox: Vec::new(), broadcast, unread: 0 });
    };
    let inbox = engine.catch_up(&Channel::User(identity.user.clone()), Seq(request.inbox), || {}).await?.items;
    let unread = engine.inbox().unread(&identity.user).await?;
    Ok(Synced { inbox, broadcast, unread })
}

pub(super) async fn on_mark_read(
    socket: SocketRef,
    Payload(request): Payload<MarkReadRequest>,
    State(notifier): State<Notifier>,
    State(gate): State<Gate>,
    State(fanout): State<Fanout>,
    ack: AckSender,
) {
    let Some((_admitted, ack)) = admit_or_answer(&socket, &gate, &fanout, EventCost::MarkRead, ack) else { return };
    let Some(conn) = connection(&socket) else { return };
    let (result, _turn) = match (request, user_of(&socket)) {
        (Err(malformed), _) => (Err(malformed), None),
        (Ok(_), None) => (Err(ErrorReply::new("no_inbox", "anonymous connections have no inbox")), None),
        (Ok(request), Some(identity)) => match gate.read_turn(&conn, &socket, &fanout).await {
            Ok(turn) => (notifier.mark_read(&identity.user, request).instrument(span_of(&socket)).await, Some(turn)),
            Err(Refusal::Answer(busy)) => (Err(busy), None),
            Err(Refusal::Ignore) => return,
        },
    };
    fanout.reply(&socket, ack, &Reply::from(result));
}
