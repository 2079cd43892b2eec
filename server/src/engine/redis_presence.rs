//! Presence across a cluster: each node is the truth for its own
//! connections (a [`LocalPresence`] in memory), Redis holds the aggregate.
//!
//! Per room, under the room's hash tag (`{prefix}:{r:room}`):
//! - `…:p`, a hash with one field per node: that node's members, a
//!   [`Tally`] as JSON;
//! - `…:px`, a sorted set: when each node's field expires, on Redis's clock;
//! - `…:pv`, the room's presence version.
//!
//! One script ([`SYNC`]) writes this node's field (or removes it), takes
//! out every other node's field past its expiry, moves the version when
//! anything changed, and answers the version and every field. What a room
//! is told is this node's members from memory (the freshest there is) plus
//! every other node's from Redis; the version travels with the snapshot, so
//! a node that delivered a newer one drops an older one (two nodes'
//! snapshots may cross on the way). The version is at least Redis's clock
//! in microseconds, so it keeps increasing after Redis restarts empty or a
//! quiet room's keys expire.
//!
//! Each node writes its fields again every third of the TTL
//! ([`Presence::refresh`]); a node that died stops, and the first refresh
//! of a survivor after the TTL takes its fields out and tells the room.
//! After Redis was out of reach, every node writes everything again at
//! once (the announcer's `maintain`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use herald::RoomName;
use herald::protocol::PresenceSnapshot;
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::channel::Channel;
use super::presence::{
    ACTIVE_ROOMS_MAX, ActiveRoom, Announcement, LocalPresence, Member, Moved, Presence, PresenceError, PresenceResult,
    Roster, Tally, ready,
};
use super::redis::{REDIS_TIMEOUT, connection_config};
use crate::config::Cluster;
use crate::sync::lock;

/// Writes this node's field of a room (`ARGV[2]`, empty to remove it) with
/// an expiry `ARGV[3]` ms ahead, takes out other nodes' expired fields, and
/// answers `{version, changed, {node, tally, …}}`.
const SYNC: &str = r"
local node, entry, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local changed = 0
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  if dead ~= node then
    redis.call('HDEL', KEYS[1], dead)
    redis.call('ZREM', KEYS[2], dead)
    changed = 1
  end
end
if entry == '' then
  if redis.call('HDEL', KEYS[1], node) == 1 then changed = 1 end
  redis.call('ZREM', KEYS[2], node)
else
  if redis.call('HGET', KEYS[1], node) ~= entry then
    redis.call('HSET', KEYS[1], node, entry)
    changed = 1
  end
  redis.call('ZADD', KEYS[2], now + ttl, node)
end
local version = tonumber(redis.call('GET', KEYS[3]) or '0')
if changed == 1 or version == 0 then
  version = math.max(version + 1, now * 1000)
  redis.call('SET', KEYS[3], string.format('%.0f', version), 'PX', 4 * ttl)
else
  redis.call('PEXPIRE', KEYS[3], 4 * ttl)
end
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
redis.call('PEXPIRE', KEYS[2], 2 * ttl)
return {version, changed, redis.call('HGETALL', KEYS[1])}
";

/// How long after Redis failed to answer presence gives up at once
/// instead of waiting for it again (a page, a join).
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Entries written at once by a refresh.
pub const REFRESH_CONCURRENCY: usize = 64;

/// Every node's entry under one name in Redis, each expiring unless its
/// node writes it again (see the module's documentation): presence is one
/// use, the connection counts of [`super::census`] another.
pub struct Entries {
    redis: ConnectionManager,
    script: Script,
    node: String,
    ttl: Duration,
    /// When Redis last failed to answer, while it has not answered since.
    failed_at: Mutex<Option<Instant>>,
}

/// What [`Entries::sync`] answered.
pub struct Synced {
    pub version: u64,
    /// Anything changed: this node's entry, or another's expired.
    pub changed: bool,
    /// The other nodes' entries, by node.
    pub others: Vec<(String, String)>,
}

impl Entries {
    /// Connects lazily: nothing waits for Redis here.
    pub fn new(cluster: &Cluster) -> Result<Self, PresenceError> {
        let unavailable = |reason: &str| PresenceError::Unavailable(reason.to_owned());
        // The URL may hold a password: errors about it never quote it.
        let client = redis::Client::open(cluster.redis_url.expose())
            .map_err(|_| unavailable("HERALD_REDIS_URL is not a Redis URL"))?;
        let redis = ConnectionManager::new_lazy_with_config(client, connection_config())
            .map_err(|err| unavailable(&err.to_string()))?;
        Ok(Self {
            redis,
            script: Script::new(SYNC),
            node: cluster.node_id.clone(),
            ttl: cluster.presence_ttl,
            failed_at: Mutex::default(),
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The names (`base`) with entries whose bases match `pattern` (a
    /// Redis glob), at most `max`: a `SCAN`, a page at a time.
    pub async fn bases(&self, pattern: &str, max: usize) -> PresenceResult<Vec<String>> {
        let unavailable = |reason: String| PresenceError::Unavailable(reason);
        let mut redis = self.redis.clone();
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(format!("{pattern}:p")).arg("COUNT").arg(500);
            let page = scan.query_async::<(u64, Vec<String>)>(&mut redis);
            let (next, keys) = tokio::time::timeout(REDIS_TIMEOUT, page)
                .await
                .map_err(|_| unavailable("Redis did not answer in time".to_owned()))?
                .map_err(|err| unavailable(err.to_string()))?;
            found.extend(keys.into_iter().filter_map(|key| key.strip_suffix(":p").map(str::to_owned)));
            if next == 0 || found.len() >= max {
                found.truncate(max);
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Writes this node's entry under `base` (`""` removes it) and reads
    /// the others'. Gives up at once for a second after Redis failed to
    /// answer.
    pub async fn sync(&self, base: &str, entry: &str) -> PresenceResult<Synced> {
        if lock(&self.failed_at).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return Err(PresenceError::Unavailable("Redis did not answer a moment ago".to_owned()));
        }
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = self.script.key(format!("{base}:p"));
        invocation.key(format!("{base}:px")).key(format!("{base}:pv")).arg(&self.node).arg(entry).arg(ttl_ms);
        let mut redis = self.redis.clone();
        let answer: Result<(u64, u8, Vec<String>), String> =
            match tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async(&mut redis)).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err("Redis did not answer in time".to_owned()),
            };
        match answer {
            Ok((version, changed, fields)) => {
                *lock(&self.failed_at) = None;
                let mut others = Vec::with_capacity(fields.len() / 2);
                let mut fields = fields.into_iter();
                while let (Some(node), Some(entry)) = (fields.next(), fields.next()) {
                    if node != self.node {
                        others.push((node, entry));
                    }
                }
                Ok(Synced { version, changed: changed == 1, others })
            }
            Err(reason) => {
                lock(&self.failed_at).get_or_insert_with(Instant::now);
                Err(PresenceError::Unavailable(reason))
            }
        }
    }
}

/// A room's presence across the cluster.
struct Room {
    version: u64,
    changed: bool,
    /// Every node's members together.
    tally: Tally,
    /// The other nodes' members.
    others: Tally,
    /// This node's members.
    here: bool,
}

/// Presence for a node of a cluster.
pub struct RedisPresence {
    local: LocalPresence,
    entries: Entries,
    prefix: String,
    /// Rooms where this node's field may be in Redis.
    written: Mutex<HashSet<RoomName>>,
    /// The node is going away: its fields are removed, never written.
    withdrawn: AtomicBool,
    /// The last list of active rooms, and when it was read: pages list
    /// rooms on every render, and a list costs a scan and a read per room.
    active: Mutex<Option<(Instant, Vec<ActiveRoom>)>>,
}

/// How long a list of active rooms is reused.
const ACTIVE_FRESH: Duration = Duration::from_secs(2);

impl RedisPresence {
    /// Connects lazily: nothing waits for Redis here.
    pub fn new(cluster: &Cluster) -> Result<Self, PresenceError> {
        Ok(Self {
            local: LocalPresence::default(),
            entries: Entries::new(cluster)?,
            prefix: cluster.prefix.clone(),
            written: Mutex::default(),
            withdrawn: AtomicBool::new(false),
            active: Mutex::default(),
        })
    }

    /// Writes this node's members of `room` and reads everyone's.
    async fn sync(&self, room: &RoomName) -> PresenceResult<Room> {
        let mine = self.local.tally(room);
        let here = !mine.is_empty();
        let withdrawn = self.withdrawn.load(Ordering::Relaxed);
        let entry = if here && !withdrawn {
            serde_json::to_string(&mine).map_err(|err| PresenceError::Unavailable(err.to_string()))?
        } else {
            String::new()
        };
        let synced = self.entries.sync(&Channel::Room(room.clone()).bus_name(&self.prefix), &entry).await?;
        {
            let mut written = lock(&self.written);
            if entry.is_empty() {
                written.remove(room);
            } else {
                written.insert(room.clone());
            }
        }
        let mut others = Tally::default();
        for (node, entry) in synced.others {
            match serde_json::from_str::<Tally>(&entry) {
                Ok(theirs) => others.add(theirs),
                Err(err) => tracing::warn!(%err, %room, %node, "a node's presence entry is not Herald's; skipped"),
            }
        }
        let mut tally = if withdrawn { Tally::default() } else { mine };
        tally.add(others.clone());
        Ok(Room { version: synced.version, changed: synced.changed, tally, others, here })
    }

    /// Syncs each of `rooms`, a few at a time; what each answered.
    async fn sync_all(&self, rooms: Vec<RoomName>) -> Vec<(RoomName, PresenceResult<Room>)> {
        futures::stream::iter(rooms)
            .map(|room| async move {
                let synced = self.sync(&room).await;
                (room, synced)
            })
            .buffer_unordered(REFRESH_CONCURRENCY)
            .collect()
            .await
    }
}

impl Presence for RedisPresence {
    // Joins and leaves change this node's members only: the room's
    // announcement that follows writes them to Redis.
    fn join<'a>(
        &'a self,
        room: &'a RoomName,
        conn: &'a str,
        member: Member,
    ) -> BoxFuture<'a, PresenceResult<Option<Moved>>> {
        ready(self.local.join(room, conn, member))
    }

    fn leave<'a>(&'a self, room: &'a RoomName, conn: &'a str) -> BoxFuture<'a, PresenceResult<Option<Moved>>> {
        ready(self.local.leave(room, conn))
    }

    fn leave_all<'a>(&'a self, conn: &'a str) -> BoxFuture<'a, PresenceResult<Vec<Moved>>> {
        ready(self.local.leave_all(conn))
    }

    fn snapshot<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<PresenceSnapshot>> {
        Box::pin(async move { Ok(self.sync(room).await?.tally.snapshot(room)) })
    }

    fn roster<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<Roster>> {
        Box::pin(async move { Ok(self.sync(room).await?.tally.roster(room)) })
    }

    fn announce<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<Announcement>> {
        Box::pin(async move {
            let synced = self.sync(room).await?;
            Ok(Announcement { version: synced.version, snapshot: synced.tally.snapshot(room), here: synced.here })
        })
    }

    fn refresh(&self) -> BoxFuture<'_, PresenceResult<Vec<RoomName>>> {
        Box::pin(async move {
            let mut rooms: HashSet<RoomName> = self.local.rooms().into_iter().collect();
            rooms.extend(lock(&self.written).iter().cloned());
            let mut changed = Vec::new();
            let mut failure = None;
            for (room, synced) in self.sync_all(rooms.into_iter().collect()).await {
                match synced {
                    Ok(synced) if synced.changed => changed.push(room),
                    Ok(_) => {}
                    Err(err) => failure = Some(err),
                }
            }
            match failure {
                Some(err) if changed.is_empty() => Err(err),
                _ => Ok(changed),
            }
        })
    }

    fn refresh_every(&self) -> Option<Duration> {
        Some(self.entries.ttl() / 3)
    }

    fn withdraw(&self) -> BoxFuture<'_, PresenceResult<Vec<(RoomName, Announcement)>>> {
        Box::pin(async move {
            self.withdrawn.store(true, Ordering::Relaxed);
            let rooms: Vec<RoomName> = lock(&self.written).iter().cloned().collect();
            let mut told = Vec::new();
            for (room, synced) in self.sync_all(rooms).await {
                let synced = synced?;
                let snapshot = synced.tally.snapshot(&room);
                told.push((room, Announcement { version: synced.version, snapshot, here: false }));
            }
            Ok(told)
        })
    }

    fn local_room_count(&self) -> usize {
        self.local.room_count()
    }

    fn here(&self, room: &RoomName) -> Tally {
        self.local.tally(room)
    }

    fn rooms_of(&self, conn: &str) -> Vec<RoomName> {
        Presence::rooms_of(&self.local, conn)
    }

    fn others<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<Tally>> {
        Box::pin(async move { Ok(self.sync(room).await?.others) })
    }

    fn active(&self) -> BoxFuture<'_, PresenceResult<Vec<ActiveRoom>>> {
        Box::pin(async move {
            if let Some((at, rooms)) = &*lock(&self.active)
                && at.elapsed() < ACTIVE_FRESH
            {
                return Ok(rooms.clone());
            }
            let pattern = format!("{}:{{r:*}}", self.prefix);
            let mut rooms: HashSet<RoomName> = self
                .entries
                .bases(&pattern, ACTIVE_ROOMS_MAX)
                .await?
                .iter()
                .filter_map(|base| match Channel::from_bus_name(&self.prefix, base) {
                    Some(Channel::Room(room)) => Some(room),
                    _ => None,
                })
                .collect();
            rooms.extend(self.local.rooms());
            let mut active = Vec::new();
            for (room, synced) in self.sync_all(rooms.into_iter().collect()).await {
                active.extend(ActiveRoom::of(room, &synced?.tally));
            }
            active.sort_by(|a, b| a.room.cmp(&b.room));
            active.truncate(ACTIVE_ROOMS_MAX);
            *lock(&self.active) = Some((Instant::now(), active.clone()));
            Ok(active)
        })
    }
}
