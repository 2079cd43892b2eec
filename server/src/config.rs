//! Typed configuration, read from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `HERALD_ADDR` | `LEPTOS_SITE_ADDR`, else `127.0.0.1:3000` | address to listen on (`:0` picks a free port) |
//! | `HERALD_MONGO_URI` | `mongodb://127.0.0.1:27017` | MongoDB connection string (secret: may hold a password) |
//! | `HERALD_MONGO_DB` | `herald` | database name |
//! | `HERALD_SECRET` | random per start | key for CSRF tokens (≥ 32 characters); set it so tokens survive restarts |
//! | `HERALD_COOKIE_SECURE` | `false` | mark cookies `Secure` (set when served over HTTPS) |
//! | `HERALD_TOKEN_SECRETS` | none (no user tokens) | comma-separated HS256 secrets (≥ 32 characters each) for user tokens; the first signs, all verify, so a secret is rotated by putting the new one first |
//! | `HERALD_API_KEYS` | none (publish API off) | comma-separated keys (≥ 16 characters each) for the publish API |
//! | `HERALD_ALLOW_ANONYMOUS` | `true` | whether visitors without a token may connect and chat |
//! | `HERALD_RETENTION_DAYS` | `30` | how long published notifications are kept (1–3650) |

use std::{env, fmt, net::SocketAddr};

/// A value that must never be printed: `Debug` shows `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Herald's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub mongo_uri: Secret,
    pub mongo_db: String,
    pub secret: Option<Secret>,
    pub cookie_secure: bool,
    pub token_secrets: Vec<Secret>,
    pub api_keys: Vec<Secret>,
    pub allow_anonymous: bool,
    pub retention: std::time::Duration,
}

/// A configuration value that could not be used; names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {key}: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| env::var(key).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in
    /// tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let err = |key, reason: &str| ConfigError { key, reason: reason.to_owned() };
        let addr =
            lookup("HERALD_ADDR").or_else(|| lookup("LEPTOS_SITE_ADDR")).unwrap_or_else(|| "127.0.0.1:3000".to_owned());
        let addr = addr.parse().map_err(|_| err("HERALD_ADDR", "expected host:port, e.g. 127.0.0.1:3000"))?;
        let mongo_db = lookup("HERALD_MONGO_DB").unwrap_or_else(|| "herald".to_owned());
        let db_ok = !mongo_db.is_empty()
            && mongo_db.len() <= 63
            && mongo_db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !db_ok {
            return Err(err("HERALD_MONGO_DB", "1-63 characters of A-Z, a-z, 0-9, '_' or '-'"));
        }
        let secret = lookup("HERALD_SECRET").map(Secret::new);
        if secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            return Err(err("HERALD_SECRET", "must be at least 32 characters"));
        }
        let flag = |key: &'static str, default: bool| match lookup(key).as_deref() {
            None => Ok(default),
            Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(err(key, "expected true or false")),
        };
        let cookie_secure = flag("HERALD_COOKIE_SECURE", false)?;
        let allow_anonymous = flag("HERALD_ALLOW_ANONYMOUS", true)?;
        let list = |key: &'static str, min_len: usize| -> Result<Vec<Secret>, ConfigError> {
            let items: Vec<Secret> = lookup(key)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Secret::new)
                .collect();
            if items.iter().any(|s| s.expose().len() < min_len) {
                return Err(ConfigError { key, reason: format!("each entry must be at least {min_len} characters") });
            }
            Ok(items)
        };
        let retention_days: u64 = match lookup("HERALD_RETENTION_DAYS") {
            None => 30,
            Some(days) => days
                .parse()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| err("HERALD_RETENTION_DAYS", "expected a number of days from 1 to 3650"))?,
        };
        let token_secrets = list("HERALD_TOKEN_SECRETS", 32)?;
        let api_keys = list("HERALD_API_KEYS", 16)?;
        Ok(Self {
            addr,
            mongo_uri: Secret::new(
                lookup("HERALD_MONGO_URI").unwrap_or_else(|| "mongodb://127.0.0.1:27017".to_owned()),
            ),
            mongo_db,
            secret,
            cookie_secure,
            token_secrets,
            api_keys,
            allow_anonymous,
            retention: std::time::Duration::from_secs(retention_days * 86_400),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.mongo_db, "herald");
        assert!(!c.cookie_secure);
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(config(&[("HERALD_ADDR", "nope")]).unwrap_err().key, "HERALD_ADDR");
        assert_eq!(config(&[("HERALD_SECRET", "short")]).unwrap_err().key, "HERALD_SECRET");
        assert_eq!(config(&[("HERALD_MONGO_DB", "a.b")]).unwrap_err().key, "HERALD_MONGO_DB");
        assert_eq!(config(&[("HERALD_COOKIE_SECURE", "yes")]).unwrap_err().key, "HERALD_COOKIE_SECURE");
        assert_eq!(config(&[("HERALD_TOKEN_SECRETS", "short")]).unwrap_err().key, "HERALD_TOKEN_SECRETS");
        assert_eq!(config(&[("HERALD_API_KEYS", "k")]).unwrap_err().key, "HERALD_API_KEYS");
        assert_eq!(config(&[("HERALD_ALLOW_ANONYMOUS", "maybe")]).unwrap_err().key, "HERALD_ALLOW_ANONYMOUS");
    }

    #[test]
    fn lists_are_comma_separated() {
        let secret_a = "a".repeat(32);
        let secret_b = "b".repeat(40);
        let both = format!("{secret_a}, {secret_b},");
        let c = config(&[("HERALD_TOKEN_SECRETS", &both), ("HERALD_API_KEYS", "key-key-key-key-1")]).unwrap();
        assert_eq!(c.token_secrets.len(), 2);
        assert_eq!(c.token_secrets[1].expose(), secret_b);
        assert_eq!(c.api_keys.len(), 1);
        assert!(c.allow_anonymous);
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = config(&[("HERALD_MONGO_URI", "mongodb://u:hunter2@h"), ("HERALD_SECRET", &"s".repeat(40))]).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("ssss"), "{printed}");
    }
}
