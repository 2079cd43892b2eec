//! The data a room page renders and the server function that loads it.

use herald::notification::Notification;
use herald::protocol::PresenceSnapshot;
use herald::room::RoomEntry;
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
    /// Who is in the room as the page is rendered.
    pub presence: PresenceSnapshot,
    pub account: Account,
    /// Only some users may enter this room.
    pub private: bool,
    /// The rooms the visitor may go to from here.
    pub rooms: Vec<RoomEntry>,
}

/// The visitor's account and notifications, shown on every page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The signed-in user, if any.
    pub user: Option<SignedIn>,
    /// The page's CSRF token (forms: logout, mark read).
    pub csrf_token: String,
    /// The broadcast stream's newest sequence at render time.
    pub broadcast_since: Seq,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedIn {
    pub id: String,
    pub name: String,
    pub unread: u64,
    /// The newest notifications, newest first.
    pub notifications: Vec<Notification>,
}

/// How many notifications a page carries.
pub const NOTIFICATIONS_SHOWN: u64 = 20;

/// The notifications page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxPage {
    pub account: Account,
}

#[cfg(feature = "ssr")]
async fn account(
    backend: &crate::ssr::Backend,
    visitor: &crate::ssr::Visitor,
    limit: u64,
) -> Result<Account, ServerFnError> {
    let crate::ssr::Backend(source) = backend;
    let user = match &visitor.identity {
        Some(identity) => {
            let inbox = source.inbox(&identity.user, limit).await.map_err(ServerFnError::new)?;
            Some(SignedIn {
                id: identity.user.to_string(),
                name: identity.display_name().to_string(),
                unread: inbox.unread,
                notifications: inbox.recent,
            })
        }
        None => None,
    };
    let broadcast_since = source.broadcast_head().await.map_err(ServerFnError::new)?;
    Ok(Account { user, csrf_token: visitor.csrf_token.clone(), broadcast_since })
}

#[cfg(feature = "ssr")]
fn request_context() -> Result<(crate::ssr::Backend, crate::ssr::Visitor, axum::http::request::Parts), ServerFnError> {
    let backend = use_context::<crate::ssr::Backend>().ok_or_else(|| ServerFnError::new("no backend"))?;
    let parts = use_context::<axum::http::request::Parts>().ok_or_else(|| ServerFnError::new("no request"))?;
    let visitor =
        parts.extensions.get::<crate::ssr::Visitor>().cloned().ok_or_else(|| ServerFnError::new("no visitor"))?;
    Ok((backend, visitor, parts))
}

/// Loads the notifications page.
#[server(prefix = "/api")]
pub async fn load_inbox() -> Result<InboxPage, ServerFnError> {
    let (backend, visitor, _) = request_context()?;
    Ok(InboxPage { account: account(&backend, &visitor, 100).await? })
}

/// The outcome of loading a room page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoomLoad {
    Found(Box<RoomPage>),
    /// The room name breaks the naming rule.
    NotFound,
}

/// Loads a room page: its recent history, the visitor's name and form token.
/// Its endpoint is named (`POST /api/load_room`) so that the access rules'
/// tests can reach it as any client could.
#[server(prefix = "/api", endpoint = "load_room")]
pub async fn load_room(room: String) -> Result<RoomLoad, ServerFnError> {
    use crate::ssr::{FormRejection, PageAccess};
    use axum::http::StatusCode;
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
    let (backend, visitor, parts) = request_context()?;
    let rejection = parts.extensions.get::<FormRejection>().cloned();
    // A private room this visitor may not enter is not found, like a name
    // outside the rule: nothing says it exists.
    let private = match backend.0.access(&room, visitor.identity.as_ref()).await {
        PageAccess::Public => false,
        PageAccess::Private => true,
        PageAccess::Hidden => {
            set_status(StatusCode::NOT_FOUND);
            return Ok(RoomLoad::NotFound);
        }
        PageAccess::Unknown => {
            set_status(StatusCode::SERVICE_UNAVAILABLE);
            return Err(ServerFnError::new("the room's access check did not answer"));
        }
    };

    let recent = backend.0.recent(&room).await.map_err(|err| {
        set_status(StatusCode::SERVICE_UNAVAILABLE);
        ServerFnError::new(err)
    })?;
    // Join from the newest message rendered, not from the head: a message
    // whose sequence was allocated but not yet stored when the page was
    // read must still reach the page through the join.
    let since = recent.messages.last().map_or(recent.head, |m| m.seq);
    let account = account(&backend, &visitor, NOTIFICATIONS_SHOWN).await?;
    // This room is read up to what the page shows; the list is made with
    // that already known.
    let mut seen = visitor.seen.clone();
    seen.saw(&room, since);
    let rooms = backend.0.rooms(visitor.identity.as_ref(), &seen, &room).await;
    if let Some(response) = use_context::<ResponseOptions>()
        && let Ok(cookie) = axum::http::HeaderValue::from_str(&backend.0.seen_cookie(&seen))
    {
        response.append_header(axum::http::header::SET_COOKIE, cookie);
    }
    Ok(RoomLoad::Found(Box::new(RoomPage {
        presence: backend.0.presence(&room).await,
        account,
        private,
        rooms,
        room,
        messages: recent.messages,
        since,
        name: rejection.as_ref().map_or_else(|| visitor.name.to_string(), |r| r.name.clone()),
        csrf_token: visitor.csrf_token,
        form_client_id: visitor.form_client_id,
        form_error: rejection.as_ref().map(|r| r.error.clone()),
        draft: rejection.map(|r| r.body).unwrap_or_default(),
    })))
}
