//! `POST /notifications/read`: marking notifications read without
//! JavaScript (the `/notifications` page's forms).

use app::ssr::Visitor;
use axum::Form;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use herald::protocol::MarkReadRequest;
use serde::Deserialize;

use crate::state::AppState;
use crate::web::response::{expired_form, page, see_other};
use crate::web::visitor::VisitorId;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MarkReadForm {
    csrf: String,
    seq: Option<u64>,
    all: bool,
}

pub async fn mark_read_form(
    State(state): State<AppState>,
    Extension(visitor_id): Extension<VisitorId>,
    Extension(visitor): Extension<Visitor>,
    Form(form): Form<MarkReadForm>,
) -> Response {
    if !state.keys.verify_csrf(&visitor_id.0, &form.csrf) {
        return expired_form("Notifications");
    }
    let Some(identity) = visitor.identity else {
        return page(StatusCode::UNAUTHORIZED, "Notifications", "Log in to manage your notifications.");
    };
    let request = MarkReadRequest { seqs: form.seq.into_iter().collect(), all: form.all };
    match state.notifier.mark_read(&identity.user, request).await {
        Ok(_) => see_other("/notifications"),
        Err(err) => page(StatusCode::SERVICE_UNAVAILABLE, "Notifications", &err.reason),
    }
}
