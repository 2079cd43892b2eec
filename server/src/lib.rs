//! # Herald's server
//!
//! axum + leptos_axum for pages and forms, socketioxide for real time,
//! MongoDB for history.
//!
//! ## Layout
//! - [`config`]: typed configuration from the environment; secrets in
//!   [`config::Secret`].
//! - [`startup`]: [`startup::Application`] (`build` → `port` →
//!   `run_until_stopped`) and the [`startup::router`].
//! - [`state`]: [`state::AppState`], the one state object handlers share.
//! - [`store`]: MongoDB storage — sequence allocation, idempotent appends,
//!   range-bounded history reads.
//! - [`chat`]: posting a message (store, then broadcast), shared by both
//!   ways of sending.
//! - [`realtime`]: the Socket.IO events `join`, `leave`, `send`.
//! - [`form`]: `POST /add_message`, the no-JavaScript form.
//! - [`inbox`]: notification storage — users' inboxes and the broadcast
//!   stream, with retention.
//! - [`inbox_form`]: `POST /notifications/read`, marking read without
//!   JavaScript.
//! - [`publish`]: `POST /api/publish`, the authenticated publish API.
//! - [`auth`]: user tokens (HS256, rotation) — verifying and issuing.
//! - [`session`]: `GET /login?token=…` and `POST /logout`, the browser
//!   session cookie.
//! - [`visitor`]: visitor cookie, display-name cookie and CSRF tokens.
//! - [`telemetry`]: logging setup.

pub mod auth;
pub mod chat;
pub mod config;
pub mod form;
pub mod inbox;
pub mod inbox_form;
pub mod presence;
pub mod publish;
pub mod realtime;
pub mod session;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod visitor;
