//! [`RoomRules`]: which rooms are private (`HERALD_PRIVATE_ROOMS`) and the
//! backend asked who may join them (`HERALD_ROOM_AUTH_*`).

use std::time::Duration;

use herald::room::RoomPatterns;

use super::network::http_url;
use super::source::{Lookup, Source};
use super::{ConfigError, Secret};

/// The configured part of the room access rules; per-room settings made
/// through the API are stored, and override the patterns.
#[derive(Debug, Clone, Default)]
pub struct RoomRules {
    /// Rooms private unless their settings say otherwise.
    pub private_rooms: RoomPatterns,
    /// Asked on a join to a private room the user's token does not grant.
    pub auth: Option<RoomAuth>,
}

/// The backend's room check: `POST` to `url`, answered within `timeout`,
/// its verdict kept for `cache`.
#[derive(Debug, Clone)]
pub struct RoomAuth {
    pub url: String,
    /// Signs each request (`Herald-Signature`), when set.
    pub secret: Option<Secret>,
    pub timeout: Duration,
    pub cache: Duration,
}

impl RoomRules {
    pub(crate) fn read(src: &Source<impl Lookup>) -> Result<Self, ConfigError> {
        let private_rooms = RoomPatterns::parse(&src.list("HERALD_PRIVATE_ROOMS"))
            .map_err(|err| ConfigError::new("HERALD_PRIVATE_ROOMS", format!("{err}; at most 100")))?;
        let auth = match src.get("HERALD_ROOM_AUTH_URL").map(|url| url.trim().to_owned()).filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => Some(RoomAuth {
                url: http_url("HERALD_ROOM_AUTH_URL", &url)?,
                secret: src.secrets("HERALD_ROOM_AUTH_SECRET", 32)?.into_iter().next(),
                timeout: src.duration(
                    "HERALD_ROOM_AUTH_TIMEOUT",
                    Duration::from_millis(50)..=Duration::from_secs(30),
                    Duration::from_secs(2),
                )?,
                cache: src.duration(
                    "HERALD_ROOM_AUTH_CACHE",
                    Duration::ZERO..=Duration::from_secs(3600),
                    Duration::from_secs(30),
                )?,
            }),
        };
        Ok(Self { private_rooms, auth })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::RoomName;

    fn read(pairs: &[(&str, &str)]) -> Result<RoomRules, ConfigError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        RoomRules::read(&Source::new(move |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())))
    }

    #[test]
    fn private_rooms_are_patterns_and_the_backend_check_is_optional() {
        let rules = read(&[]).unwrap();
        assert!(rules.private_rooms.is_empty() && rules.auth.is_none());
        let rules =
            read(&[("HERALD_PRIVATE_ROOMS", "team-*, staff"), ("HERALD_ROOM_AUTH_URL", "http://b:9/check")]).unwrap();
        assert!(rules.private_rooms.matches(&RoomName::parse("team-a").unwrap()));
        assert!(!rules.private_rooms.matches(&RoomName::parse("lobby").unwrap()));
        let auth = rules.auth.unwrap();
        assert_eq!((auth.timeout, auth.cache), (Duration::from_secs(2), Duration::from_secs(30)));
        assert!(auth.secret.is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(read(&[("HERALD_PRIVATE_ROOMS", "Team")]).unwrap_err().key, "HERALD_PRIVATE_ROOMS");
        assert_eq!(read(&[("HERALD_ROOM_AUTH_URL", "ftp://x")]).unwrap_err().key, "HERALD_ROOM_AUTH_URL");
        assert_eq!(read(&[("HERALD_ROOM_AUTH_URL", "http://")]).unwrap_err().key, "HERALD_ROOM_AUTH_URL");
        let short = [("HERALD_ROOM_AUTH_URL", "http://b"), ("HERALD_ROOM_AUTH_SECRET", "short")];
        assert_eq!(read(&short).unwrap_err().key, "HERALD_ROOM_AUTH_SECRET");
        let slow = [("HERALD_ROOM_AUTH_URL", "http://b"), ("HERALD_ROOM_AUTH_TIMEOUT", "1m")];
        assert_eq!(read(&slow).unwrap_err().key, "HERALD_ROOM_AUTH_TIMEOUT");
    }
}
