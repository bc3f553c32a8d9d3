//! The replica: one task that owns Raft, the tree, sessions and watches, and handles every
//! event in order (client requests, peer messages, ticks, storage completions); storage is
//! the WAL stage's (`persist`), which makes each Raft `Ready` durable while this loop goes on. Writes go to the leader,
//! which prepares them (PrepRequestProcessor) and proposes the transaction; every node
//! persists (SyncRequestProcessor), applies committed transactions to its tree and answers
//! its own clients (FinalRequestProcessor). Reads are answered from the local tree.

use super::config::Config;
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
    Hello {
        from: NodeId,
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
    Snapshotted(raft::Snapshot),
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

/// Counters for four-letter words.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    pub applied: u64,
    /// Requests answered through the queue, and their latency from arrival to reply.
    pub answered: u64,
    pub latency_total_ms: f64,
    pub latency_min_ms: f64,
    pub latency_max_ms: f64,
}

impl Stats {
    /// Counts one request answered `d` after it arrived.
    fn latency(&mut self, d: std::time::Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        self.latency_min_ms = if self.answered == 0 {
            ms
        } else {
            self.latency_min_ms.min(ms)
        };
        self.latency_max_ms = self.latency_max_ms.max(ms);
        self.latency_total_ms += ms;
        self.answered += 1;
    }

    /// min/avg/max in milliseconds, as ZooKeeper prints them.
    fn latency_line(&self) -> (f64, f64, f64) {
        let avg = if self.answered == 0 {
            0.0
        } else {
            self.latency_total_ms / self.answered as f64
        };
        (self.latency_min_ms, avg, self.latency_max_ms)
    }
}

/// The version four-letter words report: the ZooKeeper release whose protocol and semantics
/// zraft implements first (clients parse it, e.g. kazoo's server_version()), then zraft's own.
pub const VERSION: &str = concat!("3.8.0-zraft-", env!("CARGO_PKG_VERSION"));

/// Wall-clock milliseconds for transaction times.
pub trait Clock: Send {
    fn now_ms(&self) -> i64;

    /// How fast this machine's timers run against true time, in parts per million (0: exact).
    /// Raft ticks and session timeouts follow it, as they follow a real machine's oscillator.
    fn rate_ppm(&self) -> i64 {
        0
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
    /// `Ready`s handed to the WAL stage and not yet durable, oldest first.
    unpersisted: VecDeque<Unpersisted>,
    tree: DataTree,
    pending: Pending,
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

/// Why the node stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] snapshot::SnapshotError),
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
            let mut c = ConfState::voters(cfg.peers.iter().filter(|p| !p.observer).map(|p| p.id));
            c.learners = cfg.peers.iter().filter(|p| p.observer).map(|p| p.id).collect();
            c
        };
        let opts = WalOptions {
            // The WAL stage deletes compaction's garbage in a task of its own.
            defer_deletes: true,
            ..WalOptions::default()
        };
        let (storage, rec, report) = Storage::open(disk, &cfg.log_dir(), conf, opts)?;
        if let Some((file, off)) = &report.truncated {
            tracing::warn!(%file, offset = off, "recovery cut a torn log tail");
            #[cfg(madsim)]
            super::observer::report(super::observer::Observation::Event {
                node: cfg.my_id,
                what: "torn-tail-recovered",
            });
        }
        let tree = if rec.snapshot.data.is_empty() {
            DataTree::new()
        } else {
            snapshot::decode(&rec.snapshot.data)?
        };
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
        let raft = Raft::new(rcfg, rec);
        let applied_zxid = Arc::new(AtomicI64::new(tree.last_zxid()));
        let now = clock.now_ms();
        // Distinct for every start of this node: a restart takes longer than a millisecond,
        // and the log only grows between starts (the seed separates nodes).
        let boot = (now as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ raft.last_index().rotate_left(40) ^ seed;
        // Broken on purpose under "reused-req-ids": every incarnation looks the same (zraft
        // before boot ids), so a previous life's proposals answer this one's requests.
        let boot = if bug("reused-req-ids") { 0 } else { boot };
        let node = Node {
            id,
            raft,
            storage: Some(storage),
            wal: None,
            next_ready: 0,
            boot,
            snapshotting: false,
            unpersisted: VecDeque::new(),
            tree,
            pending: Pending::new(),
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
            zxid_counter: 0,
            applied_zxid: applied_zxid.clone(),
            stats: Stats::default(),
            last_reap: 0,
            mono_start: tokio::time::Instant::now(),
            rate_ppm: clock.rate_ppm(),
            clock,
            cfg,
        };
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
        tokio::spawn(persist::run(storage, jobs_rx, events_tx));
        self.wal = Some(jobs_tx);
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
            Event::Snapshotted(s) => {
                self.snapshotting = false;
                let index = s.meta.index;
                // Refused only if a newer snapshot was installed from the leader meanwhile.
                let _compacted = self.raft.compact(index, s.data).is_ok();
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

    // ---- clients ---------------------------------------------------------------------------

    fn on_connect(&mut self, c: Connecting) {
        if self.read_only {
            self.connect_read_only(c);
            return;
        }
        let Connecting {
            conn,
            req,
            timeout,
            ip,
            out,
            reply,
        } = c;
        let auth = ip_auth(&ip);
        if req.session_id == 0 {
            let session = self.ids.next_id();
            self.conns.insert(conn, Conn::new(session, out, auth, ip));
            let req_id = self.new_req();
            self.waiting.insert(
                req_id,
                Waiting::Connect {
                    conn,
                    session,
                    reply,
                    read_only: req.read_only,
                },
            );
            self.submit(req_id, session, WriteOp::CreateSession { timeout });
            return;
        }
        // Reattach: the session must exist in the replicated table and the password match.
        match self.tree.sessions().get(&req.session_id) {
            Some(&t) if req.passwd == password(req.session_id) => {
                self.detach_session(req.session_id);
                self.session_conn.insert(req.session_id, conn);
                self.conns.insert(conn, Conn::new(req.session_id, out, auth, ip));
                self.touch(req.session_id);
                let _ = reply.send(Handshake::Ok(ConnectResponse {
                    protocol_version: 0,
                    time_out: t,
                    session_id: req.session_id,
                    passwd: password(req.session_id),
                    read_only: req.read_only.map(|_| false),
                }));
            }
            _ => {
                let _ = reply.send(Handshake::Expired);
            }
        }
    }

    fn new_req(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }

    /// Encodes a reply stamped with this node's last applied zxid (ZooKeeper's lastProcessedZxid).
    fn frame(&self, xid: i32, err: ErrorCode, response: Response) -> Vec<u8> {
        let f = ReplyFrame {
            header: ReplyHeader {
                xid,
                zxid: self.tree.last_zxid(),
                err: err.code(),
            },
            response,
        };
        encode_frame(&f.to_bytes())
    }

    /// Hands a reply to the connection's writer.
    fn send_reply(&mut self, conn: u64, frame: Vec<u8>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let _ = c.out.send(Out::Reply(frame));
            c.sent += 1;
            self.stats.sent += 1;
        }
    }

    fn on_request(&mut self, conn: u64, xid: i32, req: Request) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.received += 1;
        let session = c.session;
        self.touch(session);
        if let Request::Auth(a) = req {
            // ZooKeeper authenticates in the connection's I/O thread, ahead of the pipeline:
            // every later request of the connection carries the new identity.
            self.on_auth(conn, a);
            return;
        }
        let now = tokio::time::Instant::now();
        if self.read_only && path_of(&req) != Path::Local {
            self.answer_read_only(conn, session, xid, &req, now);
            return;
        }
        let c = self.conns.get_mut(&conn).expect("looked up above");
        match path_of(&req) {
            Path::Local if c.queue.is_empty() || bug("read-ahead") => {
                // Broken on purpose under "read-ahead": answered at once, ahead of the
                // session's pending writes (zraft before FIFO order was enforced).
                let f = self.execute_local(conn, session, xid, req);
                self.send_reply(conn, f);
                self.stats.latency(std::time::Duration::ZERO);
            }
            Path::Local => c.queue.push_back((now, Slot::Held { xid, req })),
            Path::Write if c.syncs > 0 => c.queue.push_back((now, Slot::Held { xid, req })),
            Path::Write | Path::Sync => {
                let slot = self.start(conn, session, xid, req);
                if let Some(c) = self.conns.get_mut(&conn) {
                    if matches!(slot, Slot::InFlight { sync: true, .. }) {
                        c.syncs += 1;
                    }
                    c.queue.push_back((now, slot));
                }
                // A reply known at once (only in broken variants) may be first in line.
                self.pump(conn);
            }
        }
    }

    // ---- read-only mode ----------------------------------------------------------------------

    /// Enters read-only mode after a leaderless spell as long as ZooKeeper waits before it
    /// starts its read-only server (max(2 s, tickTime)); expires idle read-only sessions.
    fn check_read_only(&mut self) {
        if !self.cfg.read_only_enabled || self.cfg.peers.len() < 2 {
            return;
        }
        let now = self.mono();
        if self.leader.is_none() && !self.read_only {
            let since = *self.leaderless_since.get_or_insert(now);
            if now - since >= self.cfg.tick_time_ms.max(2000) as i64 {
                self.enter_read_only();
            }
        }
        let expired: Vec<i64> = self
            .ro_sessions
            .iter()
            .filter(|(_, &(timeout, last))| now - last > timeout as i64)
            .map(|(&s, _)| s)
            .collect();
        for s in expired {
            self.ro_sessions.remove(&s);
            if let Some(conn) = self.session_conn.remove(&s) {
                self.watches.drop_session(s);
                self.close_conn(conn);
            }
        }
    }

    /// ZooKeeper swaps its server for a read-only one: every client connection is closed and
    /// clients that accept read-only sessions come back.
    fn enter_read_only(&mut self) {
        tracing::warn!(node = self.id, "no leader: read-only mode (readonlymode.enabled)");
        self.read_only = true;
        // Handshakes waiting for a createSession that cannot commit: the client reconnects,
        // and gets a read-only session if it can take one.
        let connecting: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| matches!(w, Waiting::Connect { .. }))
            .map(|(k, _)| *k)
            .collect();
        for k in connecting {
            if let Some(Waiting::Connect { conn, reply, .. }) = self.waiting.remove(&k) {
                let _ = reply.send(Handshake::Refused);
                self.conns.remove(&conn);
            }
        }
        self.close_all_clients();
    }

    /// A leader is back: read-only sessions end (the ensemble never knew them) and every
    /// connection is closed, so clients reconnect to a read-write server.
    fn leave_read_only(&mut self) {
        tracing::info!(node = self.id, "leader known: leaving read-only mode");
        self.read_only = false;
        self.ro_sessions.clear();
        self.close_all_clients();
    }

    fn close_all_clients(&mut self) {
        let conns: Vec<u64> = self.conns.keys().copied().collect();
        for c in conns {
            self.close_conn(c);
        }
    }

    /// A connect in read-only mode: only clients that can take a read-only session get one; a
    /// known session reattaches, a new one is this server's alone.
    fn connect_read_only(&mut self, c: Connecting) {
        let req = &c.req;
        if req.read_only != Some(true) {
            let _ = c.reply.send(Handshake::Refused);
            return;
        }
        let session = if req.session_id == 0 {
            let s = self.ids.next_id();
            self.ro_sessions.insert(s, (c.timeout, self.mono()));
            s
        } else {
            let known =
                self.ro_sessions.contains_key(&req.session_id) || self.tree.sessions().contains_key(&req.session_id);
            if !known || req.passwd != password(req.session_id) {
                let _ = c.reply.send(Handshake::Expired);
                return;
            }
            self.detach_session(req.session_id);
            req.session_id
        };
        let time_out = self
            .tree
            .sessions()
            .get(&session)
            .copied()
            .or_else(|| self.ro_sessions.get(&session).map(|s| s.0))
            .unwrap_or(c.timeout);
        let auth = ip_auth(&c.ip);
        self.conns.insert(c.conn, Conn::new(session, c.out, auth, c.ip));
        self.session_conn.insert(session, c.conn);
        let _ = c.reply.send(Handshake::Ok(ConnectResponse {
            protocol_version: 0,
            time_out,
            session_id: session,
            passwd: password(session),
            read_only: Some(true),
        }));
    }

    /// A session moves to a new connection: its old one here closes, and its watches go with
    /// it (the client re-registers the ones it still wants with setWatches; an old one left
    /// here would fire a second time).
    fn detach_session(&mut self, session: i64) {
        if let Some(old) = self.session_conn.remove(&session) {
            if let Some(c) = self.conns.remove(&old) {
                let _ = c.out.send(Out::Close);
            }
        }
        self.watches.drop_session(session);
    }

    /// A write, sync or closeSession in read-only mode: NotReadOnly, in the session's order,
    /// as ZooKeeper's ReadOnlyRequestProcessor answers; closing a read-only session closes it.
    fn answer_read_only(&mut self, conn: u64, session: i64, xid: i32, req: &Request, now: tokio::time::Instant) {
        let local_close = matches!(req, Request::CloseSession) && self.ro_sessions.contains_key(&session);
        let f = if local_close {
            self.ro_sessions.remove(&session);
            self.frame(xid, ErrorCode::Ok, Response::Empty)
        } else {
            self.frame(xid, ErrorCode::NotReadOnly, Response::Empty)
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queue.push_back((now, Slot::Done(f)));
        }
        self.pump(conn);
        if local_close {
            self.session_conn.remove(&session);
            self.watches.drop_session(session);
            self.close_conn(conn);
        }
    }

    /// Digest authentication (sasl is not supported); a failure closes the connection.
    fn on_auth(&mut self, conn: u64, a: AuthPacket) {
        let ok = a.scheme == "digest" && digest_auth(&a.auth, None).is_ok();
        if ok {
            let ids = digest_auth(&a.auth, self.cfg.super_digest.as_deref()).expect("checked");
            if let Some(c) = self.conns.get_mut(&conn) {
                c.auth.extend(ids);
            }
            self.send_reply(conn, auth_reply(ErrorCode::Ok));
        } else {
            let f = auth_reply(ErrorCode::AuthFailed);
            self.send_reply(conn, f);
            self.close_conn(conn);
        }
    }

    /// Starts a write or a sync: the slot that stands for it in its connection's queue.
    fn start(&mut self, conn: u64, session: i64, xid: i32, req: Request) -> Slot {
        match req {
            Request::Sync(s) if bug("stale-sync") => {
                // Broken on purpose: answers sync at once, without catching up to the leader.
                Slot::Done(self.frame(xid, ErrorCode::Ok, Response::Sync(SyncResponse { path: s.path })))
            }
            Request::Sync(s) => {
                let req_id = self.new_req();
                self.waiting.insert(
                    req_id,
                    Waiting::Sync {
                        conn,
                        xid,
                        path: s.path,
                    },
                );
                if self.raft.read_index(self.read_ctx(req_id)).is_err() {
                    // No leader: the sync waits for one (retried on ticks).
                    self.syncs_after_apply.push((u64::MAX, req_id));
                }
                Slot::InFlight { req_id, sync: true }
            }
            Request::SetData(r) if bug("early-ack") => {
                // Broken on purpose: acknowledges a write before it is committed.
                let auth = self.auth_of(conn);
                let req_id = self.new_req();
                self.submit(
                    req_id,
                    session,
                    WriteOp::Request {
                        req: Request::SetData(r),
                        auth,
                        xid,
                    },
                );
                Slot::Done(self.frame(
                    xid,
                    ErrorCode::Ok,
                    Response::SetData(SetDataResponse { stat: Stat::default() }),
                ))
            }
            r => {
                let close_after = matches!(r, Request::CloseSession);
                let auth = self.auth_of(conn);
                let req_id = self.new_req();
                self.waiting.insert(req_id, Waiting::Write { conn, xid, close_after });
                self.submit(req_id, session, WriteOp::Request { req: r, auth, xid });
                Slot::InFlight { req_id, sync: false }
            }
        }
    }

    /// A read-index context naming this incarnation's request.
    fn read_ctx(&self, req_id: u64) -> Vec<u8> {
        [self.boot.to_be_bytes(), req_id.to_be_bytes()].concat()
    }

    fn auth_of(&self, conn: u64) -> Vec<Id> {
        self.conns
            .get(&conn)
            .map(|c| c.auth.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A write or sync of `conn` got its reply: it leaves once everything ahead of it has.
    fn finish(&mut self, conn: u64, req_id: u64, answered: Slot) {
        debug_assert!(matches!(answered, Slot::Done(_) | Slot::Synced { .. }));
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(i) = c
            .queue
            .iter()
            .position(|(_, s)| matches!(s, Slot::InFlight { req_id: r, .. } if *r == req_id))
        else {
            return;
        };
        let was_sync = matches!(c.queue[i].1, Slot::InFlight { sync: true, .. });
        c.queue[i].1 = answered;
        if was_sync {
            c.syncs -= 1;
            self.start_held_writes(conn);
        }
        self.pump(conn);
    }

    /// Starts the writes that waited behind a sync now answered, up to the next sync.
    fn start_held_writes(&mut self, conn: u64) {
        let mut i = 0;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            let session = c.session;
            match c.queue.get_mut(i).map(|(_, s)| s) {
                None | Some(Slot::InFlight { sync: true, .. }) => return,
                Some(slot) if matches!(&*slot, Slot::Held { req, .. } if path_of(req) != Path::Local) => {
                    let placeholder = Slot::InFlight { req_id: 0, sync: false };
                    let Slot::Held { xid, req } = std::mem::replace(slot, placeholder) else {
                        unreachable!("matched Held")
                    };
                    let started = self.start(conn, session, xid, req);
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.queue[i].1 = started;
                    }
                }
                Some(_) => {}
            }
            i += 1;
        }
    }

    /// Sends the answered replies at the front of a connection's queue, running each local
    /// request as it reaches the front (so it sees exactly the session's earlier writes).
    fn pump(&mut self, conn: u64) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            let session = c.session;
            let Some((at, slot)) = c.queue.front() else { return };
            let at = *at;
            match slot {
                Slot::Done(_) => {
                    let Some((_, Slot::Done(f))) = c.queue.pop_front() else {
                        unreachable!("front is Done")
                    };
                    self.send_reply(conn, f);
                }
                Slot::Synced { .. } => {
                    let Some((_, Slot::Synced { xid, path })) = c.queue.pop_front() else {
                        unreachable!("front is Synced")
                    };
                    let f = self.frame(xid, ErrorCode::Ok, Response::Sync(SyncResponse { path }));
                    self.send_reply(conn, f);
                }
                Slot::Held { req, .. } if path_of(req) == Path::Local => {
                    let Some((_, Slot::Held { xid, req })) = c.queue.pop_front() else {
                        unreachable!("front is Held")
                    };
                    let f = self.execute_local(conn, session, xid, req);
                    self.send_reply(conn, f);
                }
                _ => return,
            }
            self.stats.latency(at.elapsed());
        }
    }

    /// Runs a request answered from this node's tree and watch tables; returns its reply.
    fn execute_local(&mut self, conn: u64, session: i64, xid: i32, req: Request) -> Vec<u8> {
        match req {
            Request::SetWatches(sw) => self.set_watches(xid, session, sw.into()),
            Request::SetWatches2(sw) => self.set_watches(xid, session, sw),
            Request::AddWatch(a) => match AddWatchMode::try_from(a.mode) {
                Ok(mode) => {
                    self.watches.add_persistent(&a.path, session, mode);
                    self.frame(xid, ErrorCode::Ok, Response::AddWatch(ErrorResponse { err: 0 }))
                }
                Err(_) => self.frame(xid, ErrorCode::BadArguments, Response::Empty),
            },
            Request::CheckWatches(r) => self.watch_query(xid, session, &r.path, r.r#type, false),
            Request::RemoveWatches(r) => self.watch_query(xid, session, &r.path, r.r#type, true),
            r => {
                let auth = self.conns.get(&conn).map(|c| c.auth.clone()).unwrap_or_default();
                let result = self.tree.read(session, &auth, &r);
                if result.is_ok() {
                    self.register_watch(session, &r);
                } else if let Request::Exists(e) = &r {
                    // An exists watch is left on a missing node, to fire on its creation.
                    if e.watch && result == Err(ErrorCode::NoNode) {
                        self.watches.watch_data(&e.path, session);
                    }
                }
                match result {
                    Ok(resp) => self.frame(xid, ErrorCode::Ok, resp),
                    Err(e) => self.frame(xid, e, Response::Empty),
                }
            }
        }
    }

    /// checkWatches (`remove` false) and removeWatches: NoWatcher if there is none. ZooKeeper
    /// 3.8 knows only the Children, Data and Any kinds here; any other type fails with
    /// MarshallingError and the connection stays open.
    fn watch_query(&mut self, xid: i32, session: i64, path: &str, ty: i32, remove: bool) -> Vec<u8> {
        let err = match WatcherType::try_from(ty) {
            // ZooKeeper 3.8.0's containsWatcher computes the path's parent eagerly and throws on
            // a non-empty path without a '/' (measured: "x" fails, "a/b", "" and "/a/" do not).
            Ok(_) if !remove && !path.is_empty() && !path.contains('/') => ErrorCode::MarshallingError,
            Ok(t @ (WatcherType::Children | WatcherType::Data | WatcherType::Any)) => {
                let found = if remove {
                    self.watches.remove(path, t, session)
                } else {
                    self.watches.contains(path, t, session)
                };
                if found {
                    ErrorCode::Ok
                } else {
                    ErrorCode::NoWatcher
                }
            }
            _ => ErrorCode::MarshallingError,
        };
        self.frame(xid, err, Response::Empty)
    }

    fn register_watch(&mut self, session: i64, r: &Request) {
        match r {
            Request::Exists(e) if e.watch => self.watches.watch_data(&e.path, session),
            Request::GetData(g) if g.watch => self.watches.watch_data(&g.path, session),
            Request::GetChildren(g) if g.watch => self.watches.watch_children(&g.path, session),
            Request::GetChildren2(g) if g.watch => self.watches.watch_children(&g.path, session),
            _ => {}
        }
    }

    fn set_watches(&mut self, xid: i32, session: i64, sw: SetWatches2) -> Vec<u8> {
        let rel = sw.relative_zxid;
        #[cfg(madsim)]
        super::observer::report(super::observer::Observation::Event {
            node: self.id,
            what: "set-watches",
        });
        // Re-register, and fire at once for changes the client missed (ZooKeeper's setWatches).
        let mut events = vec![];
        // Broken on purpose under "set-watches-skips-missed": a change made while the client
        // was away re-arms the watch instead of firing it.
        let missed = |zxid: i64| zxid > rel && !bug("set-watches-skips-missed");
        for p in sw.data_watches {
            match self.tree.node(&p) {
                None => events.push((EventType::NodeDeleted, p)),
                Some(n) if missed(n.stat.mzxid) => events.push((EventType::NodeDataChanged, p)),
                Some(_) => self.watches.watch_data(&p, session),
            }
        }
        for p in sw.exist_watches {
            match self.tree.node(&p) {
                Some(_) => events.push((EventType::NodeCreated, p)),
                None => self.watches.watch_data(&p, session),
            }
        }
        for p in sw.child_watches {
            match self.tree.node(&p) {
                None => events.push((EventType::NodeDeleted, p)),
                Some(n) if missed(n.stat.pzxid) => events.push((EventType::NodeChildrenChanged, p)),
                Some(_) => self.watches.watch_children(&p, session),
            }
        }
        for p in sw.persistent_watches {
            self.watches.add_persistent(&p, session, AddWatchMode::Persistent);
        }
        for p in sw.persistent_recursive_watches {
            self.watches
                .add_persistent(&p, session, AddWatchMode::PersistentRecursive);
        }
        for (e, p) in events {
            self.notify(session, e, &p);
        }
        self.frame(xid, ErrorCode::Ok, Response::Empty)
    }

    /// Whether a session's connection here has READ on a node with this ACL.
    fn may_read(&self, session: i64, acl: &[Acl]) -> bool {
        let Some(c) = self.session_conn.get(&session).and_then(|c| self.conns.get(c)) else {
            return false;
        };
        check_acl(acl, perms::READ, &c.auth).is_ok()
    }

    /// Sends a watch notification; its header zxid is -1, as ZooKeeper 3.8 sends it.
    fn notify(&mut self, session: i64, event: EventType, path: &str) {
        if bug("lost-watch-events") {
            // Broken on purpose: watch notifications are never sent.
            return;
        }
        let Some(&conn) = self.session_conn.get(&session) else {
            return;
        };
        if let Some(c) = self.conns.get(&conn) {
            let ev = WatcherEvent {
                r#type: event.code(),
                state: KeeperState::SyncConnected.code(),
                path: path.to_string(),
            };
            let f = ReplyFrame {
                header: ReplyHeader {
                    xid: xid::NOTIFICATION,
                    zxid: -1,
                    err: 0,
                },
                response: Response::Notification(ev),
            };
            let _ = c.out.send(Out::Frame(encode_frame(&f.to_bytes())));
        }
    }

    // ---- the write path --------------------------------------------------------------------

    /// Routes a write to the leader (here or remote), or queues it until one is known.
    fn submit(&mut self, req_id: u64, session: i64, op: WriteOp) {
        let origin = self.origin(req_id);
        if self.role == Role::Leader && self.leader_ready {
            self.propose(origin, session, op);
        } else if let Some(l) = self.leader.filter(|&l| l != self.id) {
            self.peers.send(l, &PeerMsg::Forward { origin, session, op });
        } else {
            self.queued.push_back((req_id, session, op));
        }
    }

    /// This incarnation's request `req_id`.
    fn origin(&self, req_id: u64) -> Origin {
        Origin {
            node: self.id,
            boot: self.boot,
            req_id,
        }
    }

    /// Whether a proposal answers a request of this incarnation.
    fn mine(&self, o: &Origin) -> bool {
        o.node == self.id && o.boot == self.boot
    }

    /// Leader: prepare and propose.
    /// The next zxid of this leader's term (term << 32 | counter, as ZooKeeper's epoch).
    fn next_zxid(&mut self) -> i64 {
        self.zxid_counter += 1;
        ((self.raft.term() as i64) << 32) | self.zxid_counter
    }

    fn propose(&mut self, origin: Origin, session: i64, op: WriteOp) {
        let zxid = self.next_zxid();
        let entry = self.prepare(zxid, session, &op);
        let cxid = match op {
            WriteOp::Request { xid, .. } => xid,
            _ => 0,
        };
        let data = bincode::serde::encode_to_vec(Proposal { origin, cxid, entry }, bincode::config::standard())
            .expect("proposals encode");
        if self.raft.propose(data).is_err() {
            // Lost leadership between checks: forget prepared state, retry via the new leader.
            self.pending = Pending::new();
            self.leader_ready = false;
            if self.mine(&origin) {
                self.queued.push_back((origin.req_id, session, op));
            }
        }
    }

    /// Prepares `op` as the transaction with `zxid` (ZooKeeper's PrepRequestProcessor).
    fn prepare(&mut self, zxid: i64, session: i64, op: &WriteOp) -> TxnEntry {
        let now = self.now();
        let cfg = TreeConfig::default();
        let auth: AuthIds = match op {
            WriteOp::Request { auth, .. } => auth.iter().cloned().collect(),
            _ => AuthIds::new(),
        };
        let ctx = PrepareCtx {
            session_id: session,
            auth: &auth,
            zxid,
            time: now,
            config: cfg,
        };
        match op {
            WriteOp::Request { req, .. } => self.tree.prepare(&mut self.pending, &ctx, req),
            WriteOp::CreateSession { timeout } => self.tree.prepare_create_session(&mut self.pending, &ctx, *timeout),
            WriteOp::Expire => self.tree.prepare(&mut self.pending, &ctx, &Request::CloseSession),
        }
    }

    fn on_peer(&mut self, m: PeerMsg) {
        match m {
            PeerMsg::Hello { .. } => {}
            PeerMsg::Raft(msg) => self.raft.step(msg),
            PeerMsg::Forward { origin, session, op } => {
                if self.role == Role::Leader && self.leader_ready {
                    self.propose(origin, session, op);
                } else if let Some(l) = self.leader.filter(|&l| l != self.id) {
                    self.peers.send(l, &PeerMsg::Forward { origin, session, op });
                }
                // Otherwise dropped: the origin closes the client's connection on the
                // leader change and the client retries.
            }
            PeerMsg::Touch { sessions } => {
                if self.role == Role::Leader {
                    let now = self.mono();
                    for s in sessions {
                        self.tracker.touch(s, now);
                    }
                }
            }
        }
    }

    fn on_tick(&mut self) {
        self.raft.tick();
        self.check_read_only();
        let (now, mono) = (self.now(), self.mono());
        if self.role == Role::Leader && self.leader_ready && mono - self.last_reap >= self.cfg.container_check_ms as i64
        {
            // ZooKeeper's ContainerManager: empty containers and expired TTL nodes go (the
            // interval on the monotonic clock, TTLs against wall-clock mtimes as ZooKeeper).
            self.last_reap = mono;
            for path in self.tree.reap_candidates(now) {
                let req_id = self.new_req();
                self.propose(
                    self.origin(req_id),
                    0,
                    WriteOp::Request {
                        req: Request::DeleteContainer(path),
                        auth: vec![],
                        xid: 0,
                    },
                );
            }
        }
        if self.role == Role::Leader && self.leader_ready && !bug("no-expiry") {
            for s in self.tracker.expired(mono) {
                if bug("local-expiry") {
                    // Broken on purpose: the leader decides the expiry on its own and applies
                    // it to its tree without going through the log; followers never learn.
                    let zxid = self.next_zxid();
                    let entry = self.prepare(zxid, s, &WriteOp::Expire);
                    self.pending = Pending::new();
                    let _ = self.tree.apply(&entry);
                    self.tracker.remove(s);
                    continue;
                }
                if self.expiring.insert(s) {
                    #[cfg(madsim)]
                    super::observer::report(super::observer::Observation::Event {
                        node: self.id,
                        what: "session-expiry",
                    });
                    let req_id = self.new_req();
                    self.propose(self.origin(req_id), s, WriteOp::Expire);
                }
            }
        } else if let Some(l) = self.leader.filter(|&l| l != self.id) {
            // Local connections keep their sessions alive on the leader.
            let mut sessions: BTreeSet<i64> = std::mem::take(&mut self.touched);
            sessions.extend(self.session_conn.keys());
            self.peers.send(
                l,
                &PeerMsg::Touch {
                    sessions: sessions.into_iter().collect(),
                },
            );
        }
        // Syncs that found no leader retry.
        let retry: Vec<u64> = self
            .syncs_after_apply
            .iter()
            .filter(|(i, _)| *i == u64::MAX)
            .map(|(_, r)| *r)
            .collect();
        if !retry.is_empty() && self.leader.is_some() {
            self.syncs_after_apply.retain(|(i, _)| *i != u64::MAX);
            for r in retry {
                if self.raft.read_index(self.read_ctx(r)).is_err() {
                    self.syncs_after_apply.push((u64::MAX, r));
                }
            }
        }
    }

    /// Reacts to role and leader changes after any input.
    fn observe_role(&mut self) {
        let (role, leader) = (self.raft.role(), self.raft.leader());
        // Every term in which this node acts as leader is reported, also one it moved into
        // without stepping down (only a broken Raft does that): election safety is per term.
        #[cfg(madsim)]
        if role == Role::Leader && self.raft.term() != self.reported_leader_term {
            self.reported_leader_term = self.raft.term();
            super::observer::report(super::observer::Observation::Leader {
                node: self.id,
                term: self.raft.term(),
            });
        }
        if role == self.role && leader == self.leader {
            return;
        }
        let was_leader = self.role == Role::Leader;
        let leader_changed = leader != self.leader;
        tracing::info!(node = self.id, term = self.raft.term(), ?role, ?leader, "role changed");
        self.role = role;
        self.leader = leader;
        if leader.is_some() {
            self.leaderless_since = None;
            if self.read_only {
                self.leave_read_only();
            }
        }
        if role == Role::Leader && !was_leader {
            self.term_start = self.raft.last_index();
            self.leader_ready = false;
            self.pending = Pending::new();
            self.zxid_counter = 0;
            self.expiring.clear();
            let now = self.mono();
            self.tracker.reset(self.tree.sessions(), now);
        }
        if was_leader && role != Role::Leader {
            self.leader_ready = false;
            self.pending = Pending::new();
        }
        if leader_changed && leader.is_some() {
            // Writes in flight may never commit under the new leader: their clients see a
            // connection loss and retry, as with ZooKeeper.
            let stale: Vec<u64> = self
                .waiting
                .iter()
                .filter(|(_, w)| matches!(w, Waiting::Write { .. } | Waiting::Connect { .. }))
                .map(|(k, _)| *k)
                .collect();
            let queued: BTreeSet<u64> = self.queued.iter().map(|(r, _, _)| *r).collect();
            for k in stale {
                if queued.contains(&k) {
                    continue;
                }
                match self.waiting.remove(&k) {
                    Some(Waiting::Write { conn, .. }) => self.close_conn(conn),
                    Some(Waiting::Connect { conn, reply, .. }) => {
                        let _ = reply.send(Handshake::Expired);
                        self.conns.remove(&conn);
                    }
                    _ => {}
                }
            }
            self.flush_queue();
        }
    }

    fn flush_queue(&mut self) {
        if self.leader.is_none() || (self.role == Role::Leader && !self.leader_ready) {
            return;
        }
        for (req_id, session, op) in std::mem::take(&mut self.queued) {
            self.submit(req_id, session, op);
        }
    }

    fn close_conn(&mut self, conn: u64) {
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.out.send(Out::Close);
        }
    }

    // ---- Ready: persist, send, apply --------------------------------------------------------

    /// Takes every Ready: hands its persistence to the WAL stage, sends a leader's replication
    /// at once and holds every other message until the Ready is durable, applies what is
    /// committed.
    fn process_ready(&mut self) -> Result<(), NodeError> {
        while self.raft.has_ready() {
            let rd = self.raft.ready();
            if let Some(s) = &rd.snapshot {
                self.tree = snapshot::decode(&s.data)?;
                self.pending = Pending::new();
                self.applied_zxid.store(self.tree.last_zxid(), Ordering::Release);
                // Installing a snapshot skips the transactions it covers, and with them their
                // effects on this server's clients: sessions closed meanwhile, watches that
                // should have fired. As a ZooKeeper follower that syncs from a snapshot, serve
                // none of the old connections: clients reconnect, re-send their watches
                // (changes they missed fire at once) or learn that their session expired.
                let conns: Vec<u64> = self.conns.keys().copied().collect();
                for conn in conns {
                    self.close_conn(conn);
                }
                #[cfg(madsim)]
                {
                    self.snapshots_seen += 1;
                    super::observer::report(super::observer::Observation::Snapshot {
                        node: self.id,
                        index: s.meta.index,
                        installed: true,
                    });
                    // Entries kept after the snapshot now follow its last entry.
                    if let Some(term) = self.raft.term_at(s.meta.index + 1) {
                        super::observer::report(super::observer::Observation::Entries {
                            node: self.id,
                            first: s.meta.index + 1,
                            prev_term: s.meta.term,
                            terms: vec![term],
                        });
                    }
                }
            }
            #[cfg(madsim)]
            if let Some(first) = rd.entries.first() {
                // The in-memory log holds these entries now, so it names their predecessor.
                let prev_term = match &rd.snapshot {
                    Some(s) if s.meta.index + 1 == first.index => Some(s.meta.term),
                    _ => self.raft.term_at(first.index - 1),
                };
                if let Some(prev_term) = prev_term {
                    super::observer::report(super::observer::Observation::Entries {
                        node: self.id,
                        first: first.index,
                        prev_term,
                        terms: rd.entries.iter().map(|e| e.term).collect(),
                    });
                }
            }
            let mut held = vec![];
            for m in rd.messages {
                // Broken on purpose under "ack-before-fsync": everything leaves at once, so a
                // follower acknowledges appends (and grants votes) before they are durable;
                // under "vote-before-fsync" only votes do (a crash forgets the vote, and the
                // node votes again in the same term).
                let early_vote = matches!(m.body, raft::Body::VoteResponse { .. }) && bug("vote-before-fsync");
                if m.may_precede_persistence() || early_vote || bug("ack-before-fsync") {
                    self.send_raft(m);
                } else {
                    held.push(m);
                }
            }
            if rd.snapshot.is_some() || !rd.entries.is_empty() || rd.hard_state.is_some() {
                self.next_ready += 1;
                let id = self.next_ready;
                self.unpersisted.push_back(Unpersisted {
                    id,
                    last: rd.entries.last().map(|e| (e.index, e.term)),
                    held,
                });
                self.wal_job(Job::Ready {
                    id,
                    snapshot: rd.snapshot,
                    entries: rd.entries,
                    hard_state: rd.hard_state,
                });
            } else if let Some(u) = self.unpersisted.back_mut() {
                // Messages may speak for state an earlier Ready still persists.
                u.held.extend(held);
            } else {
                for m in held {
                    self.send_raft(m);
                }
            }
            for e in &rd.committed {
                self.apply(e);
            }
            if let Some(last) = rd.committed.last() {
                self.raft.on_applied(last.index);
            }
            for rs in &rd.read_states {
                // An answer to a previous incarnation's read index is not ours to use.
                if rs.ctx.len() == 16 && rs.ctx[..8] == self.boot.to_be_bytes() {
                    let req_id = u64::from_be_bytes(rs.ctx[8..].try_into().expect("8 bytes"));
                    self.syncs_after_apply.push((rs.index, req_id));
                }
            }
            self.finish_syncs();
            self.observe_role();
            if self.role == Role::Leader && !self.leader_ready && self.raft.applied() >= self.term_start {
                self.leader_ready = true;
                self.flush_queue();
            }
            self.maybe_compact();
        }
        #[cfg(madsim)]
        self.report_live();
        Ok(())
    }

    /// Tells the observer this node's protocol state (for the state-aware nemesis).
    #[cfg(madsim)]
    fn report_live(&mut self) {
        let hs = self.raft.hard_state();
        if self.raft.role() == Role::Leader && hs.commit > self.reported_commit {
            super::observer::report(super::observer::Observation::LeaderCommit {
                node: self.id,
                term: hs.term,
                index: hs.commit,
                entry_term: self.raft.term_at(hs.commit).unwrap_or(0),
            });
        }
        self.reported_commit = hs.commit;
        let last_index = self.raft.last_index();
        super::observer::report_live(
            self.id,
            super::observer::Live {
                role: self.raft.role(),
                term: hs.term,
                vote: hs.vote,
                last_index,
                last_term: self.raft.term_at(last_index).unwrap_or(0),
                commit: hs.commit,
                snapshots: self.snapshots_seen,
                snapshot_index: self.raft.snapshot_meta().index,
            },
        );
    }

    /// Sends a Raft message; a granted vote is reported to the observer as it leaves (one
    /// vote per term per node, across restarts, is a checked invariant).
    fn send_raft(&mut self, m: raft::Message) {
        #[cfg(madsim)]
        if let raft::Body::VoteResponse {
            granted: true,
            pre_vote: false,
        } = m.body
        {
            super::observer::report(super::observer::Observation::Vote {
                node: self.id,
                term: m.term,
                candidate: m.to,
            });
        }
        #[cfg(madsim)]
        if let raft::Body::VoteResponse {
            granted: false,
            pre_vote,
        } = m.body
        {
            super::observer::report(super::observer::Observation::Event {
                node: self.id,
                what: if pre_vote { "pre-vote-rejected" } else { "vote-rejected" },
            });
        }
        self.peers.send(m.to, &PeerMsg::Raft(m));
    }

    fn wal_job(&mut self, job: Job) {
        // The stage only goes away after reporting a storage error, which stops this loop.
        let _ = self.wal.as_ref().expect("run started the WAL stage").send(job);
    }

    /// The WAL stage made the Readys up to `upto` durable: Raft learns it, held messages leave.
    fn on_persisted(&mut self, upto: Option<u64>) {
        let Some(upto) = upto else { return };
        while self.unpersisted.front().is_some_and(|u| u.id <= upto) {
            let u = self.unpersisted.pop_front().expect("checked");
            if let Some((index, term)) = u.last {
                self.raft.on_persisted(index, term);
            }
            for m in u.held {
                self.send_raft(m);
            }
        }
    }

    fn finish_syncs(&mut self) {
        let applied = self.raft.applied();
        let done: Vec<u64> = self
            .syncs_after_apply
            .iter()
            .filter(|(i, _)| *i != u64::MAX && *i <= applied)
            .map(|(_, r)| *r)
            .collect();
        self.syncs_after_apply.retain(|(i, _)| *i == u64::MAX || *i > applied);
        for r in done {
            if let Some(Waiting::Sync { conn, xid, path }) = self.waiting.remove(&r) {
                self.finish(conn, r, Slot::Synced { xid, path });
            }
        }
    }

    fn apply(&mut self, e: &raft::Entry) {
        if e.kind != EntryKind::Normal {
            return;
        }
        let Ok((p, _)) = bincode::serde::decode_from_slice::<Proposal, _>(&e.data, bincode::config::standard()) else {
            panic!("committed entry {} does not decode: the log is corrupt", e.index);
        };
        if p.entry.zxid <= self.tree.last_zxid() {
            return;
        }
        let (result, triggers) = self.tree.apply(&p.entry);
        #[cfg(madsim)]
        {
            let snap = snapshot::encode(&self.tree);
            let tree = crc32c::crc32c(&snap) as u64 | ((snap.len() as u64) << 32);
            super::observer::report(super::observer::Observation::Applied {
                node: self.id,
                index: e.index,
                term: e.term,
                tree,
            });
            super::observer::report(super::observer::Observation::Committed {
                node: self.id,
                zxid: p.entry.zxid,
                session: p.entry.session_id,
                cxid: p.cxid,
                kind: match (&p.entry.txn, p.entry.session_id) {
                    (Txn::CreateSession { .. }, _) => super::observer::Committed::CreateSession,
                    (Txn::CloseSession { .. }, _) if p.cxid == 0 => super::observer::Committed::Expire,
                    (Txn::Delete { path }, 0) => super::observer::Committed::Reap(path.clone()),
                    (_, 0) => super::observer::Committed::ReapFailed,
                    _ => super::observer::Committed::Request,
                },
            });
        }
        self.pending.applied(p.entry.zxid);
        self.applied_zxid.store(self.tree.last_zxid(), Ordering::Release);
        self.stats.applied += 1;
        // Watches fire before a closing session's connection goes: ZooKeeper tells a session
        // of its own ephemerals' deletion before it answers closeSession.
        for t in &triggers {
            for (s, ev, path) in self.watches.fire(t) {
                // The watch is used up either way; a session that may not read the node
                // is not told (ZooKeeper 3.8 checks READ per watcher when it notifies).
                if self.may_read(s, &t.acl) {
                    self.notify(s, ev, &path);
                }
            }
        }
        let session = p.entry.session_id;
        match (&p.entry.txn, &result) {
            (Txn::CreateSession { timeout }, _) => {
                let now = self.mono();
                self.tracker.add(session, *timeout, now);
            }
            (Txn::CloseSession { .. }, _) => {
                self.tracker.remove(session);
                self.expiring.remove(&session);
                // A session closed elsewhere (expiry) ends its connection here too.
                if let Some(conn) = self.session_conn.remove(&session) {
                    self.watches.drop_session(session);
                    if !self.mine(&p.origin)
                        || !matches!(self.waiting.get(&p.origin.req_id), Some(Waiting::Write { .. }))
                    {
                        self.close_conn(conn);
                    }
                }
            }
            _ => {}
        }
        if !self.mine(&p.origin) {
            return;
        }
        let req_id = p.origin.req_id;
        match self.waiting.remove(&req_id) {
            Some(Waiting::Write { conn, xid, close_after }) => {
                let (err, resp) = result.reply();
                let f = self.frame(xid, err, resp);
                self.finish(conn, req_id, Slot::Done(f));
                if close_after {
                    self.close_conn(conn);
                }
            }
            Some(Waiting::Connect {
                conn,
                session,
                reply,
                read_only,
            }) => {
                let timeout = match &p.entry.txn {
                    Txn::CreateSession { timeout } => *timeout,
                    _ => 0,
                };
                if matches!(result, TxnResult::SessionCreated) {
                    self.session_conn.insert(session, conn);
                    let _ = reply.send(Handshake::Ok(ConnectResponse {
                        protocol_version: 0,
                        time_out: timeout,
                        session_id: session,
                        passwd: password(session),
                        read_only: read_only.map(|_| false),
                    }));
                } else {
                    let _ = reply.send(Handshake::Expired);
                }
            }
            Some(other) => {
                self.waiting.insert(req_id, other);
            }
            None => {}
        }
    }

    fn maybe_compact(&mut self) {
        let applied = self.raft.applied();
        // At least `snap_count` entries, and at least as many as the tree has nodes: writing
        // a snapshot then costs a bounded amount per entry however large the tree grows
        // (a fixed interval makes loading a big tree quadratic).
        let due = self.raft.snapshot_meta().index + self.cfg.snap_count.max(self.tree.node_count() as u64);
        if self.snapshotting || applied < due {
            return;
        }
        if let Ok(meta) = self.raft.snapshot_meta_at(applied) {
            self.snapshotting = true;
            // A copy is a consistent view at `applied`; the WAL stage encodes and writes it.
            self.wal_job(Job::Snapshot {
                meta,
                tree: Box::new(self.tree.clone()),
            });
        }
    }

    // ---- four-letter words ------------------------------------------------------------------

    fn mode(&self) -> &'static str {
        if self.read_only {
            "read-only"
        } else if self.cfg.peers.is_empty() {
            "standalone"
        } else if self.role == Role::Leader {
            "leader"
        } else if self.raft.conf().learners.contains(&self.id) {
            "observer"
        } else {
            "follower"
        }
    }

    /// Requests of all connections waiting for their replies.
    fn outstanding(&self) -> usize {
        self.conns.values().map(|c| c.queue.len()).sum()
    }

    /// The `srvr` lines after the version (also the end of `stat`).
    fn server_summary(&self) -> String {
        let (min, avg, max) = self.stats.latency_line();
        format!(
            "Latency min/avg/max: {}/{:.4}/{}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: 0x{:x}\nMode: {}\nNode count: {}\n",
            min as u64,
            avg,
            max as u64,
            self.stats.received,
            self.stats.sent,
            self.conns.len(),
            self.outstanding(),
            self.tree.last_zxid(),
            self.mode(),
            self.tree.node_count()
        )
    }

    /// One `cons`/`stat` line per connection, in ZooKeeper's format.
    fn client_lines(&self) -> String {
        self.conns
            .iter()
            .map(|(id, c)| {
                format!(
                    " /{}[{}](queued={},recved={},sent={},sid=0x{:x})\n",
                    c.ip,
                    id,
                    c.queue.len(),
                    c.received,
                    c.sent,
                    c.session
                )
            })
            .collect()
    }

    fn four_letter(&self, cmd: &str) -> String {
        match cmd {
            "ruok" => "imok".into(),
            "isro" => if self.read_only { "ro" } else { "rw" }.into(),
            "srvr" => format!("Zookeeper version: {VERSION}\n{}", self.server_summary()),
            "stat" => format!(
                "Zookeeper version: {VERSION}\nClients:\n{}\n{}",
                self.client_lines(),
                self.server_summary()
            ),
            "mntr" => {
                let (min, avg, max) = self.stats.latency_line();
                let mut m = vec![
                    ("zk_version", VERSION.to_string()),
                    ("zk_server_state", self.mode().to_string()),
                    ("zk_avg_latency", format!("{avg:.4}")),
                    ("zk_max_latency", format!("{}", max as u64)),
                    ("zk_min_latency", format!("{}", min as u64)),
                    ("zk_packets_received", self.stats.received.to_string()),
                    ("zk_packets_sent", self.stats.sent.to_string()),
                    ("zk_num_alive_connections", self.conns.len().to_string()),
                    ("zk_outstanding_requests", self.outstanding().to_string()),
                    ("zk_znode_count", self.tree.node_count().to_string()),
                    ("zk_watch_count", self.watches.count().to_string()),
                    (
                        "zk_ephemerals_count",
                        self.tree
                            .sessions()
                            .keys()
                            .map(|s| self.tree.ephemerals_of(*s).count())
                            .sum::<usize>()
                            .to_string(),
                    ),
                    ("zk_global_sessions", self.tree.sessions().len().to_string()),
                    ("zk_uptime", self.mono_start.elapsed().as_millis().to_string()),
                ];
                if self.role == Role::Leader && !self.cfg.peers.is_empty() {
                    m.push(("zk_followers", (self.cfg.peers.len() - 1).to_string()));
                }
                m.extend([
                    ("zk_raft_term", self.raft.term().to_string()),
                    ("zk_raft_commit_index", self.raft.committed().to_string()),
                    ("zk_raft_applied_index", self.raft.applied().to_string()),
                ]);
                m.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect()
            }
            "conf" => format!(
                "clientPort={}\n{}dataDir={}\ndataLogDir={}\ntickTime={}\nmaxClientCnxns={}\nminSessionTimeout={}\nmaxSessionTimeout={}\nserverId={}\n",
                self.cfg.client_port,
                self.cfg
                    .tls
                    .as_ref()
                    .map(|t| format!("secureClientPort={}\n", t.port))
                    .unwrap_or_default(),
                self.cfg.data_dir,
                self.cfg.log_dir(),
                self.cfg.tick_time_ms,
                self.cfg.max_client_cnxns,
                self.cfg.min_session_timeout_ms,
                self.cfg.max_session_timeout_ms,
                self.id
            ),
            "envi" => format!(
                "Environment:\nzookeeper.version={VERSION}\nzraft.version={}\nos.name={}\nos.arch={}\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
            "cons" => self.client_lines(),
            "wchs" => format!("{} connections watching paths\nTotal watches:{}\n", self.session_conn.len(), self.watches.count()),
            "dump" => {
                let mut s = String::from("Sessions with Ephemerals:\n");
                for sess in self.tree.sessions().keys() {
                    let es: Vec<&String> = self.tree.ephemerals_of(*sess).collect();
                    if !es.is_empty() {
                        s.push_str(&format!("0x{sess:x}:\n"));
                        for e in es {
                            s.push_str(&format!("\t{e}\n"));
                        }
                    }
                }
                s
            }
            _ => String::new(),
        }
    }
}

/// A connection's identity before any auth packet: its client's address (ZooKeeper's ip
/// scheme).
fn ip_auth(ip: &str) -> AuthIds {
    [Id {
        scheme: "ip".into(),
        id: ip.to_string(),
    }]
    .into_iter()
    .collect()
}

/// The answer to an auth packet: ZooKeeper's connection thread writes it with zxid 0, not the
/// last processed zxid (it is answered outside the request pipeline).
fn auth_reply(err: ErrorCode) -> Vec<u8> {
    let f = ReplyFrame {
        header: ReplyHeader {
            xid: xid::AUTH,
            zxid: 0,
            err: err.code(),
        },
        response: Response::Empty,
    };
    encode_frame(&f.to_bytes())
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
