//! zraft: a ZooKeeper-compatible coordination service replicated with Raft.

/// The load generator (a client tool: real time, never simulated).
#[cfg(not(madsim))]
pub mod bench;
pub mod client;
/// A local ensemble of real processes (a tool: never simulated).
#[cfg(not(madsim))]
pub mod ensemble;
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

/// Times a planted bug's branch made the code do something other than the correct code
/// would, in this process (a harmless bug and an unreached one look alike to the checkers).
#[cfg(any(madsim, zraft_bugs))]
static BUG_TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one divergence of the planted bug's branch from the correct code.
#[cfg(any(madsim, zraft_bugs))]
pub(crate) fn bug_taken() {
    BUG_TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(not(any(madsim, zraft_bugs)))]
pub(crate) fn bug_taken() {}

/// The planted bugs whose branch counts its divergences (those no checker catches: the count
/// tells a harmless branch from an unreached one).
pub const COUNTED_BUGS: &[&str] = &["raft-commit-unmatched", "raft-snapshot-keeps-suffix"];

/// How often the planted bug's branch diverged from the correct code (test builds; else 0).
pub fn bug_branch_taken() -> u64 {
    #[cfg(any(madsim, zraft_bugs))]
    return BUG_TAKEN.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(any(madsim, zraft_bugs)))]
    0
}
