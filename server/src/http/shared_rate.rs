//! [`KeyRate`]: a rate per API key, held across a cluster: one for
//! `POST /api/publish` (`HERALD_PUBLISH_RATE`), one for every other API
//! call (`HERALD_API_RATE`).
//!
//! On one node it is a token bucket per key ([`TokenBucket`]). In a cluster
//! every node asks Redis: a GCRA (generic cell rate algorithm) per key in a
//! Lua script, on Redis's own clock, so the nodes' clocks and their number
//! do not matter; the key in Redis is a digest of the API key, never the
//! key. While Redis does not answer, each node falls back to its own
//! bucket (the cluster then admits up to the rate once per node), and asks
//! Redis again a second later.

use std::sync::Mutex;
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::admission::TokenBucket;
use crate::config::{Cluster, Rate, Secret};
use crate::sync::lock;

/// How long a request waits for Redis's verdict before the local bucket
/// decides.
const VERDICT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long after Redis failed to answer the local buckets decide alone.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// GCRA: a key's "theoretical arrival time" (TAT, µs on Redis's clock)
/// moves one emission interval per request; a request is admitted while
/// the TAT is at most `tolerance` ahead of now. Answers `{1, 0}`, or
/// `{0, µs to wait}`.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat - now > tolerance then
  return {0, tat - now - tolerance}
end
local next = tat + interval
redis.call('SET', KEYS[1], next, 'PX', math.ceil((next - now) / 1000) + 1000)
return {1, 0}
";

/// One rate of every API key.
pub struct KeyRate {
    rate: Rate,
    /// This node's buckets, by key: the limit on one node, the fallback
    /// in a cluster.
    local: Vec<TokenBucket>,
    shared: Option<Shared>,
}

struct Shared {
    redis: ConnectionManager,
    script: Script,
    /// Each API key's name in Redis.
    keys: Vec<String>,
    /// When Redis last failed to answer, while it has not answered since.
    failed_at: Mutex<Option<Instant>>,
    /// Which rate, for the logs.
    what: &'static str,
}

/// The connection a node's rates ask Redis on (one for all of them).
pub fn redis_for_rates(cluster: &Cluster) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(cluster.redis_url.expose()).map_err(|_| "HERALD_REDIS_URL is not a Redis URL")?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(VERDICT_TIMEOUT))
        .set_response_timeout(Some(VERDICT_TIMEOUT))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(usize::MAX);
    ConnectionManager::new_lazy_with_config(client, config).map_err(|err| err.to_string())
}

impl KeyRate {
    /// One node: a bucket per key.
    pub fn local(rate: Rate, keys: usize) -> Self {
        Self { rate, local: (0..keys).map(|_| TokenBucket::new(rate)).collect(), shared: None }
    }

    /// A cluster node: the rate is the cluster's, kept in its Redis under
    /// `<prefix>:<scope>:<digest of the key>`; `what` names it in the logs.
    pub fn clustered(
        rate: Rate,
        api_keys: &[Secret],
        cluster: &Cluster,
        redis: ConnectionManager,
        (scope, what): (&str, &'static str),
    ) -> Self {
        let keys = api_keys
            .iter()
            .map(|key| {
                let digest = Sha256::digest(key.expose().as_bytes());
                format!("{}:{scope}:{}", cluster.prefix, hex::encode(&digest[..8]))
            })
            .collect();
        let shared = Shared { redis, script: Script::new(GCRA), keys, failed_at: Mutex::new(None), what };
        Self { shared: Some(shared), ..Self::local(rate, api_keys.len()) }
    }

    /// Takes one request of the key at `key` (its index among the API
    /// keys), or says how long until one is allowed.
    pub async fn take(&self, key: usize) -> Result<(), Duration> {
        if self.rate.per_sec == 0 {
            return Ok(());
        }
        if let Some(shared) = &self.shared
            && let Some(verdict) = shared.verdict(key, self.rate).await
        {
            return verdict;
        }
        self.local[key].take()
    }
}

impl Shared {
    /// Redis's verdict, or `None` when it does not give one in time (or
    /// failed less than [`RETRY_AFTER`] ago).
    async fn verdict(&self, key: usize, rate: Rate) -> Option<Result<(), Duration>> {
        if lock(&self.failed_at).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return None;
        }
        let interval = (1_000_000 / u64::from(rate.per_sec)).max(1);
        let tolerance = interval * u64::from(rate.burst.max(1) - 1);
        let mut redis = self.redis.clone();
        let mut invocation = self.script.key(&self.keys[key]);
        invocation.arg(interval).arg(tolerance);
        let answer = tokio::time::timeout(VERDICT_TIMEOUT, invocation.invoke_async::<(i64, i64)>(&mut redis)).await;
        let mut failed_at = lock(&self.failed_at);
        match answer {
            Ok(Ok((admitted, wait_us))) => {
                if failed_at.take().is_some() {
                    tracing::info!(rate = self.what, "the rate is the cluster's again");
                }
                Some(if admitted == 1 { Ok(()) } else { Err(Duration::from_micros(wait_us.max(0).unsigned_abs())) })
            }
            failed => {
                if failed_at.replace(Instant::now()).is_none() {
                    let reason = match failed {
                        Ok(Err(err)) => err.to_string(),
                        _ => "no answer in time".to_owned(),
                    };
                    tracing::warn!(%reason, rate = self.what, "Redis gives no rate verdict; each node's own bucket decides");
                }
                None
            }
        }
    }
}
