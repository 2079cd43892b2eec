//! Asking the customer's backend whether a user may enter a private room
//! (`HERALD_ROOM_AUTH_URL`).
//!
//! `POST <url>` with `{"user": "…", "name": "…", "room": "…"}` (signed with
//! `Herald-Signature` when `HERALD_ROOM_AUTH_SECRET` is set). A 2xx answer
//! `{"allow": true}` lets the user in; `{"allow": false, "reason": "…"}` or
//! a 403 keeps them out (the reason reaches the client). Anything else — no
//! answer within the timeout, another status, a body that is not that JSON —
//! is "unavailable", and keeps them out too. Verdicts are remembered for
//! `HERALD_ROOM_AUTH_CACHE` (bounded); "unavailable" is not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use herald::protocol::plain_text;
use herald::{Identity, RoomName, UserId};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::auth::signature::{SIGNATURE_HEADER, sign};
use crate::config::RoomAuth;
use crate::http::outbound;
use crate::sync::lock;

/// The most verdicts remembered; past it, expired ones are dropped, and a
/// new one is not remembered while none has expired.
const CACHE_MAX: usize = 10_000;
/// The most checks waiting for the backend at once, server-wide; one more
/// waits for a turn within its timeout.
const CALLS_MAX: usize = 64;
/// The longest answer read; a longer one is "unavailable".
const ANSWER_MAX_BYTES: usize = 4096;
/// The longest reason passed on to the client.
const REASON_MAX_CHARS: usize = 200;

/// What the backend said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Allow,
    Deny(String),
}

/// The backend did not give an answer (the cause is logged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unanswered;

#[derive(Deserialize)]
struct Verdict {
    allow: bool,
    #[serde(default)]
    reason: Option<String>,
}

pub struct Backend {
    client: reqwest::Client,
    auth: RoomAuth,
    remembered: Mutex<HashMap<(UserId, RoomName), (Answer, Instant)>>,
    calls: Semaphore,
}

impl Backend {
    pub fn new(auth: RoomAuth) -> Self {
        Self {
            client: outbound::client(auth.timeout),
            auth,
            remembered: Mutex::new(HashMap::new()),
            calls: Semaphore::new(CALLS_MAX),
        }
    }

    /// The backend's verdict on `who` entering `room` if it is remembered
    /// (never asks).
    pub fn remembered(&self, who: &Identity, room: &RoomName) -> Option<Answer> {
        let remembered = lock(&self.remembered);
        let (answer, at) = remembered.get(&(who.user.clone(), room.clone()))?;
        (at.elapsed() < self.auth.cache).then(|| answer.clone())
    }

    /// The backend's verdict on `who` entering `room`, remembered or asked.
    pub async fn ask(&self, who: &Identity, room: &RoomName) -> Result<(Answer, bool), Unanswered> {
        let key = (who.user.clone(), room.clone());
        if let Some((answer, at)) = lock(&self.remembered).get(&key)
            && at.elapsed() < self.auth.cache
        {
            return Ok((answer.clone(), true));
        }
        let answer = tokio::time::timeout(self.auth.timeout, self.call(who, room)).await.unwrap_or_else(|_| {
            tracing::warn!(%room, "room check: the backend did not answer within {:?}", self.auth.timeout);
            Err(Unanswered)
        })?;
        if !self.auth.cache.is_zero() {
            let mut remembered = lock(&self.remembered);
            if remembered.len() >= CACHE_MAX {
                let ttl = self.auth.cache;
                remembered.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            if remembered.len() < CACHE_MAX {
                remembered.insert(key, (answer.clone(), Instant::now()));
            }
        }
        Ok((answer, false))
    }

    async fn call(&self, who: &Identity, room: &RoomName) -> Result<Answer, Unanswered> {
        let _turn = self.calls.acquire().await.map_err(|_| Unanswered)?; // never closed
        let body = serde_json::json!({
            "user": who.user,
            "name": who.display_name(),
            "room": room,
        })
        .to_string();
        let mut request = self.client.post(&self.auth.url).header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.auth.secret {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            request = request.header(SIGNATURE_HEADER, sign(secret, now, body.as_bytes()));
        }
        let mut response = request.body(body).send().await.map_err(|err| {
            // Without the URL: it may carry credentials.
            tracing::warn!(%room, err = %err.without_url(), "room check: the backend could not be reached");
            Unanswered
        })?;
        let status = response.status();
        if status == reqwest::StatusCode::FORBIDDEN {
            return Ok(Answer::Deny("the backend refused".to_owned()));
        }
        if !status.is_success() {
            tracing::warn!(%room, %status, "room check: the backend answered with an error");
            return Err(Unanswered);
        }
        let mut text = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| Unanswered)? {
            if text.len() + chunk.len() > ANSWER_MAX_BYTES {
                tracing::warn!(%room, "room check: the backend's answer is over {ANSWER_MAX_BYTES} bytes");
                return Err(Unanswered);
            }
            text.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Verdict>(&text) {
            Ok(Verdict { allow: true, .. }) => Ok(Answer::Allow),
            Ok(Verdict { allow: false, reason }) => {
                let reason = plain_text(&reason.unwrap_or_default(), REASON_MAX_CHARS);
                Ok(Answer::Deny(reason.unwrap_or_else(|| "the backend refused".to_owned())))
            }
            Err(err) => {
                tracing::warn!(%room, %err, "room check: the backend's answer is not {{\"allow\": true|false}}");
                Err(Unanswered)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_reads_allow_and_an_optional_reason() {
        let v: Verdict = serde_json::from_str(r#"{"allow": false, "reason": "not a member"}"#).unwrap();
        assert!(!v.allow && v.reason.as_deref() == Some("not a member"));
        assert!(serde_json::from_str::<Verdict>(r#"{"allowed": true}"#).is_err());
    }
}
