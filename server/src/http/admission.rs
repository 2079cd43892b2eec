//! Rate limits and connection caps.
//!
//! - [`TokenBucket`]: one rate (a connection's sends, its event budget, an
//!   API key's publishes); takes weighted costs.
//! - [`RateTable`]: a bucket per key (visitor, IP address) in a table of
//!   bounded size, for callers that have no connection to hang a bucket on.
//! - [`FormRate`]: the no-JavaScript form's two tables, per visitor and per
//!   address.
//! - [`ConnectionCaps`]: open things (connections) per address.
//! - [`WindowCaps`]: things started (handshakes) per address within a
//!   sliding window.
//!
//! Every per-address count keys on [`IpKey`]: an IPv4 address, or an IPv6
//! address's /64 (one subscriber's allocation: anyone holding a /64 has
//! 2^64 addresses to rotate through).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Rate;
use crate::sync::lock;

/// What per-address limits count by: the IPv4 address, or the /64 of an
/// IPv6 one (an IPv4-mapped IPv6 address counts as its IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(IpAddr);

impl IpKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX)))),
            },
        }
    }
}

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
        self.take_n_at(1, Instant::now())
    }

    /// Takes `cost` tokens, or says how long until they are there. A cost
    /// above the burst is charged as the whole burst, so it can pass once
    /// the bucket is full.
    pub fn take_n(&self, cost: u32) -> Result<(), Duration> {
        self.take_n_at(cost, Instant::now())
    }

    #[cfg(test)]
    fn take_at(&self, now: Instant) -> Result<(), Duration> {
        self.take_n_at(1, now)
    }

    fn take_n_at(&self, cost: u32, now: Instant) -> Result<(), Duration> {
        if self.rate.per_sec == 0 {
            return Ok(());
        }
        let mut bucket = lock(&self.state);
        bucket.take(self.rate, cost, now)
    }
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self { tokens: f64::from(rate.burst), at: now }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(rate.per_sec);
        self.tokens = (self.tokens + refill).min(f64::from(rate.burst));
        self.at = now;
    }

    fn take(&mut self, rate: Rate, cost: u32, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        let cost = f64::from(cost.min(rate.burst));
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((cost - self.tokens) / f64::from(rate.per_sec)))
        }
    }
}

/// A token bucket per key, for limits without a connection to keep one on
/// (the no-JavaScript form, per visitor and per address).
///
/// The table holds at most `capacity` keys. A key whose bucket has refilled
/// completely is the same as a key never seen, so when the table is full
/// those are dropped first; if none has, the stalest entry goes (someone
/// making up keys then only resets buckets they made up, while real users'
/// recent buckets stay).
pub struct RateTable<K> {
    rate: Rate,
    capacity: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> RateTable<K> {
    pub fn new(rate: Rate, capacity: usize) -> Self {
        Self { rate, capacity: capacity.max(1), buckets: Mutex::default() }
    }

    /// Takes a token from `key`'s bucket, or says how long until one is there.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    fn take_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate.per_sec == 0 {
            return Ok(());
        }
        let mut buckets = lock(&self.buckets);
        if !buckets.contains_key(key) && buckets.len() >= self.capacity {
            let rate = self.rate;
            buckets.retain(|_, bucket| {
                bucket.refill(rate, now);
                bucket.tokens < f64::from(rate.burst)
            });
            if buckets.len() >= self.capacity
                && let Some(stalest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| k.clone())
            {
                buckets.remove(&stalest);
            }
        }
        buckets.entry(key.clone()).or_insert_with(|| Bucket::full(self.rate, now)).take(self.rate, 1, now)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

/// Counts open connections (or anything else held open) per address
/// ([`IpKey`]).
#[derive(Clone)]
pub struct ConnectionCaps {
    max: u32,
    open: Arc<Mutex<HashMap<IpKey, u32>>>,
}

/// One counted connection; the count drops when this does.
pub struct ConnectionSlot {
    ip: IpKey,
    open: Arc<Mutex<HashMap<IpKey, u32>>>,
}

impl ConnectionCaps {
    /// At most `max` connections per IP address (0: no limit).
    pub fn new(max: u32) -> Self {
        Self { max, open: Arc::default() }
    }

    /// Counts a connection from `ip`, unless `ip` already has the maximum.
    pub fn admit(&self, ip: IpAddr) -> Option<ConnectionSlot> {
        let ip = IpKey::of(ip);
        let mut open = lock(&self.open);
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
        uncount(&mut lock(&self.open), &self.ip);
    }
}

/// One less for `ip`; an address at none is forgotten.
fn uncount(counts: &mut HashMap<IpKey, u32>, ip: &IpKey) {
    if let Some(count) = counts.get_mut(ip) {
        *count -= 1;
        if *count == 0 {
            counts.remove(ip);
        }
    }
}

/// Counts what each address started within the last `window`, for a cap on
/// starts rather than on open things: one queue of expiry times for the
/// whole server, whose oldest entries the next admission forgets. Nothing
/// runs per start (no task, no timer), so a start costs 40 bytes for the
/// window's length.
#[derive(Clone)]
pub struct WindowCaps {
    max: u32,
    window: Duration,
    recent: Arc<Mutex<Recent>>,
}

#[derive(Default)]
struct Recent {
    /// When each start leaves the window, oldest first (the window is the
    /// same for all, so this is also the order of the starts).
    expiries: VecDeque<(Instant, IpKey)>,
    counts: HashMap<IpKey, u32>,
}

impl WindowCaps {
    /// At most `max` starts per address within `window` (0: no limit, and
    /// nothing is kept).
    pub fn new(max: u32, window: Duration) -> Self {
        Self { max, window, recent: Arc::default() }
    }

    /// Counts a start from `ip` at `now`, unless `ip` already has the
    /// maximum within the window.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        if self.max == 0 {
            return true;
        }
        let ip = IpKey::of(ip);
        let mut recent = lock(&self.recent);
        let Recent { expiries, counts } = &mut *recent;
        while let Some(&(expiry, gone)) = expiries.front()
            && expiry <= now
        {
            expiries.pop_front();
            uncount(counts, &gone);
        }
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return false;
        }
        *count += 1;
        expiries.push_back((now + self.window, ip));
        true
    }
}

/// How many visitors and addresses the form's rate tables remember.
const FORM_RATE_KEYS: usize = 65_536;

/// The form's send rate, per visitor and per address.
pub struct FormRate {
    visitors: RateTable<String>,
    addresses: RateTable<IpKey>,
}

impl FormRate {
    pub fn new(rate: Rate) -> Self {
        Self { visitors: RateTable::new(rate, FORM_RATE_KEYS), addresses: RateTable::new(rate, FORM_RATE_KEYS) }
    }

    /// Takes a post from the visitor's and the address's buckets.
    pub fn take(&self, visitor: &str, ip: Option<IpAddr>) -> Result<(), Duration> {
        self.visitors.take(&visitor.to_owned())?;
        match ip {
            Some(ip) => self.addresses.take(&IpKey::of(ip)),
            None => Ok(()),
        }
    }
}

/// `retry_after_ms` for a wait: whole milliseconds, at least 1.
pub fn retry_after_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1)
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
    fn costs_are_weighted_and_a_cost_above_the_burst_waits_for_a_full_bucket() {
        let bucket = TokenBucket::new(Rate { per_sec: 10, burst: 20 });
        let start = Instant::now();
        assert!(bucket.take_n_at(5, start).is_ok());
        assert!(bucket.take_n_at(15, start).is_ok());
        let wait = bucket.take_n_at(5, start).unwrap_err();
        assert!(wait > Duration::from_millis(490) && wait <= Duration::from_millis(500), "{wait:?}");
        assert!(bucket.take_n_at(1, start + Duration::from_millis(100)).is_ok());
        assert!(bucket.take_n_at(100, start + Duration::from_secs(10)).is_ok(), "charged as the burst");
        assert!(bucket.take_n_at(1, start + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn a_rate_table_limits_each_key_and_stays_within_its_capacity() {
        let table = RateTable::new(Rate { per_sec: 1, burst: 2 }, 3);
        let now = Instant::now();
        assert!(table.take_at(&0, now).is_ok());
        assert!(table.take_at(&0, now).is_ok());
        assert!(table.take_at(&0, now).is_err(), "0's burst is spent");
        assert!(table.take_at(&1, now).is_ok(), "1 has its own bucket");
        for key in 2..6 {
            assert!(table.take_at(&key, now).is_ok());
            assert!(table.len() <= 3);
        }
        // Once refilled, a key is forgotten first; the table never grows.
        let later = now + Duration::from_secs(10);
        for key in 10..110 {
            assert!(table.take_at(&key, later).is_ok());
        }
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(IpKey::of(ip("2001:db8:1:2::1")), IpKey::of(ip("2001:db8:1:2:ffff:eeee:dddd:cccc")));
        assert_ne!(IpKey::of(ip("2001:db8:1:2::1")), IpKey::of(ip("2001:db8:1:3::1")));
        assert_eq!(IpKey::of(ip("::ffff:10.0.0.1")), IpKey::of(ip("10.0.0.1")));
        let caps = ConnectionCaps::new(1);
        let _held = caps.admit(ip("2001:db8::1")).unwrap();
        assert!(caps.admit(ip("2001:db8::2")).is_none(), "the same /64 shares the cap");
        assert!(caps.admit(ip("2001:db8:0:1::1")).is_some());
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
    fn window_caps_count_starts_per_ip_until_they_leave_the_window() {
        let window = Duration::from_secs(5);
        let caps = WindowCaps::new(2, window);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let start = Instant::now();
        assert!(caps.admit(a, start));
        assert!(caps.admit(a, start + Duration::from_secs(1)));
        assert!(!caps.admit(a, start + Duration::from_secs(2)), "two within the window");
        assert!(caps.admit(b, start + Duration::from_secs(2)), "per address");
        assert!(caps.admit(a, start + window), "the first left the window");
        assert!(!caps.admit(a, start + window), "the second has not");
        assert!(caps.admit(a, start + window + Duration::from_secs(1)));
        let later = start + Duration::from_secs(60);
        assert!(caps.admit(a, later) && caps.admit(a, later));
        let recent = lock(&caps.recent);
        assert_eq!(recent.expiries.len(), 2, "what left the window is forgotten");
        assert_eq!(recent.counts.len(), 1);
    }

    #[test]
    fn window_caps_without_a_limit_keep_nothing() {
        let caps = WindowCaps::new(0, Duration::from_secs(5));
        let now = Instant::now();
        assert!((0..1000).all(|_| caps.admit("10.0.0.1".parse().unwrap(), now)));
        assert!(lock(&caps.recent).expiries.is_empty());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
