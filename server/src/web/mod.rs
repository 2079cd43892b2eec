//! The edge for browsers: visitors, CSRF-checked forms and plain HTML
//! answers (the cookies themselves are built in [`crate::http::cookies`]), for
//! what works without JavaScript.
//!
//! - [`visitor`]: the middleware that identifies every page request (the
//!   visitor cookie, the display-name cookie, the session's user).
//! - [`login`]: `GET /login?token=…` and `POST /logout`.
//! - [`send`]: `POST /add_message`, the no-JavaScript way to send.
//! - [`inbox`]: `POST /notifications/read`, marking read without
//!   JavaScript.
//! - [`form`]: [`form::CsrfForm`], the extractor every form post's CSRF
//!   check goes through.
//! - [`response`]: the minimal HTML page and the `303 See Other` redirects.
//!
//! What it shares with the socket layer (the session cookie, CSRF keys)
//! lives in [`crate::auth`]: `web` and `realtime` never import each other.

pub mod form;
pub mod inbox;
pub mod login;
pub mod response;
pub mod send;
pub mod visitor;
