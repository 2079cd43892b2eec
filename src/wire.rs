//! The client side of Engine.IO v4 and Socket.IO v5 text framing.
//!
//! A WebSocket frame carries one Engine.IO packet: a one-digit type followed
//! by its data. Engine.IO `message` packets (`4`) carry Socket.IO packets:
//! a one-digit type, an optional `/namespace,`, an optional ack id and a JSON
//! array. Herald uses only the default namespace and text (no binary
//! attachments), which is all a chat or notification client needs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The Engine.IO handshake data, sent by the server in the `open` packet.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInfo {
    pub sid: String,
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// Milliseconds between the server's pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// The largest packet the server accepts, in bytes.
    #[serde(default)]
    pub max_payload: u64,
}

/// An Engine.IO packet as a client receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum EnginePacket {
    Open(OpenInfo),
    Close,
    Ping,
    Pong,
    /// A Socket.IO packet, still encoded.
    Message(String),
    Upgrade,
    Noop,
}

/// A Socket.IO packet as a client receives it (default namespace only).
#[derive(Debug, Clone, PartialEq)]
pub enum SocketPacket {
    Connect(Value),
    Disconnect,
    Event { name: String, args: Vec<Value>, ack: Option<u64> },
    Ack { id: u64, args: Vec<Value> },
    ConnectError(Value),
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty frame")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("bad JSON in packet: {0}")]
    Json(String),
    #[error("an event needs a name")]
    MissingEventName,
    #[error("binary packets are not supported")]
    Binary,
}

impl From<serde_json::Error> for WireError {
    fn from(err: serde_json::Error) -> Self {
        WireError::Json(err.to_string())
    }
}

/// Decodes one Engine.IO packet from a WebSocket text frame.
pub fn decode_engine(frame: &str) -> Result<EnginePacket, WireError> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or(WireError::Empty)?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => EnginePacket::Open(serde_json::from_str(rest)?),
        '1' => EnginePacket::Close,
        '2' => EnginePacket::Ping,
        '3' => EnginePacket::Pong,
        '4' => EnginePacket::Message(rest.to_owned()),
        '5' => EnginePacket::Upgrade,
        '6' => EnginePacket::Noop,
        other => return Err(WireError::UnknownType(other)),
    })
}

/// Decodes a Socket.IO packet (the data of an Engine.IO `message`).
pub fn decode_socket(data: &str) -> Result<SocketPacket, WireError> {
    let mut chars = data.chars();
    let kind = chars.next().ok_or(WireError::Empty)?;
    let mut rest = chars.as_str();
    // Skip a namespace ("/chat,"): Herald's clients use only "/".
    if rest.starts_with('/') {
        rest = rest.split_once(',').map_or("", |(_, tail)| tail);
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (id, json) = rest.split_at(digits);
    let id: Option<u64> = id.parse().ok();
    let args = |json: &str| -> Result<Vec<Value>, WireError> {
        if json.is_empty() { Ok(Vec::new()) } else { Ok(serde_json::from_str(json)?) }
    };
    Ok(match kind {
        '0' => SocketPacket::Connect(if json.is_empty() { Value::Null } else { serde_json::from_str(json)? }),
        '1' => SocketPacket::Disconnect,
        '2' => {
            let mut args = args(json)?;
            if args.is_empty() {
                return Err(WireError::MissingEventName);
            }
            let Value::String(name) = args.remove(0) else {
                return Err(WireError::MissingEventName);
            };
            SocketPacket::Event { name, args, ack: id }
        }
        '3' => SocketPacket::Ack { id: id.unwrap_or_default(), args: args(json)? },
        '4' => SocketPacket::ConnectError(if json.is_empty() { Value::Null } else { serde_json::from_str(json)? }),
        '5' | '6' => return Err(WireError::Binary),
        other => return Err(WireError::UnknownType(other)),
    })
}

/// The frame that connects to the default namespace, with optional auth data.
pub fn connect_frame(auth: Option<&Value>) -> String {
    match auth {
        Some(auth) => format!("40{auth}"),
        None => "40".to_owned(),
    }
}

/// The frame answering a server ping.
pub const PONG_FRAME: &str = "3";

/// Encodes an event with one argument, asking for an ack when `ack` is set.
pub fn event_frame<T: Serialize + ?Sized>(name: &str, data: &T, ack: Option<u64>) -> Result<String, WireError> {
    let payload = serde_json::to_string(&(name, data))?;
    Ok(match ack {
        Some(id) => format!("42{id}{payload}"),
        None => format!("42{payload}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_the_open_packet() {
        let frame = r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let EnginePacket::Open(info) = decode_engine(frame).unwrap() else { panic!() };
        assert_eq!(info.sid, "abc");
        assert_eq!(info.ping_interval, 25_000);
        assert_eq!(info.max_payload, 1_000_000);
    }

    #[test]
    fn decodes_engine_control_packets() {
        assert_eq!(decode_engine("2").unwrap(), EnginePacket::Ping);
        assert_eq!(decode_engine("1").unwrap(), EnginePacket::Close);
        assert_eq!(decode_engine("40").unwrap(), EnginePacket::Message("0".into()));
        assert_eq!(decode_engine(""), Err(WireError::Empty));
        assert_eq!(decode_engine("9x"), Err(WireError::UnknownType('9')));
    }

    #[test]
    fn decodes_events_and_acks() {
        assert_eq!(
            decode_socket(r#"2["message",{"a":1}]"#).unwrap(),
            SocketPacket::Event { name: "message".into(), args: vec![json!({"a":1})], ack: None }
        );
        assert_eq!(
            decode_socket(r#"217["ping"]"#).unwrap(),
            SocketPacket::Event { name: "ping".into(), args: vec![], ack: Some(17) }
        );
        assert_eq!(
            decode_socket(r#"312[{"ok":1}]"#).unwrap(),
            SocketPacket::Ack { id: 12, args: vec![json!({"ok":1})] }
        );
        assert_eq!(decode_socket(r#"0{"sid":"x"}"#).unwrap(), SocketPacket::Connect(json!({"sid":"x"})));
        assert_eq!(
            decode_socket(r#"2/admin,["x"]"#).unwrap(),
            SocketPacket::Event { name: "x".into(), args: vec![], ack: None }
        );
    }

    #[test]
    fn rejects_malformed_socket_packets() {
        assert_eq!(decode_socket("2[]"), Err(WireError::MissingEventName));
        assert_eq!(decode_socket("2[1]"), Err(WireError::MissingEventName));
        assert!(matches!(decode_socket("2[oops"), Err(WireError::Json(_))));
        assert_eq!(decode_socket("51-[]"), Err(WireError::Binary));
    }

    #[test]
    fn encodes_events_with_and_without_ack() {
        assert_eq!(event_frame("send", &json!({"a":1}), Some(3)).unwrap(), r#"423["send",{"a":1}]"#);
        assert_eq!(event_frame("join", &json!({}), None).unwrap(), r#"42["join",{}]"#);
        assert_eq!(connect_frame(None), "40");
        assert_eq!(connect_frame(Some(&json!({"token":"t"}))), r#"40{"token":"t"}"#);
    }
}
