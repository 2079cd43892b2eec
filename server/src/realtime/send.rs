//! `send`: a chat message from a socket, posted through [`Chat::post`] like
//! the no-JavaScript form's; a signed-in user sends under the token's name.

use herald::StoredMessage;
use herald::protocol::{ErrorReply, Reply, SendRequest};
use socketioxide::extract::{AckSender, SocketRef, State};
use tracing::Instrument;

use crate::chat::{Chat, PostError};
use crate::engine::fanout::Fanout;
use crate::http::admission::retry_after_ms;
use crate::ops::lifecycle::Work;
use crate::ops::metrics::Rejection;
use crate::realtime::socket::{EventCost, Gate, Payload, Peer, admit_or_answer, connection, span_of};

pub(super) async fn on_send(
    socket: SocketRef,
    Payload(request): Payload<SendRequest>,
    State(chat): State<Chat>,
    State(gate): State<Gate>,
    State(fanout): State<Fanout>,
    ack: AckSender,
) {
    let Some((_admitted, ack)) = admit_or_answer(&socket, &gate, &fanout, EventCost::Send, ack) else { return };
    let result = match admit_send(&socket, &gate) {
        Err(refusal) => Err(refusal),
        Ok(_work) => match request {
            Ok(request) => {
                send(&chat, &gate, request, socket.extensions.get::<Peer>()).instrument(span_of(&socket)).await
            }
            Err(malformed) => Err(malformed),
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

async fn send(chat: &Chat, gate: &Gate, request: SendRequest, peer: Option<Peer>) -> Result<StoredMessage, ErrorReply> {
    let mut message = request.validate()?;
    let identity = match &peer {
        Some(Peer::User(identity)) => Some(identity),
        _ => None,
    };
    gate.access.check(&message.room, identity).await.allowed()?;
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
