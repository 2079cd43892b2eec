//! Herald's integration tests: the real server on port 0 against a
//! MongoDB-compatible server, a database per test.
//!
//! One test binary rather than one per file: each binary links the whole
//! server, so separate binaries cost minutes of linking and gigabytes of disk.

mod common;

mod cluster;
mod engine;
mod fuzz_boundary;
mod heartbeat;
mod hostile;
mod identity;
mod inbox_page;
mod limits;
mod ops;
mod pages;
mod presence;
mod private_rooms;
mod publish;
mod realtime;
mod server_api;
mod webhooks;
