//! The data a room page renders and the server function that loads it.

use herald::{RoomName, Seq, StoredMessage};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// Everything a room page shows when it is rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomPage {
    pub room: RoomName,
    /// The last messages of the room, oldest first.
    pub messages: Vec<StoredMessage>,
    /// The sequence the live client joins from: every message after it
    /// reaches the page, whether stored before or after the socket joined.
    pub since: Seq,
    /// The name the composer is prefilled with.
    pub name: String,
    /// The CSRF token of the no-JavaScript form.
    pub csrf_token: String,
    /// A fresh client message id for the no-JavaScript form, so a double
    /// submit stores the message once.
    pub form_client_id: String,
    /// Why the last form post was rejected, if it was.
    pub form_error: Option<String>,
    /// The text of a rejected post, kept so nothing typed is lost.
    pub draft: String,
}

/// The outcome of loading a room page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoomLoad {
    Found(RoomPage),
    /// The room name breaks the naming rule.
    NotFound,
}

/// Loads a room page: its recent history, the visitor's name and form token.
#[server(prefix = "/api")]
pub async fn load_room(room: String) -> Result<RoomLoad, ServerFnError> {
    use crate::ssr::{Backend, FormRejection, Visitor};
    use axum::http::{StatusCode, request::Parts};
    use leptos_axum::ResponseOptions;

    let set_status = |status: StatusCode| {
        if let Some(response) = use_context::<ResponseOptions>() {
            response.set_status(status);
        }
    };
    let Ok(room) = RoomName::parse(&room) else {
        set_status(StatusCode::NOT_FOUND);
        return Ok(RoomLoad::NotFound);
    };
    let Backend(history) = use_context::<Backend>().ok_or_else(|| ServerFnError::new("no backend"))?;
    let parts = use_context::<Parts>().ok_or_else(|| ServerFnError::new("no request"))?;
    let visitor = parts.extensions.get::<Visitor>().cloned().ok_or_else(|| ServerFnError::new("no visitor"))?;
    let rejection = parts.extensions.get::<FormRejection>().cloned();

    let recent = history.recent(&room).await.map_err(|err| {
        set_status(StatusCode::SERVICE_UNAVAILABLE);
        ServerFnError::new(err)
    })?;
    // Join from the newest message rendered, not from the head: a message
    // whose sequence was allocated but not yet stored when the page was
    // read must still reach the page through the join.
    let since = recent.messages.last().map_or(recent.head, |m| m.seq);
    Ok(RoomLoad::Found(RoomPage {
        room,
        messages: recent.messages,
        since,
        name: rejection.as_ref().map_or_else(|| visitor.name.to_string(), |r| r.name.clone()),
        csrf_token: visitor.csrf_token,
        form_client_id: visitor.form_client_id,
        form_error: rejection.as_ref().map(|r| r.error.clone()),
        draft: rejection.map(|r| r.body).unwrap_or_default(),
    }))
}
