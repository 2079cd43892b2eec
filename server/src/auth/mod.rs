//! Credentials, and what the edges share about them, so that no edge
//! imports another:
//!
//! - [`tokens`]: user tokens (HS256, rotation): verifying and issuing.
//! - [`session`]: the browser session cookie and the identity it carries,
//!   read by pages and forms (`web`) and by Socket.IO handshakes
//!   (`realtime`).
//! - [`csrf`]: the CSRF tokens of the no-JavaScript forms.
//! - [`api_keys`]: the keys backends present to the API.
//! - [`signature`]: the signature on what Herald sends backends (room
//!   checks, webhooks).

pub mod api_keys;
pub mod csrf;
pub mod session;
pub mod signature;
pub mod tokens;
