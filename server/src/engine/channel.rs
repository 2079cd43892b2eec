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

    /// The channel's name on the bus between nodes (a Redis pub/sub
    /// channel), under the cluster's `prefix`. The braces are a hash tag:
    /// a room's or user's names would share one slot of a Redis Cluster.
    pub fn bus_name(&self, prefix: &str) -> String {
        match self {
            Channel::Room(room) => format!("{prefix}:{{r:{room}}}"),
            Channel::User(user) => format!("{prefix}:{{u:{user}}}"),
            Channel::Everyone => format!("{prefix}:b"),
        }
    }

    /// The channel a bus name under `prefix` names; `None` for anything
    /// else.
    pub fn from_bus_name(prefix: &str, name: &str) -> Option<Self> {
        let rest = name.strip_prefix(prefix)?.strip_prefix(':')?;
        if rest == "b" {
            return Some(Channel::Everyone);
        }
        let tagged = rest.strip_prefix('{')?.strip_suffix('}')?;
        match tagged.split_once(':')? {
            ("r", room) => RoomName::parse(room).ok().map(Channel::Room),
            ("u", user) => UserId::parse(user).ok().map(Channel::User),
            _ => None,
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

    #[test]
    fn bus_names_read_back_as_their_channels_and_nothing_else_does() {
        let channels = [
            Channel::Room(RoomName::parse("a1").unwrap()),
            Channel::User(UserId::parse("alice@example.com").unwrap()),
            Channel::Everyone,
        ];
        for channel in &channels {
            let name = channel.bus_name("herald");
            assert_eq!(Channel::from_bus_name("herald", &name).as_ref(), Some(channel), "{name}");
            assert_eq!(Channel::from_bus_name("other", &name), None, "another cluster's prefix");
        }
        assert_eq!(channels[0].bus_name("h"), "h:{r:a1}");
        for name in ["herald:{x:a1}", "herald:{r:a1", "herald:r:a1", "heraldb", "herald:{r:}"] {
            assert_eq!(Channel::from_bus_name("herald", name), None, "{name}");
        }
    }
}
