//! The Raft state machine. Pure: inputs are `step`, `tick`, `propose`, `read_index`,
//! `transfer_leader`, `propose_conf_change` and `compact`; outputs come out in `Ready` batches.
//!
//! Contract with the runtime, per `Ready`: persist the snapshot, the entries (truncating any
//! stored suffix from the first entry's index) and the hard state, in the order the `Ready`s
//! came; apply the committed entries; send the messages. Either synchronously — persist, send,
//! apply, then `advance` — or asynchronously: hand the persistence to storage, apply and call
//! `on_applied`, send at once only a leader's replication messages (`Message::may_precede_
//! persistence`), and send the rest once storage reports the `Ready` durable, then call
//! `on_persisted`; further `Ready`s may be taken meanwhile. Either way a vote or an append ack
//! never leaves for state that could still be lost, and the leader counts its own log only
//! once it is durable.

use super::log::RaftLog;
use super::message::*;
use super::progress::{Progress, ProgressState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use thiserror::Error;

/// Tunables of one node.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    /// Ticks without a leader before an election; the actual timeout is random in
    /// [election_tick, 2 × election_tick).
    pub election_tick: u32,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: u32,
    /// Appends in flight per follower while replicating.
    pub max_inflight: usize,
    /// Bytes of entries per append.
    pub max_bytes_per_msg: usize,
    /// Pre-vote: a partitioned node cannot disrupt the cluster with term bumps.
    pub pre_vote: bool,
    /// Leader steps down when it cannot hear a quorum; followers ignore votes during a lease.
    pub check_quorum: bool,
    /// Bytes per InstallSnapshot chunk.
    pub snapshot_chunk: usize,
    /// Seed of the election-jitter stream.
    pub seed: u64,
}

impl Config {
    /// Defaults in the spirit of etcd: election 10 ticks, heartbeat 1 tick.
    pub fn new(id: NodeId, seed: u64) -> Self {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 1,
            max_inflight: 64,
            max_bytes_per_msg: 1 << 20,
            pre_vote: true,
            check_quorum: true,
            snapshot_chunk: 64 << 10,
            seed,
        }
    }
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// A confirmed read: reads of state applied through `index` are linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    pub index: u64,
    pub ctx: Vec<u8>,
}

/// What storage holds at startup.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The latest snapshot; for a new cluster, index 0 with the initial voters.
    pub snapshot: Snapshot,
    /// Entries after the snapshot.
    pub entries: Vec<Entry>,
}

/// One batch of work for the runtime (see the module docs for the order).
#[derive(Debug, Default)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub committed: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    /// The bytes of the snapshot at this index are wanted (to send to a follower) and were
    /// dropped (`drop_snapshot_data`): read them from storage and hand them to
    /// `snapshot_loaded`.
    pub load_snapshot: Option<u64>,
    /// A follower needs a snapshot and there is none yet: take one (`compact`) soon.
    pub compact: bool,
    /// Whether this Ready must be durable before its held messages go (etcd's MustSync): it
    /// has entries or a snapshot, or its hard state changed the term or the vote. A hard state
    /// that moved only the commit index need not be (a restart learns the index again).
    pub must_sync: bool,
}

/// The vote of a node that may not vote in its current term (a rebuilt replica's).
pub const NOBODY: NodeId = NodeId::MAX;

/// How far a node that lost its storage has got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// No leader heard from yet.
    Waiting,
    /// A leader of `term` said `commit` was committed: caught up once this node holds it.
    CatchingUp { commit: u64, term: u64 },
}

/// Why a request to the node was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RaftError {
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("leadership transfer in progress")]
    TransferInProgress,
    #[error("a membership change is still pending")]
    ConfChangePending,
    #[error("no entry of the current term is committed yet")]
    TermNotCommitted,
    #[error("node {0} is not a voter")]
    NotVoter(NodeId),
    #[error("the change would leave no voters")]
    EmptyConfiguration,
    #[error("snapshot index {0} is not applied or not in the log")]
    BadSnapshotIndex(u64),
}

#[derive(Debug, Clone)]
struct PendingRead {
    index: u64,
    ctx: Vec<u8>,
    from: NodeId,
    acks: BTreeSet<NodeId>,
}

/// The Raft node. Clone, so that an exhaustive search can branch from any state.
#[derive(Debug, Clone)]
pub struct Raft {
    cfg: Config,
    id: NodeId,
    term: u64,
    vote: NodeId,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    /// The latest membership in the log (in force as soon as appended, committed or not).
    conf: ConfState,
    /// The membership changes in the log after the snapshot, by index.
    confs: BTreeMap<u64, ConfChange>,
    pending_conf_index: u64,
    /// The latest snapshot; its data is empty while not loaded (see `snapshot_loaded`).
    snapshot: Snapshot,
    /// Whether `snapshot.data` holds the snapshot's bytes.
    snapshot_loaded: bool,
    /// The runtime is asked (or is to be asked, `Some(false)`) for the bytes of the snapshot.
    snapshot_wanted: Option<bool>,
    /// A follower outside the initial membership needs the log from its start: only a
    /// snapshot can give it that (asked for in the next `Ready`).
    compact_wanted: bool,
    /// Rebuilding lost state (`start_recovering`): no vote, no campaign until caught up.
    recovering: Option<Recovery>,
    progress: BTreeMap<NodeId, Progress>,
    votes: BTreeMap<NodeId, bool>,
    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_timeout: u32,
    rng: ChaCha8Rng,
    msgs: Vec<Message>,
    /// A leader owes its peers the entries appended since the last `ready`: they go out then,
    /// in one append per peer, rather than one per proposal (measured on three nodes at
    /// pipelining depth 1: each write cost every follower ~3 appends and ~3 answers).
    append_due: bool,
    /// Peers an acknowledgement since the last `ready` unblocked (their window refills then).
    refill_due: BTreeSet<NodeId>,
    /// A leader owes its peers its new commit index (sent with `append_due`'s appends, or in
    /// empty ones).
    commit_due: bool,
    reads: VecDeque<PendingRead>,
    reads_waiting_commit: Vec<(NodeId, Vec<u8>)>,
    read_states: Vec<ReadState>,
    lead_transferee: Option<NodeId>,
    incoming_snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    pending_snapshot: Option<Snapshot>,
    prev_hard_state: HardState,
}

impl Raft {
    /// Builds a node from what storage recovered.
    pub fn new(cfg: Config, rec: Recovered) -> Self {
        assert!(cfg.id != 0, "node id 0 is reserved");
        assert!(cfg.heartbeat_tick >= 1 && cfg.election_tick > cfg.heartbeat_tick);
        let log = RaftLog::recovered(&rec.snapshot.meta, rec.entries, rec.hard_state.commit);
        let mut r = Raft {
            id: cfg.id,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ cfg.id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            cfg,
            term: rec.hard_state.term,
            vote: rec.hard_state.vote,
            role: Role::Follower,
            leader: None,
            conf: rec.snapshot.meta.conf.clone(),
            confs: BTreeMap::new(),
            pending_conf_index: 0,
            snapshot: rec.snapshot,
            snapshot_loaded: true,
            snapshot_wanted: None,
            compact_wanted: false,
            recovering: None,
            log,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            msgs: Vec::new(),
            append_due: false,
            refill_due: BTreeSet::new(),
            commit_due: false,
            reads: VecDeque::new(),
            reads_waiting_commit: Vec::new(),
            read_states: Vec::new(),
            lead_transferee: None,
            incoming_snapshot: None,
            pending_snapshot: None,
            prev_hard_state: rec.hard_state,
        };
        r.rescan_confs(0);
        r.reset_timeout();
        r
    }

    // ---- observers -------------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// Current term.
    pub fn term(&self) -> u64 {
        self.term
    }
    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// The leader this node follows, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    /// Highest committed index.
    pub fn committed(&self) -> u64 {
        self.log.committed
    }
    /// Highest applied index (as confirmed by `advance`).
    pub fn applied(&self) -> u64 {
        self.log.applied
    }
    /// Last log index.
    pub fn last_index(&self) -> u64 {
        self.log.last_index()
    }
    /// Term of an index still in the log.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.log.term(index)
    }
    /// Entries `lo..=hi` still held in memory.
    pub fn entries(&self, lo: u64, hi: u64) -> Vec<Entry> {
        self.log.slice(lo, hi, usize::MAX)
    }
    /// Highest index whose data `release_applied` may have dropped.
    pub fn released(&self) -> u64 {
        self.log.released()
    }
    /// Current (committed) membership.
    pub fn conf(&self) -> &ConfState {
        &self.conf
    }
    /// The hard state as of the last `ready`.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }
    /// The leader's replication progress per follower (empty on followers).
    pub fn progress(&self) -> &BTreeMap<NodeId, Progress> {
        &self.progress
    }
    /// The last snapshot this node holds (taken or received).
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot.meta
    }

    // ---- inputs ----------------------------------------------------------------------------

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        if self.role == Role::Leader {
            self.heartbeat_elapsed += 1;
            self.election_elapsed += 1;
            if self.election_elapsed >= self.cfg.election_tick {
                self.election_elapsed = 0;
                if self.cfg.check_quorum && !self.quorum_active() {
                    let term = self.term;
                    self.become_follower(term, None);
                    return;
                }
                // A transfer that did not finish within an election timeout is abandoned.
                self.lead_transferee = None;
            }
            if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
                self.heartbeat_elapsed = 0;
                self.bcast_heartbeat(Vec::new());
            }
        } else {
            self.election_elapsed += 1;
            if self.promotable() && self.election_elapsed >= self.randomized_timeout {
                self.election_elapsed = 0;
                self.campaign(false);
            }
        }
    }

    /// This node lost its log and hard state (found damaged, rebuilt empty): until it holds
    /// what a leader elected without it had committed when first heard from, it neither votes
    /// nor campaigns (a quorum without it decides, and entries it had acknowledged survive
    /// on the rest of the quorum that committed them); afterwards it does not vote in that
    /// leader's term or an earlier one (its vote there may have been lost).
    pub fn start_recovering(&mut self) {
        self.recovering = Some(Recovery::Waiting);
    }

    /// Whether it is still rebuilding lost state (see `start_recovering`).
    pub fn is_recovering(&self) -> bool {
        self.recovering.is_some()
    }

    /// Moves a recovery on: a leader's message of `term` said `commit` is committed.
    fn recovery_progress(&mut self, leader_commit: Option<(u64, u64)>) {
        let Some(r) = self.recovering else { return };
        if let (Recovery::Waiting, Some((commit, term))) = (r, leader_commit) {
            self.recovering = Some(Recovery::CatchingUp { commit, term });
        }
        if let Some(Recovery::CatchingUp { commit, term }) = self.recovering {
            if self.log.committed >= commit {
                self.recovering = None;
                // Its term is at least the leader's (it took the leader's message). No vote in
                // that term, whose vote may have been lost with its storage: a durable vote for
                // nobody, which holds after a restart too; earlier terms are refused anyway.
                if self.term == term && self.vote == 0 {
                    self.vote = NOBODY;
                }
            }
        }
    }

    /// Campaigns at once if this node is the only voter: nobody else can vote, so a one-voter
    /// cluster need not sit out an election timeout after it starts (ZooKeeper standalone
    /// serves as soon as its data is loaded).
    pub fn campaign_if_sole_voter(&mut self) {
        if self.role != Role::Leader && self.conf.voters.len() == 1 && self.promotable() {
            self.campaign(false);
            debug_assert_eq!(self.role, Role::Leader, "a sole voter wins its own election");
        }
    }

    /// Proposes application data; returns the entry's index.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<u64, RaftError> {
        self.check_can_propose()?;
        Ok(self.append_entry(EntryKind::Normal, data))
    }

    /// Proposes a single-server membership change with the application's `context` (returned
    /// with the committed entry). Only one may be pending, and only after an entry of the
    /// current term committed (the single-server-change safety rule).
    pub fn propose_conf_change(&mut self, cc: ConfChange, context: Vec<u8>) -> Result<u64, RaftError> {
        self.check_can_propose()?;
        // Broken on purpose under raft-conf-two-at-once: a second change before the first
        // committed, so the configurations in force can differ by two voters.
        if self.pending_conf_index > self.log.committed && !crate::bug("raft-conf-two-at-once") {
            return Err(RaftError::ConfChangePending);
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            return Err(RaftError::TermNotCommitted);
        }
        let mut next = self.conf.clone();
        next.apply(&cc);
        if next.voters.is_empty() {
            return Err(RaftError::EmptyConfiguration);
        }
        let index = self.append_entry(EntryKind::ConfChange, cc.encode(context));
        self.pending_conf_index = index;
        self.confs.insert(index, cc);
        self.conf_changed();
        Ok(index)
    }

    /// Asks for a linearizable read point; the answer comes as a `ReadState` with `ctx`, which
    /// the caller makes unique.
    pub fn read_index(&mut self, ctx: Vec<u8>) -> Result<(), RaftError> {
        match (self.role, self.leader) {
            (Role::Leader, _) => {
                self.leader_read_index(self.id, ctx);
                Ok(())
            }
            (_, Some(l)) => {
                self.send(l, Body::ReadIndex { ctx });
                Ok(())
            }
            _ => Err(RaftError::NotLeader { leader: None }),
        }
    }

    /// Hands leadership to `to` once it has caught up.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        if to == self.id || self.lead_transferee == Some(to) {
            return Ok(());
        }
        if !self.conf.voters.contains(&to) {
            return Err(RaftError::NotVoter(to));
        }
        self.lead_transferee = Some(to);
        self.election_elapsed = 0;
        if self
            .progress
            .get(&to)
            .is_some_and(|p| p.matched == self.log.last_index())
        {
            self.send(to, Body::TimeoutNow);
        } else {
            self.send_append(to, false);
        }
        Ok(())
    }

    /// Tells the leader that messages to `id` could not be delivered (connection lost): it
    /// goes back to probing, since appends in flight may be gone.
    pub fn report_unreachable(&mut self, id: NodeId) {
        if let Some(pr) = self.progress.get_mut(&id) {
            if pr.state == ProgressState::Replicate {
                pr.become_probe();
            }
        }
    }

    /// Drops the data of entries no one will be sent again (ZooKeeper too keeps only a short
    /// tail of its log in memory): on a leader, ordinary entries that are applied, durable
    /// here and held by every member (voters and learners). Should one still be needed (a
    /// member lost its log), that member gets a snapshot, taken on demand. Followers keep
    /// theirs: a new leader must be able to send what it holds.
    pub fn release_applied(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let held_by_all = self.progress.values().map(|p| p.matched).min().unwrap_or(u64::MAX);
        let upto = held_by_all.min(self.log.applied).min(self.log.stable);
        self.log.release(upto);
    }

    /// Records a state-machine snapshot the runtime took at `index` (≤ applied) and compacts
    /// the log up to it. The snapshot is what lagging followers will be sent.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<SnapshotMeta, RaftError> {
        let meta = self.snapshot_meta_at(index)?;
        self.snapshot = Snapshot {
            meta: meta.clone(),
            data,
        };
        self.snapshot_loaded = true;
        self.snapshot_wanted = None;
        self.log.compact(index);
        // Folded into the snapshot's membership.
        self.confs = self.confs.split_off(&(index + 1));
        Ok(meta)
    }

    /// `compact` for a snapshot the runtime wrote to storage without keeping its bytes: they
    /// are asked for (`Ready::load_snapshot`) when a follower needs them.
    pub fn compact_stored(&mut self, index: u64) -> Result<SnapshotMeta, RaftError> {
        let meta = self.compact(index, Vec::new())?;
        self.snapshot_loaded = false;
        Ok(meta)
    }

    /// Forgets the snapshot's bytes unless a follower is being sent them: a runtime that can
    /// read the snapshot back from storage need not hold a copy of its state machine in
    /// memory. When a follower needs it, `Ready::load_snapshot` asks for it. Whether they
    /// were dropped (or were not held).
    pub fn drop_snapshot_data(&mut self) -> bool {
        if !self.snapshot_loaded {
            return true;
        }
        if self
            .progress
            .values()
            .any(|p| matches!(p.state, ProgressState::Snapshot { .. }))
        {
            return false;
        }
        self.snapshot.data = Vec::new();
        self.snapshot_loaded = false;
        true
    }

    /// The bytes asked for by `Ready::load_snapshot`. Ignored unless they are the current
    /// snapshot's (storage may hold a newer one Raft has not been told of yet): the next
    /// chunk due (at the latest on a heartbeat response) asks again.
    pub fn snapshot_loaded(&mut self, snap: Snapshot) {
        if snap.meta != self.snapshot.meta {
            if !self.snapshot_loaded {
                self.snapshot_wanted = None;
            }
            return;
        }
        if self.snapshot_loaded {
            return;
        }
        self.snapshot = snap;
        self.snapshot_loaded = true;
        self.snapshot_wanted = None;
        let waiting: Vec<NodeId> = self
            .progress
            .iter()
            .filter(|(_, p)| matches!(p.state, ProgressState::Snapshot { .. }))
            .map(|(&id, _)| id)
            .collect();
        for id in waiting {
            self.send_snapshot_chunk(id);
        }
    }

    /// What a snapshot of the state after applying `index` would say of itself (for a runtime
    /// that writes the snapshot first and compacts once it is durable).
    pub fn snapshot_meta_at(&self, index: u64) -> Result<SnapshotMeta, RaftError> {
        if index > self.log.applied || index < self.log.snap_index() {
            return Err(RaftError::BadSnapshotIndex(index));
        }
        let term = self.log.term(index).ok_or(RaftError::BadSnapshotIndex(index))?;
        Ok(SnapshotMeta {
            index,
            term,
            conf: self.conf_at(index),
        })
    }

    /// Handles a message from a peer. Anything malformed or stale is ignored, never a panic.
    pub fn step(&mut self, m: Message) {
        if m.to != self.id || m.from == self.id {
            return;
        }
        if m.term > self.term && self.role == Role::Leader && crate::bug("raft-leader-keeps-role") {
            // Broken on purpose: a leader that learns of a higher term adopts it but does not
            // step down, so two leaders share that term.
            self.term = m.term;
            self.vote = 0;
        } else if m.term > self.term {
            match &m.body {
                Body::RequestVote { pre_vote, transfer, .. } => {
                    // During a leader lease, ignore votes: the leader is alive (check-quorum).
                    let in_lease = self.cfg.check_quorum
                        && self.leader.is_some()
                        && self.election_elapsed < self.cfg.election_tick;
                    if in_lease && !transfer {
                        return;
                    }
                    if !pre_vote {
                        self.become_follower(m.term, None);
                    }
                }
                // Granted pre-votes carry the future term; they change nothing.
                Body::VoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                Body::Append { .. } | Body::Commit { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                    self.become_follower(m.term, Some(m.from));
                }
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term
            && matches!(m.body, Body::Append { .. } | Body::Commit { .. })
            && self.role == Role::Follower
            && crate::bug("raft-stale-append")
        {
            // Broken on purpose: an append from a deposed leader's older term is taken like a
            // current one (the term check forgotten).
            return self.step_follower(m);
        } else if m.term < self.term {
            match &m.body {
                // Tell a stale leader about the newer term so it steps down.
                Body::Append { .. } | Body::Commit { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. }
                    if self.cfg.check_quorum || self.cfg.pre_vote =>
                {
                    self.send(
                        m.from,
                        Body::AppendResponse {
                            reject: true,
                            index: 0,
                            hint_index: 0,
                            hint_term: 0,
                        },
                    );
                }
                Body::RequestVote { pre_vote: true, .. } => {
                    self.send(
                        m.from,
                        Body::VoteResponse {
                            granted: false,
                            pre_vote: true,
                        },
                    );
                }
                _ => {}
            }
            return;
        }

        if let Body::RequestVote {
            last_index,
            last_term,
            pre_vote,
            ..
        } = m.body
        {
            // Broken on purpose under raft-vote-twice: a second vote in the same term, for
            // whoever asks (a candidate even deserts itself).
            let can_vote = (self.vote == m.from
                || (self.vote == 0 && self.leader.is_none())
                || (pre_vote && m.term > self.term)
                || (!pre_vote && crate::bug("raft-vote-twice")))
                && self.recovering.is_none();
            // Broken on purpose under raft-vote-ignores-log: a vote for a candidate whose log
            // lacks committed entries.
            if can_vote && (self.log.is_up_to_date(last_index, last_term) || crate::bug("raft-vote-ignores-log")) {
                // The response carries the candidate's term so it is not ignored as stale.
                self.send_with_term(
                    m.from,
                    m.term,
                    Body::VoteResponse {
                        granted: true,
                        pre_vote,
                    },
                );
                if !pre_vote {
                    self.election_elapsed = 0;
                    self.vote = m.from;
                }
            } else {
                self.send(
                    m.from,
                    Body::VoteResponse {
                        granted: false,
                        pre_vote,
                    },
                );
            }
            return;
        }

        match self.role {
            Role::Leader => self.step_leader(m),
            Role::Candidate | Role::PreCandidate => self.step_candidate(m),
            Role::Follower => self.step_follower(m),
        }
    }

    // ---- output ----------------------------------------------------------------------------

    /// Whether `ready` has anything.
    pub fn has_ready(&self) -> bool {
        !self.msgs.is_empty()
            || self.sends_due()
            || self.hard_state() != self.prev_hard_state
            || self.log.handed < self.log.last_index()
            || self.log.applied < self.log.committed
            || self.pending_snapshot.is_some()
            || !self.read_states.is_empty()
            || self.snapshot_wanted == Some(false)
            || self.compact_wanted
    }

    /// Takes the next batch of work. Its entries and hard state count as handed to storage:
    /// the next `Ready` carries only what came after.
    pub fn ready(&mut self) -> Ready {
        self.send_due();
        let hs = self.hard_state();
        let prev = self.prev_hard_state;
        let snapshot = self.pending_snapshot.take();
        let entries = self.log.unstable();
        let rd = Ready {
            hard_state: (hs != prev).then_some(hs),
            must_sync: snapshot.is_some() || !entries.is_empty() || (hs.term, hs.vote) != (prev.term, prev.vote),
            snapshot,
            entries,
            messages: std::mem::take(&mut self.msgs),
            committed: self.log.to_apply(),
            read_states: std::mem::take(&mut self.read_states),
            load_snapshot: match self.snapshot_wanted {
                Some(false) => {
                    self.snapshot_wanted = Some(true);
                    Some(self.snapshot.meta.index)
                }
                _ => None,
            },
            compact: std::mem::take(&mut self.compact_wanted),
        };
        self.prev_hard_state = hs;
        if let Some(last) = rd.entries.last() {
            self.log.handed = last.index;
        }
        rd
    }

    /// Confirms that a `Ready` was persisted, sent and applied (the synchronous contract).
    pub fn advance(&mut self, rd: &Ready) {
        if let Some(last) = rd.committed.last() {
            self.on_applied(last.index);
        }
        if let Some(last) = rd.entries.last() {
            self.on_persisted(last.index, last.term);
        } else if self.role == Role::Leader && self.maybe_commit() {
            self.commit_due = true;
        }
    }

    /// Storage reports durable every entry up to `index`, whose term was `term` when it was
    /// handed over (a later truncation makes the report stale for that suffix: ignored).
    pub fn on_persisted(&mut self, index: u64, term: u64) {
        if self.log.term(index) == Some(term) {
            assert!(
                index <= self.log.handed,
                "persisted {index} beyond handed {}",
                self.log.handed
            );
            self.log.stable = self.log.stable.max(index);
        }
        if self.role == Role::Leader && self.maybe_commit() {
            self.commit_due = true;
        }
    }

    /// The runtime applied every committed entry up to `index`.
    pub fn on_applied(&mut self, index: u64) {
        assert!(
            index <= self.log.committed,
            "applied {index} beyond commit {}",
            self.log.committed
        );
        self.log.applied = self.log.applied.max(index);
    }

    // ---- roles -----------------------------------------------------------------------------

    fn promotable(&self) -> bool {
        self.conf.voters.contains(&self.id) && self.recovering.is_none()
    }

    fn reset_timeout(&mut self) {
        let e = self.cfg.election_tick;
        self.randomized_timeout = self.rng.gen_range(e..2 * e);
    }

    fn reset(&mut self, term: u64) {
        if term != self.term {
            self.term = term;
            self.vote = 0;
        }
        self.leader = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_timeout();
        self.votes.clear();
        self.progress.clear();
        self.reads.clear();
        self.reads_waiting_commit.clear();
        self.lead_transferee = None;
        self.append_due = false;
        self.commit_due = false;
        self.refill_due.clear();
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn campaign(&mut self, transfer: bool) {
        if !self.promotable() {
            return;
        }
        let pre = self.cfg.pre_vote && !transfer;
        let vote_term = if pre {
            let term = self.term;
            self.reset(term);
            self.role = Role::PreCandidate;
            self.term + 1
        } else {
            let term = self.term + 1;
            self.reset(term);
            self.role = Role::Candidate;
            self.vote = self.id;
            self.term
        };
        self.votes.insert(self.id, true);
        if self.tally() {
            return;
        }
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self.conf.voters.iter().copied().filter(|&v| v != self.id).collect();
        for v in voters {
            self.send_with_term(
                v,
                vote_term,
                Body::RequestVote {
                    last_index,
                    last_term,
                    pre_vote: pre,
                    transfer,
                },
            );
        }
    }

    /// Counts votes; wins or loses the round if decided. True if the round was decided.
    fn tally(&mut self) -> bool {
        let q = self.conf.quorum();
        let (mut granted, mut rejected) = (0, 0);
        for v in &self.conf.voters {
            match self.votes.get(v) {
                Some(true) => granted += 1,
                Some(false) => rejected += 1,
                None => {}
            }
        }
        if granted >= q {
            if self.role == Role::PreCandidate {
                self.campaign(true);
            } else {
                self.become_leader();
            }
            true
        } else if rejected >= q {
            let term = self.term;
            self.become_follower(term, None);
            true
        } else {
            false
        }
    }

    fn become_leader(&mut self) {
        assert!(self.role == Role::Candidate, "only a candidate becomes leader");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        let last = self.log.last_index();
        self.progress = self
            .conf
            .members()
            .filter(|&m| m != self.id)
            .map(|m| (m, Progress::new(last)))
            .collect();
        // No membership change until this term's first entry commits.
        self.pending_conf_index = last + 1;
        self.append_entry(EntryKind::Noop, Vec::new());
    }

    // ---- per-role message handling ----------------------------------------------------------

    fn step_follower(&mut self, m: Message) {
        match m.body {
            Body::Append { .. } | Body::Commit { .. } => {
                // A commit is an append without entries, answered only if it does not match.
                let (prev_index, prev_term, entries, commit, answer) = match m.body {
                    Body::Append {
                        prev_index,
                        prev_term,
                        entries,
                        commit,
                    } => (prev_index, prev_term, entries, commit, true),
                    Body::Commit {
                        prev_index,
                        prev_term,
                        commit,
                    } => (prev_index, prev_term, Vec::new(), commit, false),
                    _ => return,
                };
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_append(m.from, prev_index, prev_term, &entries, commit, answer);
                // An append carries the leader's whole commit index (a heartbeat's is clamped).
                self.recovery_progress(Some((commit, m.term)));
            }
            Body::Heartbeat { commit, ctx } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                self.handle_heartbeat(m.from, commit, ctx);
                self.recovery_progress(None);
            }
            Body::InstallSnapshot {
                meta,
                offset,
                data,
                done,
            } => {
                self.election_elapsed = 0;
                self.leader = Some(m.from);
                let index = meta.index;
                self.handle_snapshot(m.from, meta, offset, data, done);
                // A snapshot's index is committed on the leader.
                self.recovery_progress(Some((index, m.term)));
            }
            // A recovering node has no business leading.
            Body::TimeoutNow if self.recovering.is_some() => {}
            Body::TimeoutNow => self.campaign(true),
            Body::ReadIndexResponse { index, ctx } => self.read_states.push(ReadState { index, ctx }),
            _ => {}
        }
    }

    fn step_candidate(&mut self, m: Message) {
        match m.body {
            Body::Append { .. } | Body::Commit { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                let term = self.term;
                self.become_follower(term, Some(m.from));
                self.step_follower(m);
            }
            Body::VoteResponse { granted, pre_vote } if pre_vote == (self.role == Role::PreCandidate) => {
                self.votes.entry(m.from).or_insert(granted);
                self.tally();
            }
            _ => {}
        }
    }

    fn step_leader(&mut self, m: Message) {
        let from = m.from;
        match m.body {
            Body::AppendResponse {
                reject,
                index,
                hint_index,
                hint_term,
            } => {
                let last = self.log.last_index();
                let Some(pr) = self.progress.get_mut(&from) else { return };
                pr.recent_active = true;
                if reject {
                    let next_hint = if hint_term > 0 {
                        self.log.conflict_hint(hint_index, hint_term).0 + 1
                    } else {
                        hint_index + 1
                    };
                    let pr = self.progress.get_mut(&from).expect("checked");
                    // Only an answer to the latest append sent says what the follower holds
                    // now: a late or replayed rejection from before it caught up looks the
                    // same and would throw away a match it still has (and, with its entries
                    // released, cost it a snapshot; found under message chaos). A genuine
                    // loss is seen on the next probe, which goes out from `matched`.
                    let latest = pr.next.checked_sub(1) == Some(index);
                    if latest && index >= pr.matched && hint_index < pr.matched {
                        // It no longer holds what it acknowledged: it lost its storage and
                        // rebuilds it (start_recovering). Its old acknowledgements count no more.
                        pr.matched = hint_index;
                        pr.become_probe();
                        self.send_append(from, false);
                        return;
                    }
                    if pr.maybe_decr_to(index, next_hint) {
                        self.send_append(from, false);
                    }
                    return;
                }
                if !pr.maybe_update(index) {
                    return;
                }
                match pr.state {
                    ProgressState::Probe => pr.become_replicate(),
                    ProgressState::Snapshot { index: si, .. } if pr.matched >= si => pr.become_probe(),
                    _ => {}
                }
                let caught_up = pr.matched == last;
                if self.maybe_commit() {
                    self.commit_due = true;
                }
                self.refill_due.insert(from);
                if caught_up && self.lead_transferee == Some(from) {
                    self.send(from, Body::TimeoutNow);
                }
            }
            Body::HeartbeatResponse { ctx } => {
                let last = self.log.last_index();
                let Some(pr) = self.progress.get_mut(&from) else { return };
                pr.recent_active = true;
                if pr.state == ProgressState::Probe {
                    pr.paused = false;
                }
                if pr.check_stalled() {
                    pr.become_probe();
                }
                let snapshotting = matches!(pr.state, ProgressState::Snapshot { .. });
                if snapshotting {
                    self.send_snapshot_chunk(from);
                } else if pr.matched < last {
                    self.send_append(from, false);
                }
                if !ctx.is_empty() {
                    self.ack_read(from, &ctx);
                }
            }
            Body::SnapshotResponse {
                index,
                offset,
                installed,
                reject,
            } => {
                let Some(pr) = self.progress.get_mut(&from) else { return };
                pr.recent_active = true;
                let ProgressState::Snapshot { index: si, .. } = pr.state else {
                    return;
                };
                if si != index {
                    return;
                }
                if installed {
                    pr.matched = pr.matched.max(index);
                    pr.become_probe();
                    self.send_append(from, false);
                } else if reject {
                    pr.become_probe();
                    self.send_append(from, false);
                } else {
                    pr.state = ProgressState::Snapshot { index, offset };
                    self.send_snapshot_chunk(from);
                }
            }
            Body::ReadIndex { ctx } => self.leader_read_index(from, ctx),
            _ => {}
        }
    }

    /// Takes an append (or, `answer` false, a commit: answered only if rejected).
    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: &[Entry],
        commit: u64,
        answer: bool,
    ) {
        let (mut prev_index, mut prev_term, mut entries) = (prev_index, prev_term, entries);
        let committed = self.log.committed;
        if prev_index < committed {
            // Our committed prefix matches every leader's log (leader completeness): skip it.
            let skip = (committed - prev_index) as usize;
            if skip >= entries.len() {
                if answer {
                    self.ack_append(from, committed);
                }
                return;
            }
            prev_index = committed;
            prev_term = self.log.term(committed).expect("committed index is held");
            entries = &entries[skip..];
        }
        match self.log.maybe_append(prev_index, prev_term, entries) {
            Some(last_new) => {
                // Broken on purpose under raft-commit-unmatched: the leader's commit index
                // applied to entries beyond those known to match its log.
                let upto = if crate::bug("raft-commit-unmatched") {
                    if commit.min(self.log.last_index()) > commit.min(last_new) {
                        crate::bug_taken();
                    }
                    self.log.last_index()
                } else {
                    last_new
                };
                // Broken on purpose under raft-follower-commit-ahead: the follower commits
                // everything it was sent, not only what the leader says is committed.
                let commit = if crate::bug("raft-follower-commit-ahead") {
                    last_new
                } else {
                    commit
                };
                self.log.commit_to(commit.min(upto));
                if let Some(first) = entries.first() {
                    self.rescan_confs(first.index);
                } else if crate::bug("raft-truncate-on-append") {
                    self.rescan_confs(prev_index + 1);
                }
                if answer {
                    self.ack_append(from, last_new);
                }
            }
            None => {
                let (hint_index, hint_term) = self.log.conflict_hint(prev_index.min(self.log.last_index()), prev_term);
                self.send(
                    from,
                    Body::AppendResponse {
                        reject: true,
                        index: prev_index,
                        hint_index,
                        hint_term,
                    },
                );
            }
        }
    }

    /// Acknowledges appends up to `index`. An acknowledgement still queued for the same leader
    /// and term takes the higher index instead of a second message going out: both wait for
    /// the same `Ready` to be durable, and within a term the leader's log only grows, so the
    /// later one says all the earlier one did.
    fn ack_append(&mut self, to: NodeId, index: u64) {
        let term = self.term;
        let last_to_leader = self.msgs.iter_mut().rev().find(|m| m.to == to);
        if let Some(Message {
            term: t,
            body:
                Body::AppendResponse {
                    reject: false,
                    index: acked,
                    ..
                },
            ..
        }) = last_to_leader
        {
            if *t == term {
                *acked = (*acked).max(index);
                return;
            }
        }
        self.send(
            to,
            Body::AppendResponse {
                reject: false,
                index,
                hint_index: 0,
                hint_term: 0,
            },
        );
    }

    fn handle_heartbeat(&mut self, from: NodeId, commit: u64, ctx: Vec<u8>) {
        self.log.commit_to(commit.min(self.log.last_index()));
        self.send(from, Body::HeartbeatResponse { ctx });
    }

    fn snapshot_installed(&mut self, from: NodeId, index: u64) {
        self.send(
            from,
            Body::SnapshotResponse {
                index,
                offset: 0,
                installed: true,
                reject: false,
            },
        );
    }

    fn handle_snapshot(&mut self, from: NodeId, meta: SnapshotMeta, offset: u64, data: Vec<u8>, done: bool) {
        let index = meta.index;
        if index <= self.log.committed {
            self.incoming_snapshot = None;
            self.snapshot_installed(from, index);
            return;
        }
        match &mut self.incoming_snapshot {
            _ if offset == 0 => self.incoming_snapshot = Some((meta.clone(), data)),
            Some((m, buf)) if *m == meta && buf.len() as u64 == offset => buf.extend_from_slice(&data),
            other => {
                let expect = match other {
                    Some((m, buf)) if *m == meta => buf.len() as u64,
                    _ => 0,
                };
                self.send(
                    from,
                    Body::SnapshotResponse {
                        index,
                        offset: expect,
                        installed: false,
                        reject: false,
                    },
                );
                return;
            }
        }
        if !done {
            let have = self.incoming_snapshot.as_ref().map_or(0, |(_, b)| b.len() as u64);
            self.send(
                from,
                Body::SnapshotResponse {
                    index,
                    offset: have,
                    installed: false,
                    reject: false,
                },
            );
            return;
        }
        let (meta, data) = self.incoming_snapshot.take().expect("assembled above");
        let snap = Snapshot { meta, data };
        self.log.restore(&snap);
        self.snapshot = snap.clone();
        self.confs.clear();
        self.rescan_confs(snap.meta.index + 1);
        // The snapshot's membership, whether or not changes follow it.
        self.conf_changed();
        self.snapshot_loaded = true;
        self.snapshot_wanted = None;
        self.pending_snapshot = Some(snap);
        self.snapshot_installed(from, index);
    }

    // ---- leader machinery -------------------------------------------------------------------

    fn check_can_propose(&self) -> Result<(), RaftError> {
        if self.role != Role::Leader {
            return Err(RaftError::NotLeader { leader: self.leader });
        }
        if self.lead_transferee.is_some() {
            return Err(RaftError::TransferInProgress);
        }
        Ok(())
    }

    fn append_entry(&mut self, kind: EntryKind, data: Vec<u8>) -> u64 {
        let index = self.log.last_index() + 1;
        self.log.append(Entry {
            term: self.term,
            index,
            kind,
            data: data.into(),
        });
        self.append_due = true;
        index
    }

    /// Whether a leader owes appends (see `append_due`).
    fn sends_due(&self) -> bool {
        self.role == Role::Leader && (self.append_due || self.commit_due || !self.refill_due.is_empty())
    }

    /// Sends what a leader owes: to every peer if entries were appended or the commit index
    /// moved, else to the peers whose window reopened; each peer's window is filled.
    fn send_due(&mut self) {
        if !self.sends_due() {
            return;
        }
        let all = self.append_due || self.commit_due;
        let empty = self.commit_due;
        let refill = std::mem::take(&mut self.refill_due);
        (self.append_due, self.commit_due) = (false, false);
        let peers: Vec<NodeId> = self
            .progress
            .keys()
            .copied()
            .filter(|p| all || refill.contains(p))
            .collect();
        for p in peers {
            if self.send_append(p, empty) {
                while self.send_append(p, false) {}
            }
        }
    }

    /// Sends the next append to `to` if flow control allows; true if one went out carrying
    /// entries (so the caller may keep filling the window).
    fn send_append(&mut self, to: NodeId, send_empty: bool) -> bool {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get(&to) else { return false };
        if pr.is_paused(self.cfg.max_inflight) {
            return false;
        }
        let prev_index = pr.next - 1;
        if prev_index == 0 && self.snapshot.meta.index == 0 && !self.snapshot.meta.conf.members().any(|m| m == to) {
            // The log from its start makes sense only to a node that bootstrapped the initial
            // membership (index 0's); one added since started from its own idea of it, which
            // a snapshot replaces. Until there is one, send nothing.
            self.compact_wanted = true;
            return false;
        }
        let Some(prev_term) = self.log.term(prev_index) else {
            // The entries it needs were compacted: send the snapshot instead.
            let si = self.snapshot.meta.index;
            self.progress.get_mut(&to).expect("checked").become_snapshot(si);
            self.send_snapshot_chunk(to);
            return false;
        };
        if prev_index < self.log.released() && prev_index < last {
            // What it needs was released (`release_applied`): a snapshot past it, taken on
            // demand, replaces those entries; until it exists, send nothing.
            self.compact_wanted = true;
            return false;
        }
        let entries = self.log.slice(prev_index + 1, last, self.cfg.max_bytes_per_msg);
        if entries.is_empty() && !send_empty && pr.state == ProgressState::Replicate {
            return false;
        }
        let n = entries.len();
        let sent_last = prev_index + n as u64;
        let commit = self.log.committed;
        let replicating = pr.state == ProgressState::Replicate;
        self.progress.get_mut(&to).expect("checked").sent(sent_last, n);
        let body = if n == 0 && replicating {
            // Only the commit index to tell: a follower being replicated to holds, or has been
            // sent, everything up to `prev_index`, and acknowledges it with those entries. A
            // probe, empty or not, is always answered: the answer is what ends the probing.
            Body::Commit {
                prev_index,
                prev_term,
                commit,
            }
        } else {
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            }
        };
        self.send(to, body);
        n > 0
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(pr) = self.progress.get_mut(&to) else { return };
        let ProgressState::Snapshot { index, offset } = pr.state else {
            return;
        };
        if index != self.snapshot.meta.index {
            // A newer snapshot replaced the one being sent: start over with it.
            pr.become_snapshot(self.snapshot.meta.index);
            return self.send_snapshot_chunk(to);
        }
        if !self.snapshot_loaded {
            // Sent once the runtime has read the bytes back (`snapshot_loaded`).
            if self.snapshot_wanted.is_none() {
                self.snapshot_wanted = Some(false);
            }
            return;
        }
        let len = self.snapshot.data.len() as u64;
        let start = offset.min(len);
        let end = (start + self.cfg.snapshot_chunk as u64).min(len);
        let body = Body::InstallSnapshot {
            meta: self.snapshot.meta.clone(),
            offset: start,
            data: self.snapshot.data[start as usize..end as usize].to_vec(),
            done: end == len,
        };
        self.send(to, body);
    }

    fn bcast_heartbeat(&mut self, ctx: Vec<u8>) {
        let peers: Vec<(NodeId, u64)> = self.progress.iter().map(|(&id, p)| (id, p.matched)).collect();
        for (p, matched) in peers {
            // Never tell a follower to commit past what it is known to hold (broken on purpose
            // under raft-heartbeat-commit: a follower with a divergent tail commits it).
            let commit = if crate::bug("raft-heartbeat-commit") {
                self.log.committed
            } else {
                matched.min(self.log.committed)
            };
            self.send(
                p,
                Body::Heartbeat {
                    commit,
                    ctx: ctx.clone(),
                },
            );
        }
    }

    /// Commits the highest index a quorum of voters holds durably, if it is of this term
    /// (entries of earlier terms commit only indirectly: Raft figure 8).
    fn maybe_commit(&mut self) -> bool {
        if !self.conf.voters.contains(&self.id) && self.conf.voters.is_empty() {
            return false;
        }
        // Broken on purpose under raft-removed-counted: members removed by a conf change still
        // count towards the quorum (their progress was kept, and they are still sent the log).
        let removed_counted = crate::bug("raft-removed-counted");
        let removed = self
            .progress
            .keys()
            .filter(|id| removed_counted && !self.conf.members().any(|m| m == **id));
        // One vector per call (a leader calls this for every acknowledgement).
        let mut matched: Vec<u64> = self
            .conf
            .voters
            .iter()
            .chain(removed)
            .map(|v| {
                if *v == self.id {
                    self.log.stable
                } else {
                    self.progress.get(v).map_or(0, |p| p.matched)
                }
            })
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let q = matched[self.conf.quorum() - 1];
        // Broken on purpose under raft-commit-old-term: entries of an earlier term committed by
        // counting replicas (the Figure 8 bug of the Raft paper).
        if q <= self.log.committed || (self.log.term(q) != Some(self.term) && !crate::bug("raft-commit-old-term")) {
            return false;
        }
        self.log.commit_to(q);
        self.conf_committed();
        if self.role == Role::Leader {
            for (from, ctx) in std::mem::take(&mut self.reads_waiting_commit) {
                self.leader_read_index(from, ctx);
            }
        }
        true
    }

    fn quorum_active(&mut self) -> bool {
        let id = self.id;
        let active = self
            .conf
            .voters
            .iter()
            .filter(|v| **v == id || self.progress.get(v).is_some_and(|p| p.recent_active))
            .count();
        for p in self.progress.values_mut() {
            p.recent_active = false;
        }
        active >= self.conf.quorum()
    }

    fn leader_read_index(&mut self, from: NodeId, ctx: Vec<u8>) {
        if self.log.term(self.log.committed) != Some(self.term) {
            // The commit index is only known to be current once this term has committed.
            self.reads_waiting_commit.push((from, ctx));
            return;
        }
        let index = self.log.committed;
        let mut acks = BTreeSet::new();
        if self.conf.voters.contains(&self.id) {
            acks.insert(self.id);
        }
        if crate::bug("raft-read-no-quorum") {
            // Broken on purpose: the read point is answered at once, without confirming with
            // a quorum that this node still leads (a deposed leader answers stale reads).
            acks.extend(self.conf.voters.iter().copied());
        }
        self.reads.push_back(PendingRead {
            index,
            ctx: ctx.clone(),
            from,
            acks,
        });
        if !self.release_reads() {
            self.bcast_heartbeat(ctx);
        }
    }

    fn ack_read(&mut self, from: NodeId, ctx: &[u8]) {
        if !self.conf.voters.contains(&from) {
            return;
        }
        if let Some(r) = self.reads.iter_mut().find(|r| r.ctx == ctx) {
            r.acks.insert(from);
        }
        self.release_reads();
    }

    /// Answers every read up to the newest one a quorum confirmed (FIFO); true if any.
    fn release_reads(&mut self) -> bool {
        let q = self.conf.quorum();
        let Some(pos) = self.reads.iter().rposition(|r| r.acks.len() >= q) else {
            return false;
        };
        for r in self.reads.drain(..=pos).collect::<Vec<_>>() {
            if r.from == self.id {
                self.read_states.push(ReadState {
                    index: r.index,
                    ctx: r.ctx,
                });
            } else {
                self.send(
                    r.from,
                    Body::ReadIndexResponse {
                        index: r.index,
                        ctx: r.ctx,
                    },
                );
            }
        }
        true
    }

    // ---- membership --------------------------------------------------------------------------

    /// Re-reads the membership changes in the log from `from` on (after the log's tail
    /// changed: appended, truncated, restored); puts the latest membership in force if they
    /// changed (an append without one, the usual case, costs a scan of what it appended).
    fn rescan_confs(&mut self, from: u64) {
        let mut changed = !self.confs.split_off(&from).is_empty();
        let last = self.log.last_index();
        let from = from.max(self.log.snap_index() + 1);
        if from <= last {
            for e in self.log.iter(from, last) {
                if e.kind == EntryKind::ConfChange {
                    if let Some((cc, _)) = ConfChange::decode(&e.data) {
                        self.confs.insert(e.index, cc);
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.conf_changed();
        }
    }

    /// Puts the latest membership in the log in force (Raft's rule: a server uses the latest
    /// configuration in its log, committed or not); a leader starts replicating to members
    /// new to it at once, and keeps sending to removed ones until their removal commits.
    fn conf_changed(&mut self) {
        self.conf = self.conf_at(u64::MAX);
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let snap = self.snapshot.meta.index;
        for m in self.conf.members().collect::<Vec<_>>() {
            if m != self.id && !self.progress.contains_key(&m) {
                // A member new to this leader starts from the snapshot: a fresh node
                // bootstrapped its own idea of the initial membership, and only the
                // snapshot's replaces it (one whose log is further along ignores it).
                let mut pr = Progress::new(last);
                if snap > 0 {
                    pr.become_snapshot(snap);
                }
                self.progress.insert(m, pr);
                self.send_append(m, true);
            }
        }
        if self.lead_transferee.is_some_and(|t| !self.conf.voters.contains(&t)) {
            self.lead_transferee = None;
        }
    }

    /// Leader: what a membership change does once committed. Removed members are sent the
    /// log up to their removal, committed, once more (they learn they are out and stop
    /// serving instead of campaigning in vain), then dropped; a leader that removed itself
    /// steps down and hands over.
    fn conf_committed(&mut self) {
        if self.role != Role::Leader || self.confs.range(self.log.committed + 1..).next().is_some() {
            return;
        }
        let conf = self.conf.clone();
        let gone: Vec<NodeId> = self
            .progress
            .keys()
            .copied()
            .filter(|id| !conf.members().any(|m| m == *id))
            .collect();
        if gone.is_empty() && conf.voters.contains(&self.id) {
            return;
        }
        for id in &gone {
            self.send_append(*id, true);
        }
        // Broken on purpose under raft-removed-counted: removed members stay (maybe_commit
        // counts them, and they are still sent the log).
        if !crate::bug("raft-removed-counted") {
            self.progress.retain(|id, _| conf.members().any(|m| m == *id));
        }
        if !conf.voters.contains(&self.id) {
            // Removed: hand over at once instead of leaving the rest to sit out an election
            // timeout (the dissertation's leadership transfer). The others learn the new
            // commit index first, so the change is applied (and its client answered) before
            // they see a new leader; a voter holding the whole log may campaign at once.
            self.bcast_heartbeat(Vec::new());
            let last = self.log.last_index();
            let heir = conf
                .voters
                .iter()
                .copied()
                .find(|v| self.progress.get(v).is_some_and(|p| p.matched == last));
            if let Some(h) = heir {
                self.send(h, Body::TimeoutNow);
            }
            let term = self.term;
            self.become_follower(term, None);
        }
    }

    /// Membership as of `index` (at or after the snapshot; `u64::MAX`: the latest).
    fn conf_at(&self, index: u64) -> ConfState {
        let mut conf = self.snapshot.meta.conf.clone();
        for (_, cc) in self.confs.range(..=index) {
            conf.apply(cc);
        }
        conf
    }

    // ---- sending -----------------------------------------------------------------------------

    fn send(&mut self, to: NodeId, body: Body) {
        let term = self.term;
        self.send_with_term(to, term, body);
    }

    fn send_with_term(&mut self, to: NodeId, term: u64, body: Body) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term,
            body,
        });
    }
}
