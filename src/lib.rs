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

/// Whether the deliberately broken variant `name` is switched on: simulation builds only, by
/// ZRAFT_BUG, so that the harness can prove its checkers catch it. Server variants live in
/// `server::node`, textbook Raft bugs in `raft` (a test hook; the cores stay pure otherwise).
/// `--cfg zraft_bugs` enables them outside simulation, for the pure-core test only.
#[cfg(any(madsim, zraft_bugs))]
pub(crate) fn bug(name: &str) -> bool {
    std::env::var("ZRAFT_BUG").is_ok_and(|v| v == name)
}

#[cfg(not(any(madsim, zraft_bugs)))]
pub(crate) fn bug(_: &str) -> bool {
    false
}
