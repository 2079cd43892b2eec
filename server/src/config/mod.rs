//! Typed configuration: a TOML file (optional) overlaid by environment
//! variables.
//!
//! Every key is listed, with its default and meaning, in `docs/CONFIG.md`;
//! [`KEYS`] is the same list in code, and a test keeps the two in step. In
//! the file a key is written without its `HERALD_` prefix, in lower case
//! (`HERALD_SEND_RATE` is `send_rate`); the environment wins over the file.
//! A value that can't be used stops start-up with an error naming the key.
//!
//! The values it reads into have files of their own: [`Secret`] (never
//! printed), [`Limits`] and [`Rate`], [`Origins`] and [`TrustedProxies`].

use std::collections::HashMap;
use std::env;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

mod access;
mod cluster;
mod hooks;
mod limits;
mod network;
mod secret;
mod source;

pub use self::access::{RoomAuth, RoomRules};
pub use self::cluster::Cluster;
pub use self::hooks::{HOOK_EVENTS, Webhooks};
pub use self::limits::{Limits, Rate};
pub use self::network::{Origins, TrustedProxies};
pub use self::secret::Secret;
use self::source::{Lookup, Source};

/// Every configuration key, as an environment variable.
pub const KEYS: &[&str] = &[
    "HERALD_CONFIG",
    "HERALD_ADDR",
    "HERALD_MONGO_URI",
    "HERALD_MONGO_DB",
    "HERALD_SECRET",
    "HERALD_COOKIE_SECURE",
    "HERALD_TOKEN_SECRETS",
    "HERALD_TOKEN_AUDIENCE",
    "HERALD_API_KEYS",
    "HERALD_ALLOW_ANONYMOUS",
    "HERALD_ALLOWED_ORIGINS",
    "HERALD_RETENTION_DAYS",
    "HERALD_LOG_FORMAT",
    "HERALD_MESSAGE_MAX_CHARS",
    "HERALD_NAME_MAX_CHARS",
    "HERALD_PUBLISH_DATA_MAX_BYTES",
    "HERALD_HTTP_BODY_MAX_BYTES",
    "HERALD_SOCKET_PAYLOAD_MAX_BYTES",
    "HERALD_OUTBOUND_BUFFER_PACKETS",
    "HERALD_OUTBOUND_BUFFER_BYTES",
    "HERALD_CONNECTIONS_PER_IP",
    "HERALD_TCP_CONNECTIONS_PER_IP",
    "HERALD_HANDSHAKES_PER_IP",
    "HERALD_TRUSTED_PROXIES",
    "HERALD_SEND_RATE",
    "HERALD_SEND_BURST",
    "HERALD_PUBLISH_RATE",
    "HERALD_PUBLISH_BURST",
    "HERALD_API_RATE",
    "HERALD_API_BURST",
    "HERALD_EVENT_RATE",
    "HERALD_EVENT_BURST",
    "HERALD_EVENT_STORE_CONCURRENCY",
    "HERALD_PRESENCE_INTERVAL",
    "HERALD_ORDER_HOLD",
    "HERALD_WINDOW_MESSAGES",
    "HERALD_WINDOW_BYTES",
    "HERALD_CONNECT_TIMEOUT",
    "HERALD_PING_INTERVAL",
    "HERALD_PING_TIMEOUT",
    "HERALD_HEAD_TIMEOUT",
    "HERALD_REQUEST_TIMEOUT",
    "HERALD_STORE_TIMEOUT",
    "HERALD_SHUTDOWN_TIMEOUT",
    "HERALD_REDIS_URL",
    "HERALD_REDIS_PREFIX",
    "HERALD_NODE_ID",
    "HERALD_POSITION_CHECK",
    "HERALD_REDIS_PROBE",
    "HERALD_PRESENCE_TTL",
    "HERALD_TRANSPORTS",
    "HERALD_PRIVATE_ROOMS",
    "HERALD_ROOM_AUTH_URL",
    "HERALD_ROOM_AUTH_SECRET",
    "HERALD_ROOM_AUTH_TIMEOUT",
    "HERALD_ROOM_AUTH_CACHE",
    "HERALD_WEBHOOK_URLS",
    "HERALD_WEBHOOK_SECRET",
    "HERALD_WEBHOOK_EVENTS",
    "HERALD_WEBHOOK_MESSAGE_ROOMS",
    "HERALD_WEBHOOK_TIMEOUT",
    "HERALD_WEBHOOK_QUEUE_MAX",
];

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
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
    /// The `aud` tokens must name, when set; unset: tokens must carry none.
    pub token_audience: Option<String>,
    pub api_keys: Vec<Secret>,
    pub allow_anonymous: bool,
    pub allowed_origins: Origins,
    pub trusted_proxies: TrustedProxies,
    pub retention: Duration,
    pub log_format: LogFormat,
    pub limits: Limits,
    /// Set: this process is one node of a cluster over Redis.
    pub cluster: Option<Cluster>,
    /// Whether Engine.IO long-polling is offered besides WebSocket
    /// (`HERALD_TRANSPORTS`).
    pub polling: bool,
    /// Private rooms and the backend's room check.
    pub rooms: RoomRules,
    /// Set: room events are POSTed to a backend.
    pub webhooks: Option<Webhooks>,
}

/// A configuration value that could not be used; names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, reason: impl Into<String>) -> Self {
        Self { key: key.to_owned(), reason: reason.into() }
    }
}

/// Parses a duration like `250ms`, `5s`, `15m`, `1h` or `7d`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let invalid = || format!("{raw:?} is not a duration like 250ms, 5s, 15m, 1h or 7d");
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid()),
    };
    number.checked_mul(unit_ms).map(Duration::from_millis).ok_or_else(invalid)
}

/// A duration as [`parse_duration`] reads it, or a bare number of seconds
/// (`30`), as the `token` command's `--ttl` takes it.
pub fn parse_duration_or_secs(raw: &str) -> Result<Duration, String> {
    match raw.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => parse_duration(raw),
    }
}

/// Reads a TOML configuration file into environment-style keys
/// (`send_rate = 20` becomes `HERALD_SEND_RATE`). Unknown keys are errors,
/// so a typo doesn't silently leave a default in place.
pub fn read_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError::new("HERALD_CONFIG", format!("reading {}: {err}", path.display())))?;
    parse_file(&text).map_err(|mut err| {
        if err.key == "HERALD_CONFIG" {
            err.reason = format!("{}: {}", path.display(), err.reason);
        }
        err
    })
}

fn parse_file(text: &str) -> Result<HashMap<String, String>, ConfigError> {
    let table: toml::Table =
        text.parse().map_err(|err: toml::de::Error| ConfigError::new("HERALD_CONFIG", err.message().to_owned()))?;
    let mut values = HashMap::new();
    for (name, value) in table {
        let key = format!("HERALD_{}", name.to_ascii_uppercase());
        if !KEYS.contains(&key.as_str()) || key == "HERALD_CONFIG" {
            return Err(ConfigError::new(&key, format!("unknown key `{name}` in the configuration file")));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s),
                    _ => Err(ConfigError::new(&key, "a list must hold strings")),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => return Err(ConfigError::new(&key, "expected a string, number, true/false or a list of strings")),
        };
        values.insert(key, text);
    }
    Ok(values)
}

impl Config {
    /// Reads the configuration from the file named by `file` (or
    /// `HERALD_CONFIG`), overlaid by the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = file.map(Path::to_path_buf).or_else(|| env::var_os("HERALD_CONFIG").map(Into::into));
        let from_file = match file {
            Some(path) => read_file(&path)?,
            None => HashMap::new(),
        };
        Self::from_lookup(|key| env::var(key).ok().or_else(|| from_file.get(key).cloned()))
    }

    /// Reads the configuration through `lookup` (the environment, or a map in
    /// tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let src = Source::new(lookup);
        Ok(Self {
            addr: listen_addr(&src)?,
            mongo_uri: Secret::new(
                src.get("HERALD_MONGO_URI").unwrap_or_else(|| "mongodb://127.0.0.1:27017".to_owned()),
            ),
            mongo_db: mongo_db(&src)?,
            secret: server_secret(&src)?,
            cookie_secure: src.flag("HERALD_COOKIE_SECURE", false)?,
            token_secrets: src.secrets("HERALD_TOKEN_SECRETS", 32)?,
            token_audience: token_audience(&src)?,
            api_keys: src.secrets("HERALD_API_KEYS", 16)?,
            allow_anonymous: src.flag("HERALD_ALLOW_ANONYMOUS", true)?,
            allowed_origins: Origins::read(&src)?,
            trusted_proxies: TrustedProxies::parse(&src.list("HERALD_TRUSTED_PROXIES"))
                .map_err(|reason| ConfigError::new("HERALD_TRUSTED_PROXIES", reason))?,
            retention: Duration::from_secs(src.number("HERALD_RETENTION_DAYS", 1..=3650, 30)? * 86_400),
            log_format: log_format(&src)?,
            limits: Limits::read(&src)?,
            cluster: Cluster::read(&src)?,
            polling: polling(&src)?,
            rooms: RoomRules::read(&src)?,
            webhooks: Webhooks::read(&src)?,
        })
    }
}

/// `HERALD_TRANSPORTS`: `websocket,polling` (either order) or `websocket`.
fn polling(src: &Source<impl Lookup>) -> Result<bool, ConfigError> {
    let Some(raw) = src.get("HERALD_TRANSPORTS") else { return Ok(true) };
    let mut named: Vec<String> = raw.split(',').map(|t| t.trim().to_ascii_lowercase()).collect();
    named.sort();
    match named.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["polling", "websocket"] => Ok(true),
        ["websocket"] => Ok(false),
        _ => Err(ConfigError::new(
            "HERALD_TRANSPORTS",
            "expected websocket,polling or websocket (Herald's own page needs WebSocket)",
        )),
    }
}

/// `HERALD_ADDR` (or cargo-leptos's `LEPTOS_SITE_ADDR`): where to listen.
fn listen_addr(src: &Source<impl Lookup>) -> Result<SocketAddr, ConfigError> {
    let addr =
        src.get("HERALD_ADDR").or_else(|| src.get("LEPTOS_SITE_ADDR")).unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    addr.parse().map_err(|_| ConfigError::new("HERALD_ADDR", "expected host:port, e.g. 127.0.0.1:3000"))
}

/// `HERALD_MONGO_DB`: a database name MongoDB accepts.
fn mongo_db(src: &Source<impl Lookup>) -> Result<String, ConfigError> {
    let name = src.get("HERALD_MONGO_DB").unwrap_or_else(|| "herald".to_owned());
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(ConfigError::new("HERALD_MONGO_DB", "1-63 characters of A-Z, a-z, 0-9, '_' or '-'"));
    }
    Ok(name)
}

/// `HERALD_SECRET`: the key of the CSRF tokens, unset for a random one.
fn server_secret(src: &Source<impl Lookup>) -> Result<Option<Secret>, ConfigError> {
    let secret = src.get("HERALD_SECRET").map(Secret::new);
    if secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
        return Err(ConfigError::new("HERALD_SECRET", "must be at least 32 characters"));
    }
    Ok(secret)
}

/// `HERALD_TOKEN_AUDIENCE`: the `aud` tokens must name, if any.
fn token_audience(src: &Source<impl Lookup>) -> Result<Option<String>, ConfigError> {
    match src.get("HERALD_TOKEN_AUDIENCE").map(|a| a.trim().to_owned()) {
        Some(aud) if aud.is_empty() || aud.len() > 256 => {
            Err(ConfigError::new("HERALD_TOKEN_AUDIENCE", "1-256 characters"))
        }
        aud => Ok(aud),
    }
}

/// `HERALD_LOG_FORMAT`: `text` or `json`.
fn log_format(src: &Source<impl Lookup>) -> Result<LogFormat, ConfigError> {
    match src.get("HERALD_LOG_FORMAT").as_deref() {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(_) => Err(ConfigError::new("HERALD_LOG_FORMAT", "expected text or json")),
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

    #[test]
    fn limits_have_defaults_and_bounds() {
        let c = config(&[]).unwrap();
        assert_eq!(c.limits.send_rate, Rate { per_sec: 10, burst: 20 });
        assert_eq!(c.allowed_origins, Origins::SameOrigin);
        assert_eq!(c.log_format, LogFormat::Text);
        let c = config(&[("HERALD_STORE_TIMEOUT", "250ms"), ("HERALD_SEND_RATE", "0")]).unwrap();
        assert_eq!(c.limits.store_timeout, Duration::from_millis(250));
        assert_eq!(c.limits.send_rate.per_sec, 0);
        assert_eq!(config(&[("HERALD_MESSAGE_MAX_CHARS", "2001")]).unwrap_err().key, "HERALD_MESSAGE_MAX_CHARS");
        assert_eq!(config(&[("HERALD_STORE_TIMEOUT", "5 parsecs")]).unwrap_err().key, "HERALD_STORE_TIMEOUT");
        assert_eq!(config(&[("HERALD_SHUTDOWN_TIMEOUT", "0s")]).unwrap_err().key, "HERALD_SHUTDOWN_TIMEOUT");
        assert_eq!(config(&[("HERALD_LOG_FORMAT", "xml")]).unwrap_err().key, "HERALD_LOG_FORMAT");
        assert_eq!(config(&[("HERALD_ALLOWED_ORIGINS", "evil.com")]).unwrap_err().key, "HERALD_ALLOWED_ORIGINS");
        let listed = config(&[("HERALD_ALLOWED_ORIGINS", "https://a.example, http://localhost:8080")]).unwrap();
        assert_eq!(
            listed.allowed_origins,
            Origins::List(vec!["https://a.example".into(), "http://localhost:8080".into()])
        );
        assert_eq!(config(&[("HERALD_ALLOWED_ORIGINS", "*")]).unwrap().allowed_origins, Origins::Any);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(parse_duration_or_secs("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration_or_secs("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_duration_or_secs("1w").is_err());
        assert!(parse_duration_or_secs("h").is_err());
    }

    #[test]
    fn a_file_uses_the_keys_without_prefix_and_the_environment_wins() {
        let file = parse_file(
            "send_rate = 50\nallow_anonymous = false\napi_keys = [\"key-key-key-key-1\", \"key-key-key-key-2\"]\nstore_timeout = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(file["HERALD_API_KEYS"], "key-key-key-key-1,key-key-key-key-2");
        let env: HashMap<&str, &str> = [("HERALD_SEND_RATE", "7")].into();
        let c =
            Config::from_lookup(|key| env.get(key).map(|v| v.to_string()).or_else(|| file.get(key).cloned())).unwrap();
        assert_eq!(c.limits.send_rate.per_sec, 7);
        assert!(!c.allow_anonymous);
        assert_eq!(c.api_keys.len(), 2);
        assert_eq!(c.limits.store_timeout, Duration::from_secs(2));
    }

    #[test]
    fn a_file_with_an_unknown_key_or_bad_syntax_is_refused() {
        assert_eq!(parse_file("sned_rate = 5").unwrap_err().key, "HERALD_SNED_RATE");
        assert_eq!(parse_file("send_rate = ").unwrap_err().key, "HERALD_CONFIG");
        assert_eq!(parse_file("send_rate = 1.5").unwrap_err().key, "HERALD_SEND_RATE");
    }

    #[test]
    fn every_key_is_documented_and_every_documented_key_exists() {
        let doc = include_str!("../../../docs/CONFIG.md");
        let documented: Vec<&str> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `HERALD_"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        for key in KEYS {
            assert!(documented.contains(&&key["HERALD_".len()..]), "{key} is missing from docs/CONFIG.md");
        }
        for key in documented {
            assert!(KEYS.contains(&format!("HERALD_{key}").as_str()), "docs/CONFIG.md lists unknown HERALD_{key}");
        }
    }

    #[test]
    fn trusted_proxies_name_their_key() {
        assert_eq!(config(&[("HERALD_TRUSTED_PROXIES", "10.0.0.0/99")]).unwrap_err().key, "HERALD_TRUSTED_PROXIES");
    }
}
