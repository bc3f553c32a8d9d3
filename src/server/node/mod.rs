//! The replica: one task that owns Raft, the tree, sessions and watches, and handles every
//! event in order (client requests, peer messages, ticks, storage completions). The request
//! pipeline follows ZooKeeper's, stage by stage, one module each:
//! - `clients`: handshakes, auth, and each connection's queue, which answers a session's
//!   requests in order;
//! - `local`: reads and watch requests answered from this node's tree, and notifications;
//! - `writes`: writes routed to the leader, prepared and proposed (PrepRequestProcessor);
//! - `ready`: Raft's `Ready` handed to the WAL stage (`persist`, SyncRequestProcessor), which
//!   makes it durable while this loop goes on; messages that must wait for it wait;
//! - `apply`: committed transactions applied, watches fired, this node's requests answered
//!   (FinalRequestProcessor);
//! - `duties`: ticks, reaping and session expiry on the leader, leader changes;
//! - `read_only` and `four_letter`: read-only mode and the four-letter words.

mod apply;
mod clients;
mod duties;
mod four_letter;
mod local;
mod read_only;
mod ready;
mod reconfig;
mod writes;

use clients::ip_auth;
pub use four_letter::{Stats, VERSION};

use super::config::Config;
use super::membership::DynamicConfig;
use super::peer::Peers;
use super::persist::{self, Job};
use super::watch::Watches;
use crate::jute::*;
use crate::raft::{self, ConfState, EntryKind, Message, NodeId, Raft, Role};
use crate::session::{password, SessionIds, SessionTracker};
use crate::storage::{Disk, Storage, StorageError, WalOptions};
use crate::tree::acl::{check_acl, digest_auth};
use crate::tree::{snapshot, AuthIds, DataTree, Pending, PrepareCtx, TreeConfig, Txn, TxnEntry, TxnResult};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub(crate) use crate::bug;

/// A write as it travels to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WriteOp {
    /// A client request (`xid`: the client's, 0 for the server's own), with the session's
    /// identities for ACL checks.
    Request { req: Request, auth: Vec<Id>, xid: i32 },
    /// A new session.
    CreateSession { timeout: i32 },
    /// Session expiry, decided by the leader.
    Expire,
}

/// Messages between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerMsg {
    /// First on every connection: who is sending, and where it listens for peers (so that a
    /// member that has not yet learned of a newer one from the log can still answer it).
    Hello {
        from: NodeId,
        addr: String,
        /// The sender's `PEER_PROTOCOL`: a peer speaking another is refused, by name.
        protocol: u32,
    },
    Raft(Message),
    /// A write for the leader to prepare and propose; `origin` answers the client.
    Forward {
        origin: Origin,
        session: i64,
        op: WriteOp,
    },
    /// Sessions with activity on the sender since its last touch (for expiry).
    Touch {
        sessions: Vec<i64>,
    },
}

/// Who answers a proposal once it is applied: a request of one incarnation of one node. The
/// incarnation (`boot`) matters: request ids start over when a server restarts, and an entry
/// its previous incarnation proposed may commit afterwards; it must not answer the new
/// incarnation's request that happens to have the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub node: NodeId,
    pub boot: u64,
    pub req_id: u64,
}

/// What a committed Raft entry carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proposal {
    pub origin: Origin,
    /// The client's xid for the request (ZooKeeper's TxnHeader.cxid; 0 for the server's own).
    pub cxid: i32,
    pub entry: TxnEntry,
}

impl Proposal {
    /// Its bytes in an entry.
    pub fn encode(&self) -> Vec<u8> {
        // Sized once, from a bound (origin: three integers, cxid: one).
        let bound = 4 * crate::tree::txn::VARINT + self.entry.encoded_size_bound();
        let mut b = Vec::with_capacity(bound);
        bincode::serde::encode_into_std_write(self, &mut b, bincode::config::standard()).expect("proposals encode");
        debug_assert!(b.len() <= bound, "the bound holds");
        // The Raft log keeps the bytes until the next snapshot (200,000 entries with a big
        // tree), so slack beyond a little is given back (in place, no copy, with glibc).
        if b.capacity() > b.len() + 64 {
            b.shrink_to_fit();
        }
        b
    }
}

/// A frame for a client connection's writer.
#[derive(Debug)]
pub enum Out {
    /// The reply to one request: frees one of the connection's outstanding-request slots.
    Reply(Vec<u8>),
    /// Anything else the server sends (watch notifications).
    Frame(Vec<u8>),
    /// Close the connection once what is queued before it is written.
    Close,
}

/// The outcome of a handshake.
#[derive(Debug)]
pub enum Handshake {
    Ok(ConnectResponse),
    /// Unknown session or bad password: the reply ZooKeeper sends before closing.
    Expired,
    /// Closed without a reply: a client that cannot take a read-only session, at a server in
    /// read-only mode (ZooKeeper's "Refusing session request for not-read-only client").
    Refused,
}

/// A client's handshake, handed to the node loop by its connection.
#[derive(Debug)]
pub struct Connecting {
    pub conn: u64,
    pub req: ConnectRequest,
    /// The negotiated session timeout.
    pub timeout: i32,
    pub ip: String,
    pub out: mpsc::UnboundedSender<Out>,
    pub reply: oneshot::Sender<Handshake>,
}

/// Inputs of the node loop.
#[derive(Debug)]
pub enum Event {
    Connect(Connecting),
    /// A request, in the order the connection read it (one sender per connection keeps it).
    Request {
        conn: u64,
        xid: i32,
        req: Request,
    },
    Ping {
        conn: u64,
    },
    Disconnect {
        conn: u64,
    },
    Peer(PeerMsg),
    Tick,
    /// The WAL stage made every `Ready` up to this id durable (None: only compaction work).
    Persisted(Result<Option<u64>, StorageError>),
    /// A snapshot for log compaction is durable: Raft may drop the log before it.
    Snapshotted {
        snapshot: raft::Snapshot,
        size: u64,
    },
    /// A compaction snapshot was written beside the WAL stage: the stage is to adopt it.
    SnapshotWritten {
        snapshot: raft::Snapshot,
        size: u64,
    },
    /// The current snapshot, read back for Raft to send to a follower.
    SnapshotLoaded(raft::Snapshot),
    FourLetter {
        cmd: String,
        reply: oneshot::Sender<String>,
    },
}

struct Conn {
    session: i64,
    out: mpsc::UnboundedSender<Out>,
    auth: AuthIds,
    ip: String,
    received: u64,
    /// Requests not answered yet, in arrival order, with their arrival times: replies leave
    /// only from the front.
    queue: VecDeque<(tokio::time::Instant, Slot)>,
    /// Syncs in `queue`: writes behind one wait until it is answered.
    syncs: usize,
    /// Replies sent on this connection.
    sent: u64,
}

impl Conn {
    fn new(session: i64, out: mpsc::UnboundedSender<Out>, auth: AuthIds, ip: String) -> Conn {
        Conn {
            session,
            out,
            auth,
            ip,
            received: 0,
            queue: VecDeque::new(),
            syncs: 0,
            sent: 0,
        }
    }
}

/// One request of a connection on its way to a reply (ZooKeeper's CommitProcessor rule: a
/// session's requests are answered in the order sent, each after the effects of the ones
/// before it).
enum Slot {
    /// Not started: a request answered from the local tree, which runs only once everything
    /// ahead of it is answered; or a write held behind a sync, so that a read after the sync
    /// cannot see the write.
    Held { xid: i32, req: Request },
    /// A write or sync on its way through Raft, under this request id.
    InFlight { req_id: u64, sync: bool },
    /// Answered: the encoded reply, waiting for the replies ahead of it.
    Done(Vec<u8>),
    /// A sync that has caught up, waiting for the replies ahead of it. Its reply is encoded
    /// when sent, so that its zxid covers the session's writes answered before it (as
    /// ZooKeeper's, processed in order after them).
    Synced { xid: i32, path: String },
}

/// How a request travels.
#[derive(PartialEq, Eq)]
enum Path {
    /// Through Raft (prepared by the leader, answered when applied).
    Write,
    /// A read index, answered once this node has applied up to it.
    Sync,
    /// From this node's tree and watch tables.
    Local,
}

fn path_of(req: &Request) -> Path {
    match req {
        Request::Sync(_) => Path::Sync,
        r if r.is_write() => Path::Write,
        _ => Path::Local,
    }
}

enum Waiting {
    Write {
        conn: u64,
        xid: i32,
        close_after: bool,
        /// A reconfig: answered with the new configuration and its stat.
        reconfig: bool,
    },
    Connect {
        conn: u64,
        session: i64,
        reply: oneshot::Sender<Handshake>,
        read_only: Option<bool>,
    },
    Sync {
        conn: u64,
        xid: i32,
        path: String,
    },
}

/// Wall-clock milliseconds for transaction times.
pub trait Clock: Send {
    fn now_ms(&self) -> i64;

    /// How fast this machine's timers run against true time, in parts per million (0: exact).
    /// Raft ticks and session timeouts follow it, as they follow a real machine's oscillator.
    fn rate_ppm(&self) -> i64 {
        0
    }

    /// A simulated machine's timer lag the nemesis sets at run time: only every n-th Raft tick
    /// is delivered (n read at each tick; none on a real machine).
    fn tick_stretch(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicU32>> {
        None
    }
}

/// Milliseconds of true time that `ms` of a clock running `rate_ppm` fast take (never 0).
pub fn drifted(ms: u64, rate_ppm: i64) -> std::time::Duration {
    let rate = (1_000_000 + rate_ppm).max(1) as u128;
    let micros = (ms as u128 * 1_000 * 1_000_000 / rate).max(1);
    std::time::Duration::from_micros(micros as u64)
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// The replica's state.
pub struct Node {
    cfg: Config,
    id: NodeId,
    raft: Raft,
    /// Until `run` hands it to the WAL stage.
    storage: Option<Storage<Box<dyn Disk>>>,
    /// The WAL stage's queue (set by `run`).
    wal: Option<mpsc::UnboundedSender<Job>>,
    /// Ids of `Ready`s handed to the WAL stage.
    next_ready: u64,
    /// This incarnation (see `Origin`).
    boot: u64,
    /// A snapshot for compaction is on its way through the WAL stage.
    snapshotting: bool,
    /// Bytes of the entries applied since the last snapshot began (for `snap_size_limit`).
    log_bytes: u64,
    /// Size of the latest snapshot: the log may hold a quarter as much before the next one, so
    /// that writing snapshots costs at most four bytes per byte logged however large the tree.
    snapshot_bytes: u64,
    /// `Ready`s handed to the WAL stage and not yet durable, oldest first.
    unpersisted: VecDeque<Unpersisted>,
    /// A hard state that moved only the commit index (a `Ready` that need not be durable),
    /// written with the next `Ready` that goes to disk: an fsync of its own cost a node one
    /// per batch (a leader's commit moves after its entries' fsync, a follower's with the
    /// append after).
    unwritten_commit: Option<raft::HardState>,
    tree: DataTree,
    pending: Pending,
    /// This leader's proposals by (index, term), oldest first, until applied: the entry at
    /// that index and term is the one proposed (Raft's log matching), so applying it need not
    /// decode the bytes again (that decode was 2.2% of a one-node server's samples under
    /// one-KiB setData, a twentieth of its replica loop).
    proposed: VecDeque<(u64, u64, Proposal)>,
    /// The ensemble's membership as of the applied state (`/zookeeper/config`).
    members: DynamicConfig,
    /// The reconfig this leader is carrying out.
    reconfig: Option<reconfig::Reconfiguring>,
    /// Take a snapshot as soon as possible (a new member needs one).
    snapshot_soon: bool,
    /// The last index recovered from the log at start: once it is applied (and released),
    /// the memory the recovery used is handed back to the system.
    trim_after: Option<u64>,
    /// Rebuilding a damaged replica (storage marked; Raft recovering).
    rebuilding: bool,
    /// Figures for the Prometheus endpoint, shared with the WAL stage.
    metrics: Arc<super::metrics::Metrics>,
    peers: Peers,
    clock: Box<dyn Clock>,
    conns: BTreeMap<u64, Conn>,
    session_conn: BTreeMap<i64, u64>,
    watches: Watches,
    waiting: BTreeMap<u64, Waiting>,
    syncs_after_apply: Vec<(u64, u64)>,
    queued: VecDeque<(u64, i64, WriteOp)>,
    next_req: u64,
    ids: SessionIds,
    tracker: SessionTracker,
    expiring: BTreeSet<i64>,
    touched: BTreeSet<i64>,
    /// Read-only mode (`readonlymode.enabled`): no leader for a while, so this member serves
    /// read-only sessions from its own tree and answers writes NotReadOnly.
    read_only: bool,
    /// Since when (monotonic ms) no leader has been known.
    leaderless_since: Option<i64>,
    /// Sessions created in read-only mode: this server's alone, never replicated (ZooKeeper's
    /// local sessions), with their timeout and last sign of life.
    ro_sessions: BTreeMap<i64, (i32, i64)>,
    role: Role,
    leader: Option<NodeId>,
    leader_ready: bool,
    term_start: u64,
    /// The term in which this node last reported itself leader to the observer (madsim).
    #[cfg_attr(not(madsim), allow(dead_code))]
    reported_leader_term: u64,
    /// Snapshots taken or installed, for the observer's live state (madsim).
    #[cfg_attr(not(madsim), allow(dead_code))]
    snapshots_seen: u64,
    /// The commit index last reported to the observer while leader (madsim).
    #[cfg_attr(not(madsim), allow(dead_code))]
    reported_commit: u64,
    /// The live state last reported to the observer (madsim): an unchanged one is not
    /// reported again (most Readys change none of it).
    #[cfg_attr(not(madsim), allow(dead_code))]
    reported_live: Option<crate::server::observer::Live>,
    zxid_counter: i64,
    applied_zxid: Arc<AtomicI64>,
    stats: Stats,
    last_reap: i64,
    mono_start: tokio::time::Instant,
    /// The clock's rate, fixed at start so the monotonic clock never jumps.
    rate_ppm: i64,
}

/// A `Ready` on its way to disk: what to tell Raft, and the messages that must wait for it.
struct Unpersisted {
    id: u64,
    /// Its last entry (index, term).
    last: Option<(u64, u64)>,
    held: Vec<Message>,
}

/// What recovery hands the node: storage, Raft's state, what recovery did, and the tree.
type Opened = (
    Storage<Box<dyn Disk>>,
    raft::Recovered,
    crate::storage::RecoveryReport,
    DataTree,
);

/// Opens storage and the tree it holds.
fn recover(cfg: &Config, disk: Box<dyn Disk>, conf: ConfState, opts: WalOptions) -> Result<Opened, NodeError> {
    let started = tokio::time::Instant::now();
    let (opening, snapshot) = Storage::open_snapshot(disk, &cfg.log_dir(), conf, opts)?;
    let read = started.elapsed();
    // The log is read while the snapshot is decoded: they are independent, and each was
    // about half of a restart with a big tree. The decode stays on this thread, whose malloc
    // arena grows cheaply (on another thread it took 840-1000 ms instead of 510 for 900k
    // znodes).
    let (log, tree) = beside(opening, |o| o.read_log(), snapshot.data.as_slice(), decode_tree);
    let log = log?;
    let tree = match tree? {
        Some(tree) => tree,
        None if cfg.peers.is_empty() => DataTree::new(),
        // Every member of a new ensemble starts with the same static configuration, so the
        // same tree; a member added later gets the leader's snapshot instead.
        None => DataTree::with_config(cfg.initial_membership().render().as_bytes()),
    };
    tracing::info!(
        snapshot_index = snapshot.meta.index,
        znodes = tree.node_count(),
        entries = log.entries.len(),
        snapshot_read_ms = read.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "recovered storage"
    );
    let rec = crate::raft::Recovered {
        hard_state: log.hard_state,
        snapshot,
        entries: log.entries,
    };
    Ok((log.storage, rec, log.report, tree))
}

/// The tree a snapshot's bytes hold; none for an empty snapshot (a new replica).
fn decode_tree(data: &[u8]) -> Result<Option<DataTree>, snapshot::SnapshotError> {
    if data.is_empty() {
        Ok(None)
    } else {
        snapshot::decode(data).map(Some)
    }
}

/// `f(a)` and `g(b)`, the first on a thread of its own. Under the simulator one after the
/// other (threads are not simulated): `g` is a pure computation on its input, so whether it
/// runs before, after or beside `f` changes only the time taken.
fn beside<A: Send, B: ?Sized, F, G, Ra: Send, Rb>(a: A, f: F, b: &B, g: G) -> (Ra, Rb)
where
    F: FnOnce(A) -> Ra + Send,
    G: FnOnce(&B) -> Rb,
{
    #[cfg(not(madsim))]
    {
        std::thread::scope(|s| {
            let other = std::thread::Builder::new()
                .name("zraft-recover".into())
                .spawn_scoped(s, move || f(a))
                // At startup, before anything is served: a server that cannot start a thread
                // cannot start its runtime either.
                .expect("a thread to read the log on");
            let rb = g(b);
            (other.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), rb)
        })
    }
    #[cfg(madsim)]
    {
        (f(a), g(b))
    }
}

/// Why the node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] snapshot::SnapshotError),
}

impl NodeError {
    /// Whether stored state is damaged (rather than the disk failing).
    fn is_damage(&self) -> bool {
        match self {
            NodeError::Storage(e) => e.is_damage(),
            // A snapshot whose checksum held but whose content does not decode.
            NodeError::Snapshot(_) => true,
        }
    }
}

impl Node {
    /// Opens storage, recovers, and builds the node.
    pub fn open(
        cfg: Config,
        disk: Box<dyn Disk>,
        peers: Peers,
        clock: Box<dyn Clock>,
        seed: u64,
    ) -> Result<(Node, Arc<AtomicI64>), NodeError> {
        let id = cfg.my_id;
        let conf = if cfg.peers.is_empty() {
            ConfState::voters([id])
        } else {
            let mut c = ConfState::voters(cfg.peers.iter().filter(|p| !p.spec.observer).map(|p| p.id));
            c.learners = cfg.peers.iter().filter(|p| p.spec.observer).map(|p| p.id).collect();
            c
        };
        let opts = WalOptions {
            // The WAL stage deletes compaction's garbage in a task of its own.
            defer_deletes: true,
            // And makes the next segment's zeros ahead of time in another.
            preallocate: cfg.prealloc_bytes > 0,
            segment_bytes: if cfg.prealloc_bytes > 0 {
                cfg.prealloc_bytes
            } else {
                WalOptions::default().segment_bytes
            },
        };
        let second = disk.detached();
        let (mut storage, rec, report, tree, repaired) = match recover(&cfg, disk, conf.clone(), opts) {
            Ok((s, r, rep, t)) => (s, r, rep, t, false),
            // Replica repair: a member of an ensemble whose log or snapshot is damaged moves
            // the files aside and rejoins empty, rebuilt from its peers (Raft's recovering
            // mode keeps it from voting until then); it serves nothing meanwhile. A single
            // server has nobody to rebuild from and stays down, as does one whose disk fails.
            Err(e) if e.is_damage() && cfg.peers.len() > 1 && second.is_some() => {
                let mut disk = second.expect("checked");
                let moved = crate::storage::quarantine(&mut *disk, &cfg.log_dir())?;
                tracing::error!(error = %e, moved_to = %moved, "damaged storage moved aside: rebuilding from the ensemble");
                #[cfg(madsim)]
                super::observer::report(super::observer::Observation::Event {
                    node: cfg.my_id,
                    what: "repair",
                });
                let (s, r, rep, t) = recover(&cfg, disk, conf, opts)?;
                (s, r, rep, t, true)
            }
            Err(e) => return Err(e),
        };
        if let Some((file, off)) = &report.truncated {
            tracing::warn!(%file, offset = off, "recovery cut a torn log tail");
            #[cfg(madsim)]
            super::observer::report(super::observer::Observation::Event {
                node: cfg.my_id,
                what: "torn-tail-recovered",
            });
        }
        let mut rcfg = raft::Config::new(id, seed);
        rcfg.election_tick = 10;
        rcfg.heartbeat_tick = 2;
        rcfg.max_bytes_per_msg = cfg.raft_max_append_bytes.max(1);

        #[cfg(madsim)]
        super::observer::report(super::observer::Observation::Recovered {
            node: id,
            term: rec.hard_state.term,
            vote: rec.hard_state.vote,
        });
        let snapshot_bytes = rec.snapshot.data.len() as u64;
        let last_recovered = rec.entries.last().map_or(0, |e| e.index);
        let mut raft = Raft::new(rcfg, rec);
        // Also after a restart in the middle of a rebuild: the mark is durable.
        let rebuilding = repaired || storage.rebuilding()?;
        // Broken on purpose under repair-votes-at-once: the rebuilt replica votes and campaigns
        // at once with its empty log (as a fresh node would).
        if rebuilding && !bug("repair-votes-at-once") {
            raft.start_recovering();
        }
        // The tree is the snapshot's state; its bytes are read back when a follower needs them.
        raft.drop_snapshot_data();
        let applied_zxid = Arc::new(AtomicI64::new(tree.last_zxid()));
        let now = clock.now_ms();
        // Distinct for every start of this node: a restart takes longer than a millisecond,
        // and the log only grows between starts (the seed separates nodes).
        let boot = (now as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ raft.last_index().rotate_left(40) ^ seed;
        // Broken on purpose under "reused-req-ids": every incarnation looks the same (zraft
        // before boot ids), so a previous life's proposals answer this one's requests.
        let boot = if bug("reused-req-ids") { 0 } else { boot };
        let mut node = Node {
            id,
            raft,
            storage: Some(storage),
            wal: None,
            next_ready: 0,
            boot,
            snapshotting: false,
            log_bytes: 0,
            snapshot_bytes,
            unpersisted: VecDeque::new(),
            unwritten_commit: None,
            tree,
            pending: Pending::new(),
            proposed: VecDeque::new(),
            members: DynamicConfig::default(),
            reconfig: None,
            snapshot_soon: false,
            trim_after: Some(last_recovered),
            rebuilding,
            metrics: Arc::default(),
            peers,
            conns: BTreeMap::new(),
            session_conn: BTreeMap::new(),
            watches: Watches::default(),
            waiting: BTreeMap::new(),
            syncs_after_apply: vec![],
            queued: VecDeque::new(),
            next_req: 0,
            ids: SessionIds::new(id, now),
            tracker: SessionTracker::default(),
            expiring: BTreeSet::new(),
            touched: BTreeSet::new(),
            read_only: false,
            leaderless_since: None,
            ro_sessions: BTreeMap::new(),
            role: Role::Follower,
            leader: None,
            leader_ready: false,
            term_start: 0,
            reported_leader_term: 0,
            snapshots_seen: 0,
            reported_commit: 0,
            reported_live: None,
            zxid_counter: 0,
            applied_zxid: applied_zxid.clone(),
            stats: Stats::default(),
            last_reap: 0,
            mono_start: tokio::time::Instant::now(),
            rate_ppm: clock.rate_ppm(),
            clock,
            cfg,
        };
        node.refresh_members();
        Ok((node, applied_zxid))
    }

    /// Runs the loop until the event channel closes or storage fails; `events_tx` is the
    /// loop's own queue, which the WAL stage reports to.
    pub async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        events_tx: mpsc::UnboundedSender<Event>,
    ) -> Result<(), NodeError> {
        let storage = self.storage.take().expect("run is called once");
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        persist::start(storage, jobs_rx, events_tx, self.metrics.clone(), self.id);
        self.wal = Some(jobs_tx);
        self.raft.campaign_if_sole_voter();
        // Apply what the log already holds before serving anything.
        self.process_ready()?;
        while let Some(ev) = events.recv().await {
            self.dispatch(ev)?;
            // Everything that queued up meanwhile goes into the same Ready: one WAL job.
            while let Ok(ev) = events.try_recv() {
                self.dispatch(ev)?;
            }
            self.process_ready()?;
        }
        Ok(())
    }

    fn dispatch(&mut self, ev: Event) -> Result<(), NodeError> {
        match ev {
            Event::Persisted(r) => self.on_persisted(r?),
            other => self.handle(other),
        }
        Ok(())
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Connect(c) => self.on_connect(c),
            Event::Request { conn, xid, req } => {
                self.stats.received += 1;
                self.on_request(conn, xid, req);
            }
            Event::Ping { conn } => {
                if let Some(c) = self.conns.get(&conn) {
                    let s = c.session;
                    self.touch(s);
                }
            }
            Event::Disconnect { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    if self.session_conn.get(&c.session) == Some(&conn) {
                        self.session_conn.remove(&c.session);
                        self.watches.drop_session(c.session);
                    }
                }
            }
            Event::Peer(m) => self.on_peer(m),
            Event::Tick => self.on_tick(),
            Event::Persisted(_) => unreachable!("dispatched before handle"),
            Event::Snapshotted { snapshot: s, size } => {
                self.snapshotting = false;
                let index = s.meta.index;
                self.snapshot_bytes = size;
                self.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .snapshot_bytes
                    .store(self.snapshot_bytes, Ordering::Relaxed);
                // Refused only if a newer snapshot was installed from the leader meanwhile. A
                // snapshot written in pieces comes without its bytes: Raft reads them back
                // when a follower needs them.
                let compacted = if s.data.is_empty() {
                    self.raft.compact_stored(index)
                } else {
                    self.raft.compact(index, s.data)
                };
                let _compacted = compacted.is_ok();
                self.raft.drop_snapshot_data();
                #[cfg(madsim)]
                if _compacted {
                    self.snapshots_seen += 1;
                    super::observer::report(super::observer::Observation::Snapshot {
                        node: self.id,
                        index,
                        installed: false,
                    });
                }
            }
            Event::SnapshotLoaded(s) => self.raft.snapshot_loaded(s),
            Event::SnapshotWritten { snapshot, size } => self.wal_job(Job::AdoptSnapshot { snapshot, size }),
            Event::FourLetter { cmd, reply } => {
                let _ = reply.send(self.four_letter(&cmd));
            }
        }
        self.observe_role();
    }

    /// Wall-clock time, for transaction times (ctime/mtime) and TTLs, as ZooKeeper.
    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Monotonic milliseconds, for session liveness: a wall clock stepping back must not keep
    /// dead sessions alive (ZooKeeper uses its elapsed-time clock here too).
    fn mono(&self) -> i64 {
        let ms = self.mono_start.elapsed().as_millis() as i64;
        ms + ms * self.rate_ppm / 1_000_000
    }

    fn touch(&mut self, session: i64) {
        let now = self.mono();
        if let Some(s) = self.ro_sessions.get_mut(&session) {
            s.1 = now;
            return;
        }
        if self.role == Role::Leader {
            self.tracker.touch(session, now);
        } else {
            self.touched.insert(session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::drifted;
    use std::time::Duration;

    #[test]
    fn drifted_clocks_tick_faster_or_slower() {
        assert_eq!(drifted(50, 0), Duration::from_millis(50));
        // 10% fast: a 50 ms tick comes after 45.45 ms of true time; half speed: 100 ms.
        assert_eq!(drifted(50, 100_000), Duration::from_micros(45_454));
        assert_eq!(drifted(50, -500_000), Duration::from_millis(100));
        // Absurd rates stay positive.
        assert!(drifted(1, 1_000_000_000) > Duration::ZERO);
        assert!(drifted(1, -2_000_000) > Duration::ZERO);
    }
}
