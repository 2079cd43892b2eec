//! Presence: who is in each room, and telling the room.
//!
//! [`Presence`] keeps the members. It is async and fallible, the way a
//! multi-node implementation (one that keeps the aggregate in Redis) has to
//! be, so that one can replace [`LocalPresence`] without touching the
//! Socket.IO handlers or the API. Callers treat a failure as "presence is
//! unknown for now", never as a reason to refuse a join or drop a message:
//! a join still joins, a snapshot is skipped (the next change sends one),
//! the API answers 503.
//! [`Announcer`] tells a room who is in it, coalesced: at most one snapshot
//! per room per `HERALD_PRESENCE_INTERVAL`, always the latest state. Without
//! that, every join and leave would cost one packet per member, a join/leave
//! loop (or a deploy reconnecting a big room) would fill members' queues and
//! cut them as slow consumers, and their rejoins would broadcast again.
//!
//! Snapshots sent to sockets carry names and counts only (see
//! [`PresenceSnapshot`]); [`Roster`], with user ids, is for the API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use herald::protocol::{PRESENCE_NAMES_MAX, PresenceSnapshot, PresentUser};
use herald::{Identity, RoomName};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::ops::metrics::Metrics;
use crate::sync::lock;

/// A connection's id (Socket.IO `sid`, as text).
pub type ConnId = String;

/// Who a connection is, for presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    User(Identity),
    Anonymous,
}

/// A room's members with their user ids, for `GET /api/presence/{room}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Roster {
    pub room: String,
    /// Every signed-in user present (at most [`PRESENCE_NAMES_MAX`]), by id.
    pub users: Vec<RosterUser>,
    pub user_count: u64,
    pub anonymous: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RosterUser {
    pub id: String,
    pub name: String,
}

/// The presence implementation in use, shared by handlers.
pub type SharedPresence = Arc<dyn Presence>;

/// Presence could not be read or changed (its shared state is out of reach).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PresenceError {
    #[error("presence is unavailable: {0}")]
    Unavailable(String),
}

/// Who is in each room.
///
/// Every implementation keeps this node's own connections in memory
/// ([`LocalPresence`] is that part): they are the truth for the node, and
/// what a shared store is repaired from after it lost them. The methods that
/// may reach beyond the node return futures and errors; a change is applied
/// locally even when it fails to reach further.
pub trait Presence: Send + Sync + 'static {
    /// Records `conn` in `room`; what that changed, if anything.
    fn join<'a>(
        &'a self,
        room: &'a RoomName,
        conn: &'a str,
        member: Member,
    ) -> BoxFuture<'a, PresenceResult<Option<Moved>>>;
    /// Removes `conn` from `room`; what that changed, if it was there.
    fn leave<'a>(&'a self, room: &'a RoomName, conn: &'a str) -> BoxFuture<'a, PresenceResult<Option<Moved>>>;
    /// Removes `conn` from every room; what that changed in each it was in.
    fn leave_all<'a>(&'a self, conn: &'a str) -> BoxFuture<'a, PresenceResult<Vec<Moved>>>;
    /// What members of the room may see: names and counts.
    fn snapshot<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<PresenceSnapshot>>;
    /// Who is there, by user id.
    fn roster<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<Roster>>;
    /// Brings the room's shared state up to date with this node's members
    /// and reads it whole: what the room is told, numbered.
    fn announce<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<Announcement>>;
    /// Writes this node's members again and takes out those of nodes that
    /// stopped writing theirs; the rooms whose membership that changed.
    /// Runs every [`Presence::refresh_every`].
    fn refresh(&self) -> BoxFuture<'_, PresenceResult<Vec<RoomName>>> {
        ready(Vec::new())
    }
    /// How often [`Presence::refresh`] must run; `None` when it need not.
    fn refresh_every(&self) -> Option<Duration> {
        None
    }
    /// Takes this node's members out of the shared state (the node is
    /// going away); what each room they were in is told now.
    fn withdraw(&self) -> BoxFuture<'_, PresenceResult<Vec<(RoomName, Announcement)>>> {
        ready(Vec::new())
    }
    /// How many rooms have one of this node's connections in them (for
    /// `/metrics`; never leaves the node, so never fails).
    fn local_room_count(&self) -> usize;
    /// Rooms with someone in them (on any node), counted, by name; at most
    /// [`ACTIVE_ROOMS_MAX`].
    fn active(&self) -> BoxFuture<'_, PresenceResult<Vec<ActiveRoom>>>;
    /// This node's members of `room` (never leaves the node).
    fn here(&self, room: &RoomName) -> Tally;
    /// The rooms `conn` is in, on this node.
    fn rooms_of(&self, conn: &str) -> Vec<RoomName>;
    /// The other nodes' members of `room`: none on one node.
    fn others<'a>(&'a self, _room: &'a RoomName) -> BoxFuture<'a, PresenceResult<Tally>> {
        ready(Tally::default())
    }
}

/// What a change of a room's members means to the world outside (the
/// webhooks): told by the node whose connection made it, so once per
/// cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomChange {
    /// The first member, on any node.
    Occupied,
    /// The last member left, on every node.
    Vacated,
    /// A signed-in user's first connection in the room, on any node.
    Joined(String),
    /// A signed-in user's last connection in the room left.
    Left(String),
}

/// Hears [`RoomChange`]s.
pub trait Watch: Send + Sync + 'static {
    fn room_changed(&self, room: &RoomName, change: RoomChange);
}

/// What one connection's coming or going changed in this node's members
/// of a room, seen under the room's lock: changes racing each other (a join
/// and a leave at once) are each told as they happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub room: RoomName,
    /// The room had none of this node's members before (a join), or has
    /// none now (a leave).
    pub edge: bool,
    /// The signed-in user whose first (a join) or last (a leave) connection
    /// in the room here it was.
    pub user: Option<String>,
}

/// What `moved` (a join when `arrived`, else a leave) means with the other
/// nodes' members `others`: users and the room itself appearing or
/// vanishing everywhere.
pub fn changes(moved: &Moved, arrived: bool, others: &Tally) -> Vec<RoomChange> {
    let mut changes = Vec::new();
    let room = moved.edge && others.is_empty();
    let user = moved.user.as_ref().filter(|user| !others.users.contains_key(*user)).cloned();
    if arrived {
        changes.extend(room.then_some(RoomChange::Occupied));
        changes.extend(user.map(RoomChange::Joined));
    } else {
        changes.extend(user.map(RoomChange::Left));
        changes.extend(room.then_some(RoomChange::Vacated));
    }
    changes
}

/// The most rooms [`Presence::active`] lists.
pub const ACTIVE_ROOMS_MAX: usize = 1000;

/// A room with someone in it (`GET /api/rooms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveRoom {
    pub room: RoomName,
    /// Signed-in users (each once, however many connections).
    pub user_count: u64,
    /// Connections without a token.
    pub anonymous: u64,
}

impl ActiveRoom {
    /// `room`'s counts from its members; `None` when nobody is there.
    pub fn of(room: RoomName, tally: &Tally) -> Option<Self> {
        let snapshot = tally.snapshot(&room);
        (snapshot.user_count + snapshot.anonymous > 0).then_some(Self {
            room,
            user_count: snapshot.user_count,
            anonymous: snapshot.anonymous,
        })
    }
}

pub type PresenceResult<T> = Result<T, PresenceError>;

/// A room's membership as it is told to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Increases with every change of the room's membership (across nodes
    /// and restarts of the shared store): a node that delivered a newer
    /// snapshot drops an older one that reaches it late.
    pub version: u64,
    pub snapshot: PresenceSnapshot,
    /// This node still has members in the room.
    pub here: bool,
}

/// Carries a room's snapshot to its sockets on every node: the engine.
pub trait Tell: Send + Sync + 'static {
    fn presence<'a>(&'a self, room: &'a RoomName, version: u64, snapshot: &'a PresenceSnapshot) -> BoxFuture<'a, ()>;
}

pub(crate) fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, PresenceResult<T>> {
    Box::pin(std::future::ready(Ok(value)))
}

/// A room's members, counted: what a snapshot and a roster are made of,
/// and what a node keeps of its own connections in a shared store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Distinct signed-in users: id → the name their token gave, if any.
    #[serde(rename = "u")]
    pub users: BTreeMap<String, Option<String>>,
    /// Connections without a user.
    #[serde(rename = "a")]
    pub anonymous: u64,
}

impl Tally {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.anonymous == 0
    }

    /// Adds another node's members: a user on both counts once.
    pub fn add(&mut self, other: Tally) {
        for (user, name) in other.users {
            let known = self.users.entry(user).or_default();
            if known.is_none() {
                *known = name;
            }
        }
        self.anonymous += other.anonymous;
    }

    pub fn snapshot(&self, room: &RoomName) -> PresenceSnapshot {
        // Only names a token gave: a user without one would be shown by id.
        let mut named: Vec<PresentUser> =
            self.users.values().flatten().map(|name| PresentUser { name: name.clone() }).collect();
        named.sort_by(|a, b| a.name.cmp(&b.name));
        named.truncate(PRESENCE_NAMES_MAX);
        PresenceSnapshot {
            room: room.to_string(),
            users: named,
            user_count: self.users.len() as u64,
            anonymous: self.anonymous,
        }
    }

    pub fn roster(&self, room: &RoomName) -> Roster {
        let users = self
            .users
            .iter()
            .take(PRESENCE_NAMES_MAX)
            .map(|(id, name)| RosterUser { id: id.clone(), name: name.clone().unwrap_or_else(|| id.clone()) })
            .collect();
        Roster { room: room.to_string(), users, user_count: self.users.len() as u64, anonymous: self.anonymous }
    }
}

#[derive(Default)]
struct RoomMembers {
    conns: HashMap<ConnId, Member>,
    /// Connections of each signed-in user among `conns`.
    users: HashMap<String, u32>,
    /// Set when the room emptied and left the map: a joiner holding this
    /// room must look it up again.
    removed: bool,
}

impl RoomMembers {
    /// Adds `conn`: whether it is the room's first, and the user whose
    /// first it is; `None` if it was there.
    fn add(&mut self, conn: &str, member: Member) -> Option<(bool, Option<String>)> {
        if self.conns.contains_key(conn) {
            return None;
        }
        let edge = self.conns.is_empty();
        let user = match &member {
            Member::User(identity) => {
                let user = identity.user.to_string();
                let count = self.users.entry(user.clone()).or_insert(0);
                *count += 1;
                (*count == 1).then_some(user)
            }
            Member::Anonymous => None,
        };
        self.conns.insert(conn.to_owned(), member);
        Some((edge, user))
    }

    /// Takes `conn` out: whether it was the room's last, and the user
    /// whose last it was; `None` if it was not there.
    fn take(&mut self, conn: &str) -> Option<(bool, Option<String>)> {
        let member = self.conns.remove(conn)?;
        let user = match member {
            Member::User(identity) => {
                let user = identity.user.to_string();
                match self.users.get_mut(&user) {
                    Some(count) if *count > 1 => {
                        *count -= 1;
                        None
                    }
                    _ => {
                        self.users.remove(&user);
                        Some(user)
                    }
                }
            }
            Member::Anonymous => None,
        };
        Some((self.conns.is_empty(), user))
    }

    fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for member in self.conns.values() {
            match member {
                Member::User(identity) => {
                    let name = identity.name.as_ref().map(|n| n.as_str().to_owned());
                    tally.users.insert(identity.user.to_string(), name);
                }
                Member::Anonymous => tally.anonymous += 1,
            }
        }
        tally
    }
}

/// Presence for a single node, in memory. Each room has its own lock, held
/// to change or read that room only; the map of rooms and the map of each
/// connection's rooms are locked only to look up, add or remove an entry.
/// No lock is held across an `.await` (no method here is async), and none
/// while taking another but the map's after a room's.
#[derive(Default)]
pub struct LocalPresence {
    /// The version of the last announcement.
    version: std::sync::atomic::AtomicU64,
    rooms: Mutex<HashMap<RoomName, Arc<Mutex<RoomMembers>>>>,
    /// Which rooms each connection is in, to clean up on disconnect.
    conn_rooms: Mutex<HashMap<ConnId, HashSet<RoomName>>>,
}

impl LocalPresence {
    fn room(&self, room: &RoomName) -> Option<Arc<Mutex<RoomMembers>>> {
        lock(&self.rooms).get(room).cloned()
    }

    fn remove(&self, room: &RoomName, conn: &str) -> Option<Moved> {
        let members = self.room(room)?;
        let mut guard = lock(&members);
        let (edge, user) = guard.take(conn)?;
        let moved = Moved { room: room.clone(), edge, user };
        if guard.conns.is_empty() && !guard.removed {
            guard.removed = true;
            drop(guard);
            let mut rooms = lock(&self.rooms);
            if rooms.get(room).is_some_and(|current| Arc::ptr_eq(current, &members)) {
                rooms.remove(room);
            }
        }
        Some(moved)
    }

    fn read<T>(&self, room: &RoomName, f: impl FnOnce(&RoomMembers) -> T) -> Option<T> {
        self.room(room).map(|members| f(&lock(&members)))
    }
}

impl LocalPresence {
    pub fn join(&self, room: &RoomName, conn: &str, member: Member) -> Option<Moved> {
        let (edge, user) = loop {
            let members = lock(&self.rooms).entry(room.clone()).or_default().clone();
            let mut guard = lock(&members);
            if guard.removed {
                continue; // emptied and dropped meanwhile: take the new one
            }
            break guard.add(conn, member.clone())?;
        };
        lock(&self.conn_rooms).entry(conn.to_owned()).or_default().insert(room.clone());
        Some(Moved { room: room.clone(), edge, user })
    }

    pub fn leave(&self, room: &RoomName, conn: &str) -> Option<Moved> {
        {
            let mut conn_rooms = lock(&self.conn_rooms);
            if let Some(rooms) = conn_rooms.get_mut(conn) {
                rooms.remove(room);
                if rooms.is_empty() {
                    conn_rooms.remove(conn);
                }
            }
        }
        self.remove(room, conn)
    }

    pub fn leave_all(&self, conn: &str) -> Vec<Moved> {
        let rooms = lock(&self.conn_rooms).remove(conn).unwrap_or_default();
        rooms.into_iter().filter_map(|room| self.remove(&room, conn)).collect()
    }

    /// This node's members of `room` (empty when it has none).
    pub fn tally(&self, room: &RoomName) -> Tally {
        self.read(room, RoomMembers::tally).unwrap_or_default()
    }

    pub fn snapshot(&self, room: &RoomName) -> PresenceSnapshot {
        self.tally(room).snapshot(room)
    }

    pub fn roster(&self, room: &RoomName) -> Roster {
        self.tally(room).roster(room)
    }

    /// The rooms with one of this node's connections in them.
    pub fn rooms(&self) -> Vec<RoomName> {
        lock(&self.rooms).keys().cloned().collect()
    }

    pub fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }
}

impl Presence for LocalPresence {
    fn join<'a>(
        &'a self,
        room: &'a RoomName,
        conn: &'a str,
        member: Member,
    ) -> BoxFuture<'a, PresenceResult<Option<Moved>>> {
        ready(LocalPresence::join(self, room, conn, member))
    }

    fn leave<'a>(&'a self, room: &'a RoomName, conn: &'a str) -> BoxFuture<'a, PresenceResult<Option<Moved>>> {
        ready(LocalPresence::leave(self, room, conn))
    }

    fn leave_all<'a>(&'a self, conn: &'a str) -> BoxFuture<'a, PresenceResult<Vec<Moved>>> {
        ready(LocalPresence::leave_all(self, conn))
    }

    fn snapshot<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<PresenceSnapshot>> {
        ready(LocalPresence::snapshot(self, room))
    }

    fn roster<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<Roster>> {
        ready(LocalPresence::roster(self, room))
    }

    fn announce<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<Announcement>> {
        let version = self.version.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let tally = self.tally(room);
        ready(Announcement { version, here: !tally.is_empty(), snapshot: tally.snapshot(room) })
    }

    fn local_room_count(&self) -> usize {
        self.room_count()
    }

    fn here(&self, room: &RoomName) -> Tally {
        self.tally(room)
    }

    fn rooms_of(&self, conn: &str) -> Vec<RoomName> {
        lock(&self.conn_rooms).get(conn).map(|rooms| rooms.iter().cloned().collect()).unwrap_or_default()
    }

    fn active(&self) -> BoxFuture<'_, PresenceResult<Vec<ActiveRoom>>> {
        let mut rooms: Vec<ActiveRoom> =
            self.rooms().into_iter().filter_map(|room| ActiveRoom::of(room.clone(), &self.tally(&room))).collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        rooms.truncate(ACTIVE_ROOMS_MAX);
        ready(rooms)
    }
}

/// When a room was last told, and whether a snapshot is already on its way.
struct Throttle {
    /// The earliest moment the next snapshot may go.
    next: Instant,
    /// A snapshot is scheduled; changes until then ride along with it.
    pending: bool,
}

/// Tells rooms who is in them, at most once per room per interval. Cheap to
/// clone.
#[derive(Clone)]
pub struct Announcer {
    inner: Arc<AnnouncerInner>,
}

struct AnnouncerInner {
    presence: SharedPresence,
    tell: Arc<dyn Tell>,
    metrics: Arc<Metrics>,
    interval: Duration,
    /// Rooms told recently or about to be. An entry goes when this node has
    /// no member left in its room at a flush, so this is bounded by the
    /// rooms in use here.
    rooms: Mutex<HashMap<RoomName, Throttle>>,
    /// Told what the changes mean, when someone listens (webhooks).
    watch: std::sync::OnceLock<Arc<dyn Watch>>,
}

impl Announcer {
    pub fn new(presence: SharedPresence, tell: Arc<dyn Tell>, metrics: Arc<Metrics>, interval: Duration) -> Self {
        Self {
            inner: Arc::new(AnnouncerInner {
                presence,
                tell,
                metrics,
                interval,
                rooms: Mutex::default(),
                watch: std::sync::OnceLock::new(),
            }),
        }
    }

    /// From now on `watch` hears what each change this node makes means.
    pub fn watch_with(&self, watch: Arc<dyn Watch>) {
        let _ = self.inner.watch.set(watch);
    }

    /// Tells the watch what `moved` (a join when `arrived`) means. Without
    /// the other nodes' members (Redis out of reach) nothing is told: a
    /// change can't be said to be the room's.
    async fn tell_watch(&self, moved: &Moved, arrived: bool) {
        let Some(watch) = self.inner.watch.get() else { return };
        if !moved.edge && moved.user.is_none() {
            return; // neither the room nor a user appeared or vanished here
        }
        let room = &moved.room;
        match self.inner.presence.others(room).await {
            Ok(others) => changes(moved, arrived, &others).into_iter().for_each(|c| watch.room_changed(room, c)),
            Err(err) => tracing::warn!(%err, %room, "a room change not told: the other nodes' members are unknown"),
        }
    }

    /// Keeps a shared presence fresh: every [`Presence::refresh_every`]
    /// this node writes its members again and rooms whose membership
    /// changed by that (a dead node's members expired) are told; each time
    /// `resynced` moves (the shared store was out of reach and is back),
    /// every room of this node is told as well, since what was announced
    /// meanwhile may not have reached anyone.
    pub fn maintain(&self, mut resynced: tokio::sync::watch::Receiver<u64>) {
        let Some(every) = self.inner.presence.refresh_every() else { return };
        let this = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let everything = tokio::select! {
                    _ = ticks.tick() => false,
                    changed = resynced.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        true
                    }
                };
                let Some(inner) = this.upgrade() else { return };
                let announcer = Announcer { inner };
                match announcer.inner.presence.refresh().await {
                    Ok(rooms) => rooms.iter().for_each(|room| announcer.changed(room)),
                    Err(err) => tracing::debug!(%err, "presence not refreshed; trying again"),
                }
                if everything {
                    let rooms: Vec<RoomName> = lock(&announcer.inner.rooms).keys().cloned().collect();
                    rooms.iter().for_each(|room| announcer.changed(room));
                }
            }
        });
    }

    /// Records that `conn` joined `room` and tells the room if that changed
    /// it. A presence failure is logged: the join itself stands.
    pub async fn joined(&self, room: &RoomName, conn: &str, member: Member) {
        match self.inner.presence.join(room, conn, member).await {
            Ok(Some(moved)) => {
                self.changed(room);
                self.tell_watch(&moved, true).await;
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(%err, %room, "presence join not recorded"),
        }
    }

    /// Records that `conn` left `room` and tells the room.
    pub async fn left(&self, room: &RoomName, conn: &str) {
        match self.inner.presence.leave(room, conn).await {
            Ok(Some(moved)) => {
                self.changed(room);
                self.tell_watch(&moved, false).await;
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(%err, %room, "presence leave not recorded"),
        }
    }

    /// Records that `conn` is gone and tells every room it was in.
    pub async fn disconnected(&self, conn: &str) {
        match self.inner.presence.leave_all(conn).await {
            Ok(moves) => {
                moves.iter().for_each(|moved| self.changed(&moved.room));
                for moved in &moves {
                    self.tell_watch(moved, false).await;
                }
            }
            Err(err) => tracing::warn!(%err, "presence of a closed connection not removed"),
        }
    }

    /// Takes this node out of every room's presence (a drain) and tells
    /// the rooms at once.
    pub async fn withdraw(&self) {
        match self.inner.presence.withdraw().await {
            Ok(rooms) => {
                for (room, announcement) in rooms {
                    self.tell(&room, &announcement).await;
                }
            }
            Err(err) => tracing::warn!(%err, "this node's presence not withdrawn; it expires"),
        }
    }

    /// Says `room`'s membership changed: its members hear the new state
    /// now if the room was not told within the interval, otherwise once the
    /// interval is over (with whatever the state is by then).
    pub fn changed(&self, room: &RoomName) {
        let now = Instant::now();
        let delay = {
            let mut rooms = lock(&self.inner.rooms);
            let throttle = rooms.entry(room.clone()).or_insert(Throttle { next: now, pending: false });
            if throttle.pending {
                return;
            }
            throttle.pending = true;
            throttle.next.saturating_duration_since(now)
        };
        let this = self.clone();
        let room = room.clone();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            this.flush(&room).await;
        });
    }

    async fn flush(&self, room: &RoomName) {
        let inner = &self.inner;
        let announcement = inner.presence.announce(room).await;
        {
            let mut rooms = lock(&inner.rooms);
            if announcement.as_ref().is_ok_and(|a| !a.here) {
                rooms.remove(room);
            } else if let Some(throttle) = rooms.get_mut(room) {
                throttle.pending = false;
                throttle.next = Instant::now() + inner.interval;
            }
        }
        match announcement {
            Ok(announcement) => self.tell(room, &announcement).await,
            // The members keep what they were told last; the room's next
            // change tells them again.
            Err(err) => tracing::warn!(%err, %room, "presence snapshot not sent"),
        }
    }

    async fn tell(&self, room: &RoomName, announcement: &Announcement) {
        let snapshot = &announcement.snapshot;
        if snapshot.user_count == 0 && snapshot.anonymous == 0 {
            return; // nobody on any node to tell
        }
        self.inner.metrics.presence_snapshot();
        self.inner.tell.presence(room, announcement.version, snapshot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::{DisplayName, UserId};

    fn user(id: &str, name: Option<&str>) -> Member {
        Member::User(Identity {
            user: UserId::parse(id).unwrap(),
            name: name.map(|n| DisplayName::parse(n).unwrap()),
            rooms: Default::default(),
        })
    }

    #[test]
    fn users_count_once_and_anonymous_are_counted() {
        let p = LocalPresence::default();
        let room = RoomName::lobby();
        assert!(p.join(&room, "a", user("63", Some("Alice"))).is_some());
        p.join(&room, "b", user("63", Some("Alice")));
        p.join(&room, "c", user("64", Some("Bob")));
        p.join(&room, "d", Member::Anonymous);
        let s = p.snapshot(&room);
        assert_eq!(s.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["Alice", "Bob"]);
        assert_eq!((s.user_count, s.anonymous), (2, 1));
        assert!(p.join(&room, "d", Member::Anonymous).is_none(), "joining twice changes nothing");

        assert!(p.leave(&room, "a").is_some());
        assert_eq!(p.snapshot(&room).user_count, 2, "Alice still has another connection");
        assert!(p.leave(&room, "b").is_some());
        assert_eq!(p.snapshot(&room).users.len(), 1);
        assert!(p.leave(&room, "b").is_none());
    }

    #[test]
    fn snapshots_carry_no_ids_and_name_only_named_users_but_the_roster_has_ids() {
        let p = LocalPresence::default();
        let room = RoomName::lobby();
        p.join(&room, "a", user("alice@example.com", Some("Alice")));
        p.join(&room, "b", user("bob@example.com", None));
        let s = p.snapshot(&room);
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("example.com"), "{text}");
        assert_eq!((s.users.len(), s.user_count), (1, 2), "the unnamed user is counted, not shown by id");
        let roster = p.roster(&room);
        let ids: Vec<_> = roster.users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["alice@example.com", "bob@example.com"]);
    }

    /// This node's presence behind a shared part that can be cut off, the
    /// way a Redis-backed one can: each snapshot attempt is reported.
    struct Reachable {
        local: LocalPresence,
        down: std::sync::atomic::AtomicBool,
        attempts: tokio::sync::mpsc::UnboundedSender<bool>,
    }

    impl Reachable {
        fn check(&self) -> PresenceResult<()> {
            let up = !self.down.load(std::sync::atomic::Ordering::SeqCst);
            if up { Ok(()) } else { Err(PresenceError::Unavailable("cut off".into())) }
        }
    }

    impl Presence for Reachable {
        fn join<'a>(
            &'a self,
            room: &'a RoomName,
            conn: &'a str,
            member: Member,
        ) -> BoxFuture<'a, PresenceResult<Option<Moved>>> {
            let changed = self.local.join(room, conn, member);
            Box::pin(std::future::ready(self.check().map(|()| changed)))
        }
        fn leave<'a>(&'a self, room: &'a RoomName, conn: &'a str) -> BoxFuture<'a, PresenceResult<Option<Moved>>> {
            let changed = self.local.leave(room, conn);
            Box::pin(std::future::ready(self.check().map(|()| changed)))
        }
        fn leave_all<'a>(&'a self, conn: &'a str) -> BoxFuture<'a, PresenceResult<Vec<Moved>>> {
            let rooms = self.local.leave_all(conn);
            Box::pin(std::future::ready(self.check().map(|()| rooms)))
        }
        fn snapshot<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<PresenceSnapshot>> {
            Box::pin(std::future::ready(self.check().map(|()| self.local.snapshot(room))))
        }
        fn announce<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<Announcement>> {
            let result = self.check();
            let _ = self.attempts.send(result.is_ok());
            match result {
                Ok(()) => Presence::announce(&self.local, room),
                Err(err) => Box::pin(std::future::ready(Err(err))),
            }
        }
        fn roster<'a>(&'a self, room: &'a RoomName) -> BoxFuture<'a, PresenceResult<Roster>> {
            Box::pin(std::future::ready(self.check().map(|()| self.local.roster(room))))
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
        fn active(&self) -> BoxFuture<'_, PresenceResult<Vec<ActiveRoom>>> {
            match self.check() {
                Ok(()) => Presence::active(&self.local),
                Err(err) => Box::pin(std::future::ready(Err(err))),
            }
        }
    }

    fn tally(users: &[&str], anonymous: u64) -> Tally {
        Tally { users: users.iter().map(|u| ((*u).to_owned(), None)).collect(), anonymous }
    }

    #[test]
    fn changes_say_what_appeared_or_vanished_everywhere() {
        use RoomChange::*;
        let none = Tally::default();
        let moved =
            |edge: bool, user: Option<&str>| Moved { room: RoomName::lobby(), edge, user: user.map(Into::into) };
        assert_eq!(changes(&moved(true, Some("a")), true, &none), [Occupied, Joined("a".into())]);
        assert_eq!(changes(&moved(true, None), true, &none), [Occupied]);
        assert_eq!(changes(&moved(true, Some("a")), true, &tally(&[], 1)), [Joined("a".into())], "occupied elsewhere");
        assert_eq!(changes(&moved(true, Some("a")), true, &tally(&["a"], 0)), [], "a was there on another node");
        assert_eq!(changes(&moved(false, Some("b")), true, &none), [Joined("b".into())]);
        assert_eq!(changes(&moved(false, Some("b")), false, &none), [Left("b".into())]);
        assert_eq!(changes(&moved(true, Some("a")), false, &none), [Left("a".into()), Vacated]);
        assert_eq!(changes(&moved(true, Some("a")), false, &tally(&["a"], 0)), [], "still there on another node");
        assert_eq!(changes(&moved(false, None), false, &none), []);
    }

    #[test]
    fn a_join_and_a_leave_say_what_they_changed_under_the_rooms_lock() {
        let p = LocalPresence::default();
        let room = RoomName::lobby();
        let moved =
            |edge: bool, user: Option<&str>| Some(Moved { room: room.clone(), edge, user: user.map(Into::into) });
        assert_eq!(p.join(&room, "a", user("63", None)), moved(true, Some("63")), "the room's first, Alice's first");
        assert_eq!(p.join(&room, "b", user("63", None)), moved(false, None), "Alice's second tab");
        assert_eq!(p.join(&room, "c", Member::Anonymous), moved(false, None));
        assert_eq!(p.leave(&room, "a"), moved(false, None), "Alice is still here");
        assert_eq!(p.leave(&room, "b"), moved(false, Some("63")), "Alice's last");
        assert_eq!(p.leave_all("c"), [Moved { room: room.clone(), edge: true, user: None }], "the room's last");
    }

    #[test]
    fn joins_and_leaves_racing_each_other_tell_every_edge_once() {
        // However four threads interleave their joins and leaves, the room
        // opened exactly as often as it closed, and a user's first and last
        // connections pair up: what a watch hears balances.
        let (p, room) = (Arc::new(LocalPresence::default()), RoomName::lobby());
        let counts = on_four_threads(&p, &room, |t, p, room| {
            let (mut opened, mut closed, mut first, mut last) = (0, 0, 0, 0);
            for i in 0..2000 {
                let conn = format!("{t}-{i}");
                let member = if i % 2 == 0 { user("63", None) } else { Member::Anonymous };
                let joined = p.join(room, &conn, member).unwrap();
                let left = p.leave(room, &conn).unwrap();
                opened += u32::from(joined.edge);
                closed += u32::from(left.edge);
                first += u32::from(joined.user.is_some());
                last += u32::from(left.user.is_some());
            }
            (opened, closed, first, last)
        });
        let (opened, closed, first, last) =
            counts.into_iter().fold((0, 0, 0, 0), |(o, c, f, l), (o2, c2, f2, l2)| (o + o2, c + c2, f + f2, l + l2));
        assert!(opened >= 1 && first >= 1);
        assert_eq!((opened, first), (closed, last));
        assert!(p.tally(&room).is_empty());
    }

    /// Records what the room was told.
    struct Told(tokio::sync::mpsc::UnboundedSender<(u64, PresenceSnapshot)>);

    impl Tell for Told {
        fn presence<'a>(&'a self, _: &'a RoomName, version: u64, snapshot: &'a PresenceSnapshot) -> BoxFuture<'a, ()> {
            let _ = self.0.send((version, snapshot.clone()));
            Box::pin(std::future::ready(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_that_could_not_be_read_is_sent_with_the_rooms_next_change() {
        let (attempts_tx, mut attempts) = tokio::sync::mpsc::unbounded_channel();
        let presence =
            Arc::new(Reachable { local: LocalPresence::default(), down: true.into(), attempts: attempts_tx });
        let metrics = Arc::new(Metrics::default());
        let (told_tx, mut told) = tokio::sync::mpsc::unbounded_channel();
        let tell = Arc::new(Told(told_tx));
        let announcer = Announcer::new(presence.clone(), tell, metrics.clone(), Duration::from_secs(1));
        let room = RoomName::lobby();

        // The shared part is out of reach: the join holds on this node, and
        // the room's snapshot can't be read.
        announcer.joined(&room, "a", Member::Anonymous).await;
        assert_eq!(presence.local.snapshot(&room).anonymous, 1, "this node still knows its connection");
        announcer.changed(&room);
        assert_eq!(attempts.recv().await, Some(false), "the snapshot could not be read");

        presence.down.store(false, std::sync::atomic::Ordering::SeqCst);
        announcer.joined(&room, "b", Member::Anonymous).await;
        // (The clock is paused: the timeout passes in virtual time.)
        let next = tokio::time::timeout(Duration::from_secs(10), attempts.recv()).await;
        assert_eq!(next, Ok(Some(true)), "the next change is announced, not lost behind the failure");
        let (version, snapshot) = told.recv().await.unwrap();
        assert_eq!((version, snapshot.anonymous), (1, 2), "told with both connections");
        let live = crate::ops::metrics::Live {
            websocket: 0,
            polling: 0,
            rooms: 1,
            upgrades_tracked: 0,
            window_bytes: 0,
            streams: 0,
            redis_up: None,
            webhooks: None,
        };
        assert!(metrics.render(&live).contains("herald_presence_snapshots_total 1\n"));
        let shared: SharedPresence = presence;
        assert_eq!(shared.local_room_count(), 1);
    }

    #[test]
    fn nodes_tallies_add_up_with_each_user_once_and_a_name_kept() {
        let room = RoomName::lobby();
        let (a, b) = (LocalPresence::default(), LocalPresence::default());
        a.join(&room, "1", user("63", Some("Alice")));
        a.join(&room, "2", Member::Anonymous);
        b.join(&room, "3", user("63", None));
        b.join(&room, "4", user("64", Some("Bob")));
        b.join(&room, "5", Member::Anonymous);
        // What another node wrote to Redis reads back as it was.
        let theirs: Tally = serde_json::from_str(&serde_json::to_string(&b.tally(&room)).unwrap()).unwrap();
        let mut all = a.tally(&room);
        all.add(theirs);
        let snapshot = all.snapshot(&room);
        assert_eq!(snapshot.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["Alice", "Bob"]);
        assert_eq!((snapshot.user_count, snapshot.anonymous), (2, 2), "Alice on both nodes counts once");
        let mut other_way = b.tally(&room);
        other_way.add(a.tally(&room));
        assert_eq!(other_way.snapshot(&room), snapshot, "a name from either node is kept");
        assert!(Tally::default().is_empty() && !all.is_empty());
    }

    #[test]
    fn leave_all_cleans_every_room() {
        let p = LocalPresence::default();
        let (a, b) = (RoomName::parse("a").unwrap(), RoomName::parse("b").unwrap());
        p.join(&a, "x", Member::Anonymous);
        p.join(&b, "x", Member::Anonymous);
        let mut changed: Vec<RoomName> = p.leave_all("x").into_iter().map(|moved| moved.room).collect();
        changed.sort_by(|l, r| l.as_str().cmp(r.as_str()));
        assert_eq!(changed, [a.clone(), b]);
        assert_eq!(p.snapshot(&a).anonymous, 0);
        assert!(lock(&p.rooms).is_empty() && lock(&p.conn_rooms).is_empty(), "no leftovers");
    }

    #[test]
    fn a_room_emptied_and_rejoined_at_once_keeps_its_member() {
        let (p, room) = (Arc::new(LocalPresence::default()), RoomName::lobby());
        on_four_threads(&p, &room, |t, p, room| {
            for i in 0..2000 {
                let conn = format!("{t}-{i}");
                p.join(room, &conn, Member::Anonymous);
                p.leave(room, &conn);
            }
            p.join(room, &format!("{t}-last"), Member::Anonymous);
        });
        assert_eq!(p.snapshot(&room).anonymous, 4, "no join was lost in a room being dropped");
        assert_eq!(p.room_count(), 1);
    }

    /// Runs `work` on four threads at once (each given its number) against
    /// one presence and room; what each returned.
    fn on_four_threads<T: Send + 'static>(
        p: &Arc<LocalPresence>,
        room: &RoomName,
        work: fn(usize, &LocalPresence, &RoomName) -> T,
    ) -> Vec<T> {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (p, room) = (p.clone(), room.clone());
                std::thread::spawn(move || work(t, &p, &room))
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().unwrap()).collect()
    }
}
