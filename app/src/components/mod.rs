//! The parts of a room page.

pub mod account;
pub mod chat;
pub mod composer;
pub mod message_list;
pub mod room_list;
pub mod status;
