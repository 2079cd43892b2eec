//! [`Webhooks`]: where Herald tells a backend what happens in rooms
//! (`HERALD_WEBHOOK_*`).

use std::time::Duration;

use herald::room::RoomPatterns;

use super::network::http_url;
use super::source::{Lookup, Source};
use super::{ConfigError, Secret};

/// The events a webhook may carry.
pub const HOOK_EVENTS: &[&str] = &["room.occupied", "room.vacated", "user.joined", "user.left", "message.stored"];

/// Webhooks: each event is POSTed, signed, to every URL.
#[derive(Debug, Clone)]
pub struct Webhooks {
    /// The receivers, in order (`/metrics` names them by position: a URL
    /// may carry credentials).
    pub urls: Vec<Secret>,
    pub secret: Secret,
    /// The events sent, of [`HOOK_EVENTS`].
    pub events: Vec<&'static str>,
    /// Rooms whose stored messages are sent (`message.stored`).
    pub message_rooms: RoomPatterns,
    /// How long a receiver has to answer one delivery.
    pub timeout: Duration,
    /// The most deliveries waiting in MongoDB; past it new events are
    /// dropped (and counted).
    pub queue_max: u64,
}

impl Webhooks {
    /// `None` when `HERALD_WEBHOOK_URLS` is unset.
    pub(crate) fn read(src: &Source<impl Lookup>) -> Result<Option<Self>, ConfigError> {
        let urls = src.list("HERALD_WEBHOOK_URLS");
        if urls.is_empty() {
            return Ok(None);
        }
        if urls.len() > 16 {
            return Err(ConfigError::new("HERALD_WEBHOOK_URLS", "at most 16 receivers"));
        }
        let urls = urls
            .iter()
            .map(|url| http_url("HERALD_WEBHOOK_URLS", url).map(Secret::new))
            .collect::<Result<Vec<_>, _>>()?;
        let secret = src.secrets("HERALD_WEBHOOK_SECRET", 32)?.into_iter().next().ok_or_else(|| {
            ConfigError::new(
                "HERALD_WEBHOOK_SECRET",
                "required with HERALD_WEBHOOK_URLS: receivers verify the signature",
            )
        })?;
        let listed = src.list("HERALD_WEBHOOK_EVENTS");
        let events = if listed.is_empty() {
            HOOK_EVENTS.iter().copied().filter(|e| *e != "message.stored").collect()
        } else {
            listed
                .iter()
                .map(|name| {
                    HOOK_EVENTS.iter().copied().find(|known| known == name).ok_or_else(|| {
                        ConfigError::new("HERALD_WEBHOOK_EVENTS", format!("{name:?} is not one of {HOOK_EVENTS:?}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let message_rooms = RoomPatterns::parse(&src.list("HERALD_WEBHOOK_MESSAGE_ROOMS"))
            .map_err(|err| ConfigError::new("HERALD_WEBHOOK_MESSAGE_ROOMS", err.to_string()))?;
        let timeout = src.duration(
            "HERALD_WEBHOOK_TIMEOUT",
            Duration::from_millis(100)..=Duration::from_secs(60),
            Duration::from_secs(5),
        )?;
        let queue_max = src.number("HERALD_WEBHOOK_QUEUE_MAX", 100..=10_000_000, 100_000)?;
        Ok(Some(Self { urls, secret, events, message_rooms, timeout, queue_max }))
    }

    pub fn sends(&self, event: &str) -> bool {
        self.events.contains(&event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Option<Webhooks>, ConfigError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Webhooks::read(&Source::new(move |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())))
    }

    const SECRET: (&str, &str) = ("HERALD_WEBHOOK_SECRET", "webhook-secret-webhook-secret-0001");

    #[test]
    fn off_without_urls_and_presence_events_by_default() {
        assert!(read(&[]).unwrap().is_none());
        let hooks = read(&[("HERALD_WEBHOOK_URLS", "http://a/h, https://b/h"), SECRET]).unwrap().unwrap();
        assert_eq!(hooks.urls.len(), 2);
        assert_eq!(hooks.events, ["room.occupied", "room.vacated", "user.joined", "user.left"]);
        assert!(!hooks.sends("message.stored") && hooks.message_rooms.is_empty());
        let hooks = read(&[
            ("HERALD_WEBHOOK_URLS", "http://a/h"),
            SECRET,
            ("HERALD_WEBHOOK_EVENTS", "message.stored"),
            ("HERALD_WEBHOOK_MESSAGE_ROOMS", "support-*"),
        ])
        .unwrap()
        .unwrap();
        assert!(hooks.sends("message.stored") && !hooks.sends("room.occupied"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |pairs: &[(&str, &str)]| read(pairs).unwrap_err().key;
        assert_eq!(key(&[("HERALD_WEBHOOK_URLS", "http://a")]), "HERALD_WEBHOOK_SECRET");
        assert_eq!(key(&[("HERALD_WEBHOOK_URLS", "a.example"), SECRET]), "HERALD_WEBHOOK_URLS");
        assert_eq!(
            key(&[("HERALD_WEBHOOK_URLS", "http://a"), SECRET, ("HERALD_WEBHOOK_EVENTS", "room.burned")]),
            "HERALD_WEBHOOK_EVENTS"
        );
        assert_eq!(
            key(&[("HERALD_WEBHOOK_URLS", "http://a"), SECRET, ("HERALD_WEBHOOK_QUEUE_MAX", "5")]),
            "HERALD_WEBHOOK_QUEUE_MAX"
        );
    }
}
