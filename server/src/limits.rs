//! Rate limits and connection caps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Rate;

/// A token bucket: `rate.burst` tokens, refilled at `rate.per_sec`.
pub struct TokenBucket {
    rate: Rate,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: Rate) -> Self {
        Self { rate, state: Mutex::new(Bucket { tokens: f64::from(rate.burst), at: Instant::now() }) }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&self) -> Result<(), Duration> {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Result<(), Duration> {
        if self.rate.per_sec == 0 {
            return Ok(());
        }
        let per_sec = f64::from(self.rate.per_sec);
        let mut bucket = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * per_sec;
        bucket.tokens = (bucket.tokens + refill).min(f64::from(self.rate.burst));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec))
        }
    }
}

/// Counts open connections per IP address.
#[derive(Clone)]
pub struct ConnectionCaps {
    max: u32,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// One counted connection; the count drops when this does.
pub struct ConnectionSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl ConnectionCaps {
    /// At most `max` connections per IP address (0: no limit).
    pub fn new(max: u32) -> Self {
        Self { max, open: Arc::default() }
    }

    /// Counts a connection from `ip`, unless `ip` already has the maximum.
    pub fn admit(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(ip).or_insert(0);
        if self.max != 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot { ip, open: self.open.clone() })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// `Retry-After` seconds for a wait: whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let bucket = TokenBucket::new(Rate { per_sec: 10, burst: 3 });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(bucket.take_at(start).is_ok());
        }
        let wait = bucket.take_at(start).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(bucket.take_at(start + Duration::from_millis(100)).is_ok());
        assert!(bucket.take_at(start + Duration::from_millis(100)).is_err());
        // Idle time refills up to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.take_at(later).is_ok());
        }
        assert!(bucket.take_at(later).is_err());
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let bucket = TokenBucket::new(Rate { per_sec: 0, burst: 1 });
        assert!((0..1000).all(|_| bucket.take().is_ok()));
    }

    #[test]
    fn caps_count_per_ip_and_release_on_drop() {
        let caps = ConnectionCaps::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert!(caps.admit(a).is_none());
        assert!(caps.admit(b).is_some());
        drop(first);
        assert!(caps.admit(a).is_some());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
