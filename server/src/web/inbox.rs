//! `POST /notifications/read`: marking notifications read without
//! JavaScript (the `/notifications` page's forms).

use app::ssr::Visitor;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use herald::protocol::MarkReadRequest;
use serde::Deserialize;

use crate::state::AppState;
use crate::web::form::{CsrfForm, FormError, Guarded};
use crate::web::response::{page, see_other};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MarkReadForm {
    csrf: String,
    seq: Option<u64>,
    all: bool,
}

impl Guarded for MarkReadForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub async fn mark_read_form(
    State(state): State<AppState>,
    Extension(visitor): Extension<Visitor>,
    form: Result<CsrfForm<MarkReadForm>, FormError<MarkReadForm>>,
) -> Response {
    let form = match form {
        Ok(CsrfForm(form)) => form,
        Err(err) => return err.answer("Notifications"),
    };
    let Some(identity) = visitor.identity else {
        return page(StatusCode::UNAUTHORIZED, "Notifications", "Log in to manage your notifications.");
    };
    let request = MarkReadRequest { seqs: form.seq.into_iter().collect(), all: form.all };
    match state.notifier.mark_read(&identity.user, request).await {
        Ok(_) => see_other("/notifications"),
        Err(err) => page(StatusCode::SERVICE_UNAVAILABLE, "Notifications", &err.reason),
    }
}
