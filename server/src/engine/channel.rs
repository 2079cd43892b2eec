//! Every channel name Herald uses, made in one place.
//!
//! A channel is where an event goes: a chat room, one user's connections
//! (all their tabs and devices), or everyone. Each of the three is also a
//! stream with its own sequence numbers: a room's messages, a user's inbox,
//! the broadcast stream.

use std::fmt;

use herald::{RoomName, UserId};

/// Where an event goes, and whose numbers it carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A chat room's sockets; the room's messages.
    Room(RoomName),
    /// One user's sockets on every node; the user's inbox.
    User(UserId),
    /// Every socket; the broadcast stream.
    Everyone,
}

impl Channel {
    /// The Socket.IO room holding this channel's sockets on this node; `None`
    /// for everyone (every socket). Prefixed so that rooms and users never
    /// collide in the adapter's one room namespace. No client event can join
    /// a user's room: only a verified token puts a socket there.
    pub fn socket_room(&self) -> Option<String> {
        match self {
            Channel::Room(room) => Some(format!("room:{room}")),
            Channel::User(user) => Some(format!("user:{user}")),
            Channel::Everyone => None,
        }
    }
}

impl fmt::Display for Channel {
    /// The name logs and metrics show (the same as the Socket.IO room).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Room(room) => write!(f, "room:{room}"),
            Channel::User(user) => write!(f, "user:{user}"),
            Channel::Everyone => f.write_str("everyone"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_and_users_never_share_a_socket_room() {
        let room = Channel::Room(RoomName::parse("a1").unwrap());
        let user = Channel::User(UserId::parse("a1").unwrap());
        assert_eq!(room.socket_room().as_deref(), Some("room:a1"));
        assert_eq!(user.socket_room().as_deref(), Some("user:a1"));
        assert_eq!(Channel::Everyone.socket_room(), None);
        assert_eq!(room.to_string(), "room:a1");
    }
}
