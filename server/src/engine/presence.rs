//! Presence: who is in each room, and telling the room.
//!
//! [`Presence`] keeps the members; it is a trait so that a multi-node
//! implementation (one that shares state through Redis) can replace
//! [`LocalPresence`] without touching the Socket.IO handlers.
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

use herald::protocol::{EV_PRESENCE, PRESENCE_NAMES_MAX, PresenceSnapshot, PresentUser};
use herald::{Identity, RoomName, UserId};
use serde::Serialize;
use socketioxide::SocketIo;
use tokio::time::Instant;

use super::channel::Channel;
use super::fanout::{Audience, Fanout};
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

pub trait Presence: Send + Sync + 'static {
    /// Records `conn` in `room`; true when the room's membership changed.
    fn join(&self, room: &RoomName, conn: &str, member: Member) -> bool;
    /// Removes `conn` from `room`; true when it was there.
    fn leave(&self, room: &RoomName, conn: &str) -> bool;
    /// Removes `conn` from every room; returns the rooms it was in.
    fn leave_all(&self, conn: &str) -> Vec<RoomName>;
    /// What members of the room may see: names and counts.
    fn snapshot(&self, room: &RoomName) -> PresenceSnapshot;
    /// Who is there, by user id.
    fn roster(&self, room: &RoomName) -> Roster;
    /// How many rooms have someone in them.
    fn room_count(&self) -> usize;
}

#[derive(Default)]
struct RoomMembers {
    conns: HashMap<ConnId, Member>,
    /// Set when the room emptied and left the map: a joiner holding this
    /// room must look it up again.
    removed: bool,
}

impl RoomMembers {
    /// Distinct users (id → the token's name, if any) and anonymous
    /// connections.
    fn tally(&self) -> (BTreeMap<&UserId, Option<&str>>, u64) {
        let mut users = BTreeMap::new();
        let mut anonymous = 0;
        for member in self.conns.values() {
            match member {
                Member::User(identity) => {
                    users.insert(&identity.user, identity.name.as_ref().map(|n| n.as_str()));
                }
                Member::Anonymous => anonymous += 1,
            }
        }
        (users, anonymous)
    }

    fn snapshot(&self, room: &RoomName) -> PresenceSnapshot {
        let (users, anonymous) = self.tally();
        // Only names a token gave: a user without one would be shown by id.
        let mut named: Vec<PresentUser> =
            users.values().flatten().map(|name| PresentUser { name: (*name).to_owned() }).collect();
        named.sort_by(|a, b| a.name.cmp(&b.name));
        named.truncate(PRESENCE_NAMES_MAX);
        PresenceSnapshot { room: room.to_string(), users: named, user_count: users.len() as u64, anonymous }
    }

    fn roster(&self, room: &RoomName) -> Roster {
        let (users, anonymous) = self.tally();
        let user_count = users.len() as u64;
        let users = users
            .into_iter()
            .take(PRESENCE_NAMES_MAX)
            .map(|(id, name)| RosterUser { id: id.to_string(), name: name.unwrap_or(id.as_str()).to_owned() })
            .collect();
        Roster { room: room.to_string(), users, user_count, anonymous }
    }
}

/// Presence for a single node, in memory. Each room has its own lock, held
/// to change or read that room only; the map of rooms and the map of each
/// connection's rooms are locked only to look up, add or remove an entry.
/// No lock is held across an `.await` (no method here is async), and none
/// while taking another but the map's after a room's.
#[derive(Default)]
pub struct LocalPresence {
    rooms: Mutex<HashMap<RoomName, Arc<Mutex<RoomMembers>>>>,
    /// Which rooms each connection is in, to clean up on disconnect.
    conn_rooms: Mutex<HashMap<ConnId, HashSet<RoomName>>>,
}

impl LocalPresence {
    fn room(&self, room: &RoomName) -> Option<Arc<Mutex<RoomMembers>>> {
        lock(&self.rooms).get(room).cloned()
    }

    fn remove(&self, room: &RoomName, conn: &str) -> bool {
        let Some(members) = self.room(room) else { return false };
        let mut guard = lock(&members);
        if guard.conns.remove(conn).is_none() {
            return false;
        }
        if guard.conns.is_empty() && !guard.removed {
            guard.removed = true;
            drop(guard);
            let mut rooms = lock(&self.rooms);
            if rooms.get(room).is_some_and(|current| Arc::ptr_eq(current, &members)) {
                rooms.remove(room);
            }
        }
        true
    }

    fn read<T>(&self, room: &RoomName, f: impl FnOnce(&RoomMembers) -> T) -> Option<T> {
        self.room(room).map(|members| f(&lock(&members)))
    }
}

impl Presence for LocalPresence {
    fn join(&self, room: &RoomName, conn: &str, member: Member) -> bool {
        let changed = loop {
            let members = lock(&self.rooms).entry(room.clone()).or_default().clone();
            let mut guard = lock(&members);
            if guard.removed {
                continue; // emptied and dropped meanwhile: take the new one
            }
            break guard.conns.insert(conn.to_owned(), member.clone()).is_none();
        };
        if changed {
            lock(&self.conn_rooms).entry(conn.to_owned()).or_default().insert(room.clone());
        }
        changed
    }

    fn leave(&self, room: &RoomName, conn: &str) -> bool {
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

    fn leave_all(&self, conn: &str) -> Vec<RoomName> {
        let rooms = lock(&self.conn_rooms).remove(conn).unwrap_or_default();
        rooms.into_iter().filter(|room| self.remove(room, conn)).collect()
    }

    fn snapshot(&self, room: &RoomName) -> PresenceSnapshot {
        self.read(room, |m| m.snapshot(room))
            .unwrap_or_else(|| PresenceSnapshot { room: room.to_string(), ..PresenceSnapshot::default() })
    }

    fn roster(&self, room: &RoomName) -> Roster {
        self.read(room, |m| m.roster(room)).unwrap_or_else(|| Roster { room: room.to_string(), ..Roster::default() })
    }

    fn room_count(&self) -> usize {
        lock(&self.rooms).len()
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
    fanout: Fanout,
    metrics: Arc<Metrics>,
    interval: Duration,
    /// Rooms told recently or about to be. An entry goes when its room is
    /// found empty at a flush, so this is bounded by the rooms in use.
    rooms: Mutex<HashMap<RoomName, Throttle>>,
}

impl Announcer {
    pub fn new(presence: SharedPresence, fanout: Fanout, metrics: Arc<Metrics>, interval: Duration) -> Self {
        Self { inner: Arc::new(AnnouncerInner { presence, fanout, metrics, interval, rooms: Mutex::default() }) }
    }

    pub fn presence(&self) -> &SharedPresence {
        &self.inner.presence
    }

    /// Says `room`'s membership changed: its members hear the new state
    /// now if the room was not told within the interval, otherwise once the
    /// interval is over (with whatever the state is by then).
    pub fn changed(&self, io: &SocketIo, room: &RoomName) {
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
        let io = io.clone();
        let room = room.clone();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            this.flush(&io, &room);
        });
    }

    fn flush(&self, io: &SocketIo, room: &RoomName) {
        let inner = &self.inner;
        let snapshot = inner.presence.snapshot(room);
        let empty = snapshot.user_count == 0 && snapshot.anonymous == 0;
        {
            let mut rooms = lock(&inner.rooms);
            if empty {
                rooms.remove(room);
            } else if let Some(throttle) = rooms.get_mut(room) {
                throttle.pending = false;
                throttle.next = Instant::now() + inner.interval;
            }
        }
        if !empty {
            inner.metrics.presence_snapshot();
            let key = Channel::Room(room.clone()).socket_room().unwrap_or_default();
            inner.fanout.deliver(io, Audience::Room(&key), EV_PRESENCE, &snapshot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::DisplayName;

    fn user(id: &str, name: Option<&str>) -> Member {
        Member::User(Identity { user: UserId::parse(id).unwrap(), name: name.map(|n| DisplayName::parse(n).unwrap()) })
    }

    #[test]
    fn users_count_once_and_anonymous_are_counted() {
        let p = LocalPresence::default();
        let room = RoomName::lobby();
        assert!(p.join(&room, "a", user("63", Some("Alice"))));
        p.join(&room, "b", user("63", Some("Alice")));
        p.join(&room, "c", user("64", Some("Bob")));
        p.join(&room, "d", Member::Anonymous);
        let s = p.snapshot(&room);
        assert_eq!(s.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["Alice", "Bob"]);
        assert_eq!((s.user_count, s.anonymous), (2, 1));
        assert!(!p.join(&room, "d", Member::Anonymous), "joining twice changes nothing");

        assert!(p.leave(&room, "a"));
        assert_eq!(p.snapshot(&room).user_count, 2, "Alice still has another connection");
        assert!(p.leave(&room, "b"));
        assert_eq!(p.snapshot(&room).users.len(), 1);
        assert!(!p.leave(&room, "b"));
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

    #[test]
    fn leave_all_cleans_every_room() {
        let p = LocalPresence::default();
        let (a, b) = (RoomName::parse("a").unwrap(), RoomName::parse("b").unwrap());
        p.join(&a, "x", Member::Anonymous);
        p.join(&b, "x", Member::Anonymous);
        let mut changed = p.leave_all("x");
        changed.sort_by(|l, r| l.as_str().cmp(r.as_str()));
        assert_eq!(changed, [a.clone(), b]);
        assert_eq!(p.snapshot(&a).anonymous, 0);
        assert!(lock(&p.rooms).is_empty() && lock(&p.conn_rooms).is_empty(), "no leftovers");
    }

    #[test]
    fn a_room_emptied_and_rejoined_at_once_keeps_its_member() {
        let p = Arc::new(LocalPresence::default());
        let room = RoomName::lobby();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (p, room) = (p.clone(), room.clone());
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let conn = format!("{t}-{i}");
                        p.join(&room, &conn, Member::Anonymous);
                        p.leave(&room, &conn);
                    }
                    p.join(&room, &format!("{t}-last"), Member::Anonymous);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(p.snapshot(&room).anonymous, 4, "no join was lost in a room being dropped");
        assert_eq!(p.room_count(), 1);
    }
}
