//! Raft's vocabulary: entries, hard state, configurations, snapshots and peer messages.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A node's id within the cluster (ZooKeeper's `myid`); never 0.
pub type NodeId = u64;

/// What an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// Application data.
    Normal,
    /// A bincode-encoded `ConfChange` and the application's context for it.
    ConfChange,
    /// The empty entry a new leader appends to commit its term.
    Noop,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: u64,
    pub index: u64,
    pub kind: EntryKind,
    /// Shared, not copied, by the log, the WAL's batch, the entries to apply and the appends
    /// to each follower (a copy each was one of the large allocations of every write). The
    /// same bytes on disk and on the wire as a `Vec<u8>` through serde_bytes.
    pub data: bytes::Bytes,
}

impl Entry {
    /// Approximate wire size, for flow control.
    pub fn size(&self) -> usize {
        self.data.len() + 24
    }
}

/// State that must be durable before any message depending on it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardState {
    pub term: u64,
    /// 0 when the node has not voted in `term`.
    pub vote: NodeId,
    pub commit: u64,
}

/// Cluster membership: voters decide, learners (ZooKeeper's observers) only follow.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfState {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl ConfState {
    /// A configuration of these voters.
    pub fn voters(ids: impl IntoIterator<Item = NodeId>) -> Self {
        ConfState {
            voters: ids.into_iter().collect(),
            learners: BTreeSet::new(),
        }
    }

    /// Every member, voters first.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// Majority size.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Applies a single-server change.
    pub fn apply(&mut self, cc: &ConfChange) {
        match *cc {
            ConfChange::AddVoter(id) => {
                self.learners.remove(&id);
                self.voters.insert(id);
            }
            // A voter made a learner is demoted: it leaves the quorum and keeps the log.
            ConfChange::AddLearner(id) => {
                self.voters.remove(&id);
                self.learners.insert(id);
            }
            ConfChange::Remove(id) => {
                self.voters.remove(&id);
                self.learners.remove(&id);
            }
        }
    }
}

/// A single-server membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfChange {
    AddVoter(NodeId),
    AddLearner(NodeId),
    Remove(NodeId),
}

/// A membership-change entry's data: the change, and bytes Raft does not read (the server
/// puts the transaction that records the new configuration there, as etcd's `Context`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ConfChangeData {
    change: ConfChange,
    #[serde(with = "serde_bytes")]
    context: Vec<u8>,
}

impl ConfChange {
    /// Encodes for an entry's data, with the application's `context`.
    pub fn encode(&self, context: Vec<u8>) -> Vec<u8> {
        let d = ConfChangeData { change: *self, context };
        bincode::serde::encode_to_vec(&d, bincode::config::standard()).expect("conf change encodes")
    }

    /// Decodes an entry's data: the change and its context.
    pub fn decode(b: &[u8]) -> Option<(Self, Vec<u8>)> {
        bincode::serde::decode_from_slice::<ConfChangeData, _>(b, bincode::config::standard())
            .ok()
            .map(|(d, _)| (d.change, d.context))
    }
}

/// What a snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub index: u64,
    pub term: u64,
    pub conf: ConfState,
}

/// A state-machine snapshot: everything up to `meta.index`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A message between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: u64,
    pub body: Body,
}

impl Message {
    /// Whether this message may leave before the `Ready` that produced it is durable: a
    /// leader's replication (Raft §10.2.1: the leader writes its log in parallel with sending
    /// it; it counts itself only once durable). Votes, acknowledgements and everything else
    /// speak for persisted state and wait.
    pub fn may_precede_persistence(&self) -> bool {
        matches!(
            self.body,
            Body::Append { .. }
                | Body::Commit { .. }
                | Body::Heartbeat { .. }
                | Body::InstallSnapshot { .. }
                | Body::TimeoutNow
        )
    }
}

/// Message payloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Replicate entries after (prev_index, prev_term); carries the leader's commit.
    Append {
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    },
    /// Success: `index` is the follower's last matching index. Reject: `index` is the rejected
    /// prev_index, and the hint says where to retry (fast backtracking).
    AppendResponse {
        reject: bool,
        index: u64,
        hint_index: u64,
        hint_term: u64,
    },
    /// Ask for a vote (or a pre-vote, which changes no state).
    RequestVote {
        last_index: u64,
        last_term: u64,
        pre_vote: bool,
        transfer: bool,
    },
    /// The answer.
    VoteResponse { granted: bool, pre_vote: bool },
    /// Leader liveness; `commit` is capped at what the follower is known to have.
    Heartbeat {
        commit: u64,
        #[serde(with = "serde_bytes")]
        ctx: Vec<u8>,
    },
    /// Heartbeat ack, echoing the read-index context.
    HeartbeatResponse {
        #[serde(with = "serde_bytes")]
        ctx: Vec<u8>,
    },
    /// One chunk of a snapshot.
    InstallSnapshot {
        meta: SnapshotMeta,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        done: bool,
    },
    /// Snapshot progress: the offset the follower expects next, or `installed` at the end.
    SnapshotResponse {
        index: u64,
        offset: u64,
        installed: bool,
        reject: bool,
    },
    /// Start an election now (leadership transfer).
    TimeoutNow,
    /// A follower asks the leader for a read index.
    ReadIndex {
        #[serde(with = "serde_bytes")]
        ctx: Vec<u8>,
    },
    /// The leader's answer: reads at `index` are linearizable.
    ReadIndexResponse {
        index: u64,
        #[serde(with = "serde_bytes")]
        ctx: Vec<u8>,
    },
    /// The commit index moved: an append without entries to a follower that holds (or has
    /// been sent) everything up to `prev_index`. Answered only when it does not match (a
    /// rejection, as for an append): taken, it tells the leader nothing new (its entries'
    /// acknowledgement says it all), and those answers were a sixth of a cluster's messages.
    Commit {
        prev_index: u64,
        prev_term: u64,
        commit: u64,
    },
}

impl Body {
    /// Short name, for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Append { .. } => "Append",
            Body::AppendResponse { .. } => "AppendResponse",
            Body::RequestVote { .. } => "RequestVote",
            Body::VoteResponse { .. } => "VoteResponse",
            Body::Heartbeat { .. } => "Heartbeat",
            Body::HeartbeatResponse { .. } => "HeartbeatResponse",
            Body::InstallSnapshot { .. } => "InstallSnapshot",
            Body::SnapshotResponse { .. } => "SnapshotResponse",
            Body::TimeoutNow => "TimeoutNow",
            Body::ReadIndex { .. } => "ReadIndex",
            Body::ReadIndexResponse { .. } => "ReadIndexResponse",
            Body::Commit { .. } => "Commit",
        }
    }
}
