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
pub mod timer;
pub mod tree;

/// The crate's name, for tools that report what they run.
pub const NAME: &str = "zraft";

/// Whether the deliberately broken variant `name` is switched on: simulation builds only, by
/// ZRAFT_BUG, so that the harness can prove its checkers catch it. Server variants live in
/// `server::node`, textbook Raft bugs in `raft` (a test hook; the cores stay pure otherwise).
/// `--cfg zraft_bugs` enables them outside simulation, for the pure-core test only.
#[cfg(any(madsim, zraft_bugs))]
#[inline]
pub(crate) fn bug(name: &str) -> bool {
    // Asked about 600k times a simulated seed, nearly always with nothing planted.
    MAYBE_PLANTED.get() && planted_is(name)
}

#[cfg(any(madsim, zraft_bugs))]
fn planted_is(name: &str) -> bool {
    PLANTED.with(|p| match &*p.borrow() {
        Some(planted) => planted.as_deref() == Some(name),
        None => std::env::var("ZRAFT_BUG").is_ok_and(|v| v == name),
    })
}

#[cfg(any(madsim, zraft_bugs))]
thread_local! {
    /// ZRAFT_BUG as `read_planted_bug` last read it on this thread (None: not read, so every
    /// call reads the environment; reading it on every call was 1% of the simulator's time).
    static PLANTED: std::cell::RefCell<Option<Option<String>>> = const { std::cell::RefCell::new(None) };
    /// False once `read_planted_bug` found no variant switched on: `bug` then answers
    /// without looking at the name (its thread-local lookup and borrow were 1% of a seed).
    static MAYBE_PLANTED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Reads ZRAFT_BUG for the code that runs on this thread from now on (a simulation runs on
/// one thread; the harness calls this before each run, since tests change the variable).
#[cfg(any(madsim, zraft_bugs))]
pub fn read_planted_bug() {
    let planted = std::env::var("ZRAFT_BUG").ok();
    MAYBE_PLANTED.set(planted.is_some());
    PLANTED.with(|p| *p.borrow_mut() = Some(planted));
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
