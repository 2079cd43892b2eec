//! The HTTP client for what Herald sends the customer's backend (room
//! checks, webhooks): one place that says how such a call behaves.

use std::time::Duration;

/// A client whose every request gives up after `timeout`, follows no
/// redirect (a backend URL that moves must be configured again, not
/// followed somewhere else), and says it is Herald.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with rustls and no custom roots builds")
}
