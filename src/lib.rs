//! zraft: a ZooKeeper-compatible coordination service replicated with Raft.

/// The load generator (a client tool: real time, never simulated).
#[cfg(not(madsim))]
pub mod bench;
pub mod client;
pub mod jute;
pub mod raft;
pub mod server;
pub mod session;
pub mod storage;
pub mod tree;

/// The crate's name, for tools that report what they run.
pub const NAME: &str = "zraft";
