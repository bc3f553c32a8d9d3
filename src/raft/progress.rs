//! The leader's view of each follower's replication (etcd's Progress and Inflights).

use std::collections::VecDeque;

/// How the leader is currently sending to a follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressState {
    /// Unsure where the follower's log ends: one append at a time.
    Probe,
    /// Follower keeping up: stream appends, up to the in-flight limit.
    Replicate,
    /// Sending a snapshot; `offset` is the next chunk's start.
    Snapshot { index: u64, offset: u64 },
}

/// Replication progress of one follower.
#[derive(Debug, Clone)]
pub struct Progress {
    pub matched: u64,
    pub next: u64,
    pub state: ProgressState,
    /// In Probe: an append is outstanding; wait for a response or heartbeat.
    pub paused: bool,
    /// Last index of each append in flight (Replicate).
    pub inflight: VecDeque<u64>,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// `matched` at the last heartbeat response that found appends in flight; a second such
    /// response with no progress means those appends were lost.
    pub stalled_at: Option<u64>,
}

impl Progress {
    /// Fresh progress for a follower when the leader's log ends at `last`.
    pub fn new(last: u64) -> Self {
        Progress {
            matched: 0,
            next: last + 1,
            state: ProgressState::Probe,
            paused: false,
            inflight: VecDeque::new(),
            recent_active: true,
            stalled_at: None,
        }
    }

    /// Back to probing from `matched + 1`.
    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.paused = false;
        self.stalled_at = None;
        self.inflight.clear();
        self.next = self.matched + 1;
    }

    /// Streaming from `matched + 1`.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.paused = false;
        self.stalled_at = None;
        self.inflight.clear();
        self.next = self.matched + 1;
    }

    /// Sending snapshot `index` from its start.
    pub fn become_snapshot(&mut self, index: u64) {
        self.state = ProgressState::Snapshot { index, offset: 0 };
        self.paused = false;
        self.inflight.clear();
    }

    /// A successful append up to `index`; true if it moved `matched`.
    pub fn maybe_update(&mut self, index: u64) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.paused = false;
        }
        self.next = self.next.max(index + 1);
        while self.inflight.front().is_some_and(|&i| i <= index) {
            self.inflight.pop_front();
        }
        updated
    }

    /// A rejection of the append at `rejected`; `next_hint` is where the leader's log and the
    /// follower's hint agree. False if the rejection is stale.
    pub fn maybe_decr_to(&mut self, rejected: u64, next_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched + 1;
            self.state = ProgressState::Probe;
            self.inflight.clear();
            self.paused = false;
            return true;
        }
        if self.next == 0 || rejected != self.next - 1 {
            return false;
        }
        self.next = next_hint.clamp(self.matched + 1, self.next.saturating_sub(1).max(self.matched + 1));
        self.paused = false;
        true
    }

    /// Called on each heartbeat response (which proves the follower reachable): true if appends
    /// have been in flight with no progress across two responses, i.e. they were lost and
    /// probing must restart from `matched + 1`.
    pub fn check_stalled(&mut self) -> bool {
        if self.state != ProgressState::Replicate || self.inflight.is_empty() {
            self.stalled_at = None;
            return false;
        }
        if self.stalled_at == Some(self.matched) {
            return true;
        }
        self.stalled_at = Some(self.matched);
        false
    }

    /// Whether no more appends may be sent now.
    pub fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => self.paused,
            ProgressState::Replicate => self.inflight.len() >= max_inflight,
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Records an append sent up to `last`.
    pub fn sent(&mut self, last: u64, n_entries: usize) {
        match self.state {
            ProgressState::Replicate => {
                if n_entries > 0 {
                    self.next = last + 1;
                    self.inflight.push_back(last);
                }
            }
            ProgressState::Probe => self.paused = true,
            ProgressState::Snapshot { .. } => {}
        }
    }
}
