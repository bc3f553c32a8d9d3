//! A test-only window into every node of a simulated run: each node reports leaderships and,
//! for every applied entry, a hash of its tree. The reports are made only in `--cfg madsim`
//! builds; the types exist everywhere so the harness's checkers build and test anywhere. madsim runs a whole
//! simulation on one thread, so the record is thread-local: parallel runs do not mix.

use std::cell::RefCell;

/// What a node reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// `node` was leader in `term`.
    Leader { node: u64, term: u64 },
    /// `node` made a snapshot at `index` durable and compacted its log up to it; or, with
    /// `installed`, took one from the leader.
    Snapshot { node: u64, index: u64, installed: bool },
    /// `node` applied `index` (of `term`) and its tree then hashed to `tree`.
    Applied {
        node: u64,
        index: u64,
        term: u64,
        tree: u64,
    },
}

thread_local! {
    static LOG: RefCell<Vec<Observation>> = const { RefCell::new(Vec::new()) };
}

/// Records an observation.
pub fn report(o: Observation) {
    LOG.with(|l| l.borrow_mut().push(o));
}

/// Takes everything recorded on this thread so far.
pub fn take() -> Vec<Observation> {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}
