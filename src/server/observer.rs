//! A test-only window into every node of a simulated run: each node reports leaderships and,
//! for every applied entry, a hash of its tree; and keeps its live protocol state (role, term,
//! vote, log and commit index) up to date for the harness's state-aware nemesis, which times
//! its faults on it. The reports are made only in `--cfg madsim` builds; the types exist
//! everywhere so the harness's checkers build and test anywhere. madsim runs a whole simulation
//! on one thread, so the record is thread-local: parallel runs do not mix.

use crate::raft::{ConfChange, Role};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// What a node reported.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Observation {
    /// `node` was leader in `term`.
    Leader { node: u64, term: u64 },
    /// `node` made a snapshot at `index` durable and compacted its log up to it; or, with
    /// `installed`, took one from the leader.
    Snapshot { node: u64, index: u64, installed: bool },
    /// `node` started from storage holding this term and vote.
    Recovered { node: u64, term: u64, vote: u64 },
    /// `node` sent its vote in `term` to `candidate`.
    Vote { node: u64, term: u64, candidate: u64 },
    /// `node`, leader in `term`, moved its commit index from `prev` to `index`, an entry of
    /// `entry_term`.
    LeaderCommit {
        node: u64,
        term: u64,
        prev: u64,
        index: u64,
        entry_term: u64,
    },
    /// `node` applied the membership change at `index`.
    ConfChange { node: u64, index: u64, change: ConfChange },
    /// `node` appended a membership change at `index` (of `term`): in force for it from then
    /// on, committed or not (reported right after the `Entries` that hold it).
    ConfAppended {
        node: u64,
        index: u64,
        term: u64,
        change: ConfChange,
    },
    /// `node`'s log now holds entries of `terms` from index `first` on, right after an entry
    /// (or snapshot) of `prev_term`: reported for every batch a node appends, and for the
    /// entries it keeps after installing a snapshot (Raft's log matching property is checked
    /// on these links).
    Entries {
        node: u64,
        first: u64,
        prev_term: u64,
        terms: Vec<u64>,
    },
    /// Something the sweep's coverage counts happened on `node` (`pre-vote-rejected`,
    /// `vote-rejected`, `session-expiry`, `set-watches`, `torn-tail-recovered`).
    Event { node: u64, what: &'static str },
    /// `node` applied the transaction with `zxid`, made for `session`'s request `cxid` (the
    /// model checker replays these in zxid order against the clients' requests).
    Committed {
        node: u64,
        zxid: i64,
        session: i64,
        cxid: i32,
        kind: Committed,
    },
    /// `node` applied `index` (of `term`) and its tree's digest was then `tree`.
    Applied {
        node: u64,
        index: u64,
        term: u64,
        tree: u64,
    },
}

impl Observation {
    /// Whether a run's report draws this on its time line (leaderships, recoveries, snapshots,
    /// events); only these are reported with the time they happened.
    pub fn on_time_line(&self) -> bool {
        matches!(
            self,
            Observation::Leader { .. }
                | Observation::Recovered { .. }
                | Observation::Snapshot { .. }
                | Observation::Event { .. }
        )
    }
}

/// What made a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Committed {
    /// The client request (session, cxid) — including a client's closeSession.
    Request,
    /// A new session (the handshake, no xid).
    CreateSession,
    /// The leader expired the session.
    Expire,
    /// The leader deleted an empty container or an expired TTL node.
    Reap(String),
    /// The leader's reap of a node failed (it changed since).
    ReapFailed,
    /// A step of a reconfig that answers no request (the last step answers the client's).
    Reconfig,
}

/// A node's protocol state as it last reported it (after every batch of Raft work).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub role: Role,
    pub term: u64,
    /// The node this one voted for in `term` (0: none).
    pub vote: u64,
    /// Last index in its log (durable or not).
    pub last_index: u64,
    /// Term of the last entry.
    pub last_term: u64,
    pub commit: u64,
    /// Snapshots this node took or installed so far.
    pub snapshots: u64,
    /// Index of its latest snapshot (what it would send a follower that lags behind).
    pub snapshot_index: u64,
}

thread_local! {
    static LOG: RefCell<Vec<Vec<Reported>>> = const { RefCell::new(Vec::new()) };
    static LIVE: RefCell<BTreeMap<u64, Live>> = const { RefCell::new(BTreeMap::new()) };
    static CHANGED: Arc<Notify> = Arc::new(Notify::new());
}

/// Records an observation, with the (simulated) time it was made.
pub fn report(o: Observation) {
    // Reading the simulated clock costs more than keeping the report; only the kinds a
    // report page draws on a time line carry a time.
    let now = o.on_time_line().then(tokio::time::Instant::now);
    LOG.with(|l| {
        let mut l = l.borrow_mut();
        match l.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push((now, o)),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push((now, o));
                l.push(chunk);
            }
        }
    });
}

/// A report as kept: the time for those on the time line, and what was reported.
type Reported = (Option<tokio::time::Instant>, Observation);

/// Reports are kept in chunks of this many: a run makes hundreds of thousands, and one
/// growing vector copied all of them again at every doubling.
const CHUNK: usize = 8192;

/// Takes everything recorded on this thread so far, and forgets the live states.
pub fn take() -> Vec<Observation> {
    take_timed().1
}

/// Takes everything recorded on this thread so far, in order, with the times it was reported
/// (the two side by side; a time for those `on_time_line`, `None` for the others), and
/// forgets the live states.
pub fn take_timed() -> (Vec<Option<tokio::time::Instant>>, Vec<Observation>) {
    LIVE.with(|l| l.borrow_mut().clear());
    let chunks = LOG.with(|l| std::mem::take(&mut *l.borrow_mut()));
    let n = chunks.iter().map(Vec::len).sum();
    let (mut times, mut observed) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (t, o) in chunks.into_iter().flatten() {
        times.push(t);
        observed.push(o);
    }
    (times, observed)
}

/// Updates `node`'s live state; wakes whoever waits for a change.
pub fn report_live(node: u64, live: Live) {
    let changed = LIVE.with(|l| l.borrow_mut().insert(node, live) != Some(live));
    if changed {
        CHANGED.with(|c| c.notify_waiters());
    }
}

/// Every node's live state as last reported (a killed node keeps its last report).
pub fn live() -> BTreeMap<u64, Live> {
    LIVE.with(|l| l.borrow().clone())
}

/// Notified whenever a live state changes.
pub fn changes() -> Arc<Notify> {
    CHANGED.with(|c| c.clone())
}
