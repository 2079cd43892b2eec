//! Presence: who is in each room.
//!
//! Behind the [`Presence`] trait so that a multi-node implementation (one
//! that shares state through Redis) can replace [`LocalPresence`] without
//! touching the Socket.IO handlers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use herald::protocol::{PRESENCE_NAMES_MAX, PresenceSnapshot, PresentUser};
use herald::{Identity, RoomName, UserId};

/// A connection's id (Socket.IO `sid`, as text).
pub type ConnId = String;

/// Who a connection is, for presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    User(Identity),
    Anonymous,
}

/// The presence implementation in use, shared by handlers.
pub type SharedPresence = Arc<dyn Presence>;

pub trait Presence: Send + Sync + 'static {
    /// Records `conn` in `room`; returns the room's snapshot when it changed.
    fn join(&self, room: &RoomName, conn: &str, member: Member) -> Option<PresenceSnapshot>;
    /// Removes `conn` from `room`; returns the snapshot when it changed.
    fn leave(&self, room: &RoomName, conn: &str) -> Option<PresenceSnapshot>;
    /// Removes `conn` from every room; returns the changed snapshots.
    fn leave_all(&self, conn: &str) -> Vec<PresenceSnapshot>;
    fn snapshot(&self, room: &RoomName) -> PresenceSnapshot;
    /// How many rooms have someone in them.
    fn room_count(&self) -> usize;
}

#[derive(Default)]
struct RoomMembers {
    conns: HashMap<ConnId, Member>,
}

impl RoomMembers {
    fn snapshot(&self, room: &RoomName) -> PresenceSnapshot {
        let mut users: BTreeMap<UserId, String> = BTreeMap::new();
        let mut anonymous = 0;
        for member in self.conns.values() {
            match member {
                Member::User(identity) => {
                    users.insert(identity.user.clone(), identity.display_name().to_string());
                }
                Member::Anonymous => anonymous += 1,
            }
        }
        let user_count = users.len() as u64;
        let mut named: Vec<PresentUser> =
            users.into_iter().map(|(id, name)| PresentUser { id: id.to_string(), name }).collect();
        named.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        named.truncate(PRESENCE_NAMES_MAX);
        PresenceSnapshot { room: room.to_string(), users: named, user_count, anonymous }
    }
}

#[derive(Default)]
struct State {
    rooms: HashMap<RoomName, RoomMembers>,
    /// Which rooms each connection is in, to clean up on disconnect.
    conn_rooms: HashMap<ConnId, HashSet<RoomName>>,
}

/// Presence for a single node, in memory. The lock is never held across an
/// `.await` (no method here is async).
#[derive(Default)]
pub struct LocalPresence {
    state: Mutex<State>,
}

impl LocalPresence {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain maps behind,
        // still consistent enough to keep serving.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn remove(state: &mut State, room: &RoomName, conn: &str) -> Option<PresenceSnapshot> {
    let members = state.rooms.get_mut(room)?;
    members.conns.remove(conn)?;
    let snapshot = members.snapshot(room);
    if members.conns.is_empty() {
        state.rooms.remove(room);
    }
    Some(snapshot)
}

impl Presence for LocalPresence {
    fn join(&self, room: &RoomName, conn: &str, member: Member) -> Option<PresenceSnapshot> {
        let mut state = self.state();
        let members = state.rooms.entry(room.clone()).or_default();
        if members.conns.insert(conn.to_owned(), member).is_some() {
            return None;
        }
        let snapshot = members.snapshot(room);
        state.conn_rooms.entry(conn.to_owned()).or_default().insert(room.clone());
        Some(snapshot)
    }

    fn leave(&self, room: &RoomName, conn: &str) -> Option<PresenceSnapshot> {
        let mut state = self.state();
        if let Some(rooms) = state.conn_rooms.get_mut(conn) {
            rooms.remove(room);
            if rooms.is_empty() {
                state.conn_rooms.remove(conn);
            }
        }
        remove(&mut state, room, conn)
    }

    fn room_count(&self) -> usize {
        self.state().rooms.len()
    }

    fn leave_all(&self, conn: &str) -> Vec<PresenceSnapshot> {
        let mut state = self.state();
        let rooms = state.conn_rooms.remove(conn).unwrap_or_default();
        rooms.iter().filter_map(|room| remove(&mut state, room, conn)).collect()
    }

    fn snapshot(&self, room: &RoomName) -> PresenceSnapshot {
        let state = self.state();
        state
            .rooms
            .get(room)
            .map(|m| m.snapshot(room))
            .unwrap_or_else(|| PresenceSnapshot { room: room.to_string(), ..PresenceSnapshot::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::DisplayName;

    fn user(id: &str, name: &str) -> Member {
        Member::User(Identity { user: UserId::parse(id).unwrap(), name: Some(DisplayName::parse(name).unwrap()) })
    }

    #[test]
    fn users_count_once_and_anonymous_are_counted() {
        let p = LocalPresence::default();
        let room = RoomName::lobby();
        p.join(&room, "a", user("63", "Alice"));
        p.join(&room, "b", user("63", "Alice"));
        p.join(&room, "c", user("64", "Bob"));
        let s = p.join(&room, "d", Member::Anonymous).unwrap();
        assert_eq!(s.users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["Alice", "Bob"]);
        assert_eq!((s.user_count, s.anonymous), (2, 1));
        assert_eq!(p.join(&room, "d", Member::Anonymous), None, "joining twice changes nothing");

        let s = p.leave(&room, "a").unwrap();
        assert_eq!(s.user_count, 2, "Alice still has another connection");
        let s = p.leave(&room, "b").unwrap();
        assert_eq!(s.users.len(), 1);
        assert_eq!(p.leave(&room, "b"), None);
    }

    #[test]
    fn leave_all_cleans_every_room() {
        let p = LocalPresence::default();
        let (a, b) = (RoomName::parse("a").unwrap(), RoomName::parse("b").unwrap());
        p.join(&a, "x", Member::Anonymous);
        p.join(&b, "x", Member::Anonymous);
        let changed = p.leave_all("x");
        assert_eq!(changed.len(), 2);
        assert_eq!(p.snapshot(&a).anonymous, 0);
        assert!(p.state().rooms.is_empty() && p.state().conn_rooms.is_empty(), "no leftovers");
    }
}
