//! Posting a message: the one path the Socket.IO `send` event, the
//! no-JavaScript form and room publishes take, so they check, store and
//! broadcast identically.

use std::sync::Arc;

use herald::protocol::ErrorReply;
use herald::{NewMessage, StoredMessage};

use crate::engine::Engine;
use crate::hooks::Webhooks;
use crate::ops::metrics::Metrics;
use crate::store::StoreError;

/// Why a message was not posted.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// It breaks this server's configured limits; the reply says which.
    #[error("{}", .0.reason)]
    Invalid(ErrorReply),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// This server's limits on messages, tighter than (or equal to) the
/// protocol's own.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    pub body_max_chars: usize,
    pub name_max_chars: usize,
}

/// Storing and fanning out chat messages.
#[derive(Clone)]
pub struct Chat {
    engine: Engine,
    metrics: Arc<Metrics>,
    limits: MessageLimits,
    /// Told of every stored message (for `message.stored`), when set.
    webhooks: Option<Webhooks>,
}

impl Chat {
    pub fn new(engine: Engine, metrics: Arc<Metrics>, limits: MessageLimits, webhooks: Option<Webhooks>) -> Self {
        Self { engine, metrics, limits, webhooks }
    }

    /// Checks `message` against this server's limits, stores it (with the
    /// room's other messages sent meanwhile: one batch), then broadcasts it
    /// to everyone in its room, in sequence order; the answer waits for
    /// that.
    ///
    /// Architecture invariant: a message is stored before anyone is told
    /// about it. If the broadcast is lost, clients still get the message
    /// from history when they next join; if the store fails, nobody has
    /// seen it and the sender gets an error to retry with the same id.
    pub async fn post(&self, message: &NewMessage, retry: bool) -> Result<StoredMessage, PostError> {
        self.metrics.message_received();
        if message.body.as_str().chars().count() > self.limits.body_max_chars {
            return Err(PostError::Invalid(ErrorReply::new(
                "too_long",
                format!("a message may be at most {} characters", self.limits.body_max_chars),
            )));
        }
        if message.name.as_str().chars().count() > self.limits.name_max_chars {
            return Err(PostError::Invalid(ErrorReply::new(
                "invalid_name",
                format!("a name may be at most {} characters", self.limits.name_max_chars),
            )));
        }
        let stored = self.engine.post(message.clone(), retry).await?;
        self.metrics.message_stored();
        if let Some(webhooks) = &self.webhooks {
            webhooks.message_stored(&stored);
        }
        Ok(stored)
    }
}
