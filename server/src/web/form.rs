//! [`CsrfForm`]: the extractor every plain form post goes through. It reads
//! an `application/x-www-form-urlencoded` body and checks the form's CSRF
//! token against the request's visitor ([`crate::auth::csrf`]), so no
//! handler can forget the check.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::state::AppState;
use crate::web::response::expired_form;
use crate::web::visitor::VisitorId;

/// A form that carries a CSRF token.
pub trait Guarded {
    /// The token the page rendered into the form.
    fn csrf(&self) -> &str;
}

/// A form body whose CSRF token checks out for this visitor.
#[derive(Debug)]
pub struct CsrfForm<T>(pub T);

/// Why a form post was not taken.
#[derive(Debug)]
pub enum FormError<T> {
    /// The body is not a urlencoded form of the expected shape.
    Malformed(FormRejection),
    /// The CSRF token is missing, forged, for another visitor or too old.
    /// The form is kept, so the page can be shown again with what the
    /// visitor typed.
    Expired(T),
}

impl<T> FormError<T> {
    /// The plain answer: the body's status for a malformed form, and for an
    /// expired one a 403 page titled `title`.
    pub fn answer(self, title: &str) -> Response {
        match self {
            FormError::Malformed(rejection) => {
                (rejection.status(), "malformed form: send application/x-www-form-urlencoded").into_response()
            }
            FormError::Expired(_) => expired_form(title),
        }
    }
}

/// A handler that takes `CsrfForm<T>` itself (not a `Result`) answers
/// with a page titled "Form".
impl<T> IntoResponse for FormError<T> {
    fn into_response(self) -> Response {
        self.answer("Form")
    }
}

impl<T> FromRequest<AppState> for CsrfForm<T>
where
    T: DeserializeOwned + Guarded + Send,
{
    type Rejection = FormError<T>;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // Every page route runs behind the visitor middleware; a request
        // without a visitor has no token to match.
        let visitor = request.extensions().get::<VisitorId>().cloned();
        let Form(form) = Form::<T>::from_request(request, state).await.map_err(FormError::Malformed)?;
        match visitor {
            Some(VisitorId(id)) if state.keys.verify_csrf(&id, form.csrf()) => Ok(CsrfForm(form)),
            _ => Err(FormError::Expired(form)),
        }
    }
}
