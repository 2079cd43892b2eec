//! [`Cluster`]: what makes this process one node of several
//! (`HERALD_REDIS_URL`, `HERALD_REDIS_PREFIX`, `HERALD_NODE_ID`).

use std::time::Duration;

use super::source::{Lookup, Source};
use super::{ConfigError, Secret};

/// One node of a cluster: the Redis that carries events between the nodes,
/// the prefix of every name Herald uses there, and this node's id.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `redis://` or `unix://` URL, with `protocol=resp3` added (events
    /// arrive as RESP3 pushes on the connection that also sends commands).
    /// May carry a password: never logged.
    pub redis_url: Secret,
    pub prefix: String,
    pub node_id: String,
    /// How often every stream's position is checked against the store.
    pub position_check: Duration,
    /// How often the node sends itself an event through Redis, to find a
    /// connection that looks alive but carries nothing.
    pub probe: Duration,
    /// How long a node's presence entries live in Redis unless it writes
    /// them again (it does every third of this): a node that died is out of
    /// every room's presence within this.
    pub presence_ttl: Duration,
}

impl Cluster {
    /// `None` when `HERALD_REDIS_URL` is unset: one node, no Redis.
    pub(crate) fn read(src: &Source<impl Lookup>) -> Result<Option<Self>, ConfigError> {
        let Some(url) = src.get("HERALD_REDIS_URL").filter(|url| !url.trim().is_empty()) else {
            return Ok(None);
        };
        let prefix = src.get("HERALD_REDIS_PREFIX").unwrap_or_else(|| "herald".to_owned());
        if !is_name(&prefix, 32) {
            return Err(ConfigError::new("HERALD_REDIS_PREFIX", "1-32 characters of A-Z, a-z, 0-9, '_' or '-'"));
        }
        let node_id = src.get("HERALD_NODE_ID").unwrap_or_else(crate::ids::random_hex::<6>);
        if !is_name(&node_id, 64) {
            return Err(ConfigError::new("HERALD_NODE_ID", "1-64 characters of A-Z, a-z, 0-9, '_' or '-'"));
        }
        let position_check = src.duration(
            "HERALD_POSITION_CHECK",
            Duration::from_millis(100)..=Duration::from_secs(600),
            Duration::from_secs(10),
        )?;
        let probe = src.duration(
            "HERALD_REDIS_PROBE",
            Duration::from_millis(100)..=Duration::from_secs(60),
            Duration::from_secs(5),
        )?;
        let presence_ttl = src.duration(
            "HERALD_PRESENCE_TTL",
            Duration::from_secs(1)..=Duration::from_secs(600),
            Duration::from_secs(15),
        )?;
        let redis_url = Secret::new(resp3(url.trim())?);
        Ok(Some(Self { redis_url, prefix, node_id, position_check, probe, presence_ttl }))
    }
}

fn is_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The URL with `protocol=resp3`; refused (without echoing it: it may hold
/// a password) unless it is a plain `redis://` or `unix://` one.
fn resp3(url: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::new("HERALD_REDIS_URL", reason);
    let scheme = url.split_once("://").map(|(scheme, _)| scheme).unwrap_or_default();
    match scheme {
        "redis" | "unix" | "redis+unix" => {}
        "rediss" => return Err(invalid("TLS (rediss://) is not built in; use redis:// on a private network")),
        _ => return Err(invalid("expected a redis:// or unix:// URL, e.g. redis://127.0.0.1:6379")),
    }
    if url.contains("protocol=") {
        return Err(invalid("leave out `protocol`: Herald always speaks RESP3 to Redis"));
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}protocol=resp3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Option<Cluster>, ConfigError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Cluster::read(&Source::new(move |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())))
    }

    #[test]
    fn no_url_is_one_node_and_a_url_speaks_resp3() {
        assert!(read(&[]).unwrap().is_none());
        assert!(read(&[("HERALD_REDIS_URL", " ")]).unwrap().is_none());
        let cluster = read(&[("HERALD_REDIS_URL", "redis://:pw@10.0.0.5:6380/0")]).unwrap().unwrap();
        assert_eq!(cluster.redis_url.expose(), "redis://:pw@10.0.0.5:6380/0?protocol=resp3");
        assert_eq!(cluster.prefix, "herald");
        assert_eq!(cluster.node_id.len(), 12, "a random node id by default");
        let cluster = read(&[("HERALD_REDIS_URL", "redis://r/?db=1"), ("HERALD_NODE_ID", "node-a")]).unwrap().unwrap();
        assert_eq!(cluster.redis_url.expose(), "redis://r/?db=1&protocol=resp3");
        assert_eq!(cluster.node_id, "node-a");
    }

    #[test]
    fn bad_values_are_refused_without_echoing_the_url() {
        let err = read(&[("HERALD_REDIS_URL", "http://:secret@host")]).unwrap_err();
        assert_eq!(err.key, "HERALD_REDIS_URL");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(read(&[("HERALD_REDIS_URL", "rediss://host")]).is_err());
        assert!(read(&[("HERALD_REDIS_URL", "redis://host/?protocol=2")]).is_err());
        let err = read(&[("HERALD_REDIS_URL", "redis://host"), ("HERALD_REDIS_PREFIX", "a:b")]).unwrap_err();
        assert_eq!(err.key, "HERALD_REDIS_PREFIX");
        let err = read(&[("HERALD_REDIS_URL", "redis://host"), ("HERALD_NODE_ID", "")]).unwrap_err();
        assert_eq!(err.key, "HERALD_NODE_ID");
    }
}
