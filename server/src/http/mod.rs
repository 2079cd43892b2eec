//! HTTP below the routes: the accept loop, connections that can be cut,
//! WebSocket frames, security headers, and admission (rates and caps).
//!
//! - [`serve`]: the HTTP/1.1 accept loop, with a deadline for each request
//!   head.
//! - [`conn`]: the listener whose TCP connections can be cut and whose
//!   unsent bytes are measured.
//! - [`frames`]: a WebSocket client's frames, followed by their headers.
//! - [`headers`]: security headers, the CSP nonce for pages, `Secure`
//!   cookies.
//! - [`cookies`]: every cookie Herald sets (pages and forms set them; the
//!   state the pages read builds the rooms-read one).
//! - [`outbound`]: the client for calls to the customer's backend.
//! - [`admission`]: token buckets (send, event, publish and form rates),
//!   per-IP connection and handshake caps.

pub mod admission;
pub mod conn;
pub mod cookies;
pub mod frames;
pub mod headers;
pub mod outbound;
pub mod serve;
pub mod shared_rate;
