//! Client workloads (madsim only). Every client is a madsim node using zraft's own jute client
//! over simulated TCP; it records each operation into the shared history as invoke → ok / fail /
//! info with simulated times, its session and the zxid of the reply. Register clients mix
//! reads (with watches), writes, compare-and-sets and sequential/ephemeral creates; lock
//! clients run the ephemeral-sequential lock recipe.

pub mod lock;
pub mod ops;
pub mod register;
pub mod sequential;

use crate::config::RunConfig;
use crate::history::{Op, Outcome, RegOp, Wire, WireRec};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zraft::client::{Client, ClientError};
use zraft::jute::{ErrorCode, EventType, ReplyFrame, Request, Response, SetWatches};

/// How long a client waits for any reply before calling the outcome unknown.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Session timeout clients ask for (milliseconds).
pub const SESSION_TIMEOUT_MS: i32 = 4000;

/// Appends one client's wire records — every request, reply and watch event, whole — to the
/// run's log, stamped with simulated time: what the model checker replays.
#[derive(Clone)]
pub struct Tap {
    client: u32,
    start: madsim::time::Instant,
    log: Arc<Mutex<Vec<WireRec>>>,
    /// Connections this client opened so far (shared by clones).
    conn: Arc<std::sync::atomic::AtomicU64>,
}

impl Tap {
    /// A tap for `client`, timing from `start`.
    pub fn new(client: u32, start: madsim::time::Instant, log: Arc<Mutex<Vec<WireRec>>>) -> Self {
        Tap {
            client,
            start,
            log,
            conn: Arc::default(),
        }
    }

    fn push(&self, wire: Wire) {
        let rec = WireRec {
            client: self.client,
            conn: self.conn.load(std::sync::atomic::Ordering::Relaxed),
            at: self.start.elapsed().as_nanos() as u64,
            wire,
        };
        self.log.lock().expect("wire lock").push(rec);
    }

    /// A new connection to `server` holding `session`.
    pub fn connected(&self, server: u64, session: i64) {
        self.conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.push(Wire::Connected { server, session });
    }

    /// A request goes out with `xid`.
    pub fn sent(&self, xid: i32, request: &Request) {
        self.push(Wire::Sent {
            xid,
            request: request.clone(),
        });
    }

    /// A reply came in.
    pub fn replied(&self, f: &ReplyFrame) {
        self.push(Wire::Replied {
            xid: f.header.xid,
            err: f.header.err,
            zxid: f.header.zxid,
            response: f.response.clone(),
        });
    }

    /// A watch notification came in.
    pub fn event(&self, ev: &zraft::jute::WatcherEvent) {
        self.push(Wire::Event {
            r#type: ev.r#type,
            path: ev.path.clone(),
        });
    }

    /// Connects a harness client (setup, probes) to `server`, recording it.
    pub async fn connect(&self, server: u64, timeout_ms: i32) -> Result<Client, ClientError> {
        let c = Client::connect(&format!("10.0.0.{server}:2181"), timeout_ms, None, 0).await?;
        self.connected(server, c.session_id());
        Ok(c)
    }

    /// A harness client's request, recorded; a non-zero error code is an `Err`.
    pub async fn ok(&self, c: &mut Client, request: Request, timeout: Duration) -> Result<Response, ClientError> {
        self.sent(c.next_xid(), &request);
        let f = c.call(request, timeout).await?;
        self.replied(&f);
        match ErrorCode::try_from(f.header.err) {
            Ok(ErrorCode::Ok) => Ok(f.response),
            Ok(e) => Err(ClientError::Server(e)),
            Err(_) => Err(ClientError::Protocol(format!("error code {}", f.header.err))),
        }
    }
}

/// Appends one client's operations to the shared history, stamped with simulated time.
#[derive(Clone)]
pub struct Recorder {
    pub client: u32,
    start: madsim::time::Instant,
    history: Arc<Mutex<Vec<Op>>>,
    /// The next `Op::seq` of this client (shared by its clones).
    seq: Arc<std::sync::atomic::AtomicU64>,
    /// The client's wire records.
    pub tap: Tap,
}

impl Recorder {
    /// A recorder for `client`, timing from `start`, with its wire records going to `tap`.
    pub fn new(client: u32, start: madsim::time::Instant, history: Arc<Mutex<Vec<Op>>>, tap: Tap) -> Self {
        Recorder {
            client,
            start,
            history,
            seq: Arc::default(),
            tap,
        }
    }

    /// Simulated nanoseconds since the workload started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Whether the workload's time is up.
    pub fn done(&self, secs: u64) -> bool {
        self.start.elapsed() >= Duration::from_secs(secs)
    }

    /// Records an operation invoked at `invoke` that ended with `outcome` now (`Info`: never).
    /// A client records its operations in the order it sent them.
    pub fn push(&self, session: i64, key: &str, op: RegOp, invoke: u64, outcome: Outcome, zxid: i64) {
        let complete = (outcome != Outcome::Info).then(|| self.now());
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.history.lock().expect("history lock").push(Op {
            client: self.client,
            session,
            key: key.into(),
            op,
            invoke,
            complete,
            outcome,
            zxid,
            seq,
        });
    }

    /// Records something the client observed (a new connection, a watch event) at this instant.
    pub fn observed(&self, session: i64, key: &str, op: RegOp) {
        let t = self.now();
        self.push(session, key, op, t, Outcome::Ok(None), 0);
    }
}

/// A client's connection to the ensemble: it prefers a home server (resuming its session there
/// after a connection loss), sometimes moves, and sometimes vanishes without closing its session.
pub struct Conn {
    nodes: u64,
    home: u64,
    client: Option<Client>,
    session: Option<i64>,
    last_zxid: i64,
    /// Connections opened so far (watches belong to one connection).
    epoch: u64,
    /// Whether the current connection resumed the previous connection's session.
    resumed: bool,
    /// Keys with a pending data watch (set by this client's reads, spent when their event is
    /// recorded); re-sent on a connection that resumes the session.
    watched: std::collections::BTreeSet<String>,
    /// Notifications taken from this connection's queue (recorded) so far.
    events_taken: u64,
    /// Paths whose watch events were recorded since `take_fired`.
    fired: Vec<String>,
    /// The session's next xid (it continues across the session's connections).
    next_xid: i32,
    /// Watches the every-opcode workload believes pending, re-sent with the data watches.
    ops_watches: OpsWatches,
    rec: Recorder,
}

/// Pending watches of the every-opcode workload, by kind (setWatches2's lists).
#[derive(Default)]
struct OpsWatches {
    data: std::collections::BTreeSet<String>,
    exist: std::collections::BTreeSet<String>,
    child: std::collections::BTreeSet<String>,
    persistent: std::collections::BTreeSet<String>,
    recursive: std::collections::BTreeSet<String>,
}

impl OpsWatches {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.exist.is_empty()
            && self.child.is_empty()
            && self.persistent.is_empty()
            && self.recursive.is_empty()
    }

    /// A notification spends the one-shot watches it fires.
    fn fired(&mut self, ty: i32, p: &str) {
        match EventType::try_from(ty) {
            Ok(EventType::NodeChildrenChanged) => {
                self.child.remove(p);
            }
            Ok(EventType::NodeDeleted) => {
                self.child.remove(p);
                self.data.remove(p);
                self.exist.remove(p);
            }
            _ => {
                self.data.remove(p);
                self.exist.remove(p);
            }
        }
    }
}

impl Conn {
    /// A connection for the recorder's client, to an ensemble of `nodes` servers.
    pub fn new(rec: Recorder, nodes: u64) -> Self {
        Conn {
            nodes,
            home: (rec.client as u64 % nodes) + 1,
            client: None,
            session: None,
            last_zxid: 0,
            epoch: 0,
            resumed: false,
            watched: Default::default(),
            events_taken: 0,
            fired: vec![],
            next_xid: 1,
            ops_watches: OpsWatches::default(),
            rec,
        }
    }

    /// The connected client, connecting (and recording it) first if needed; None if that failed.
    pub async fn get(&mut self, rng: &mut ChaCha8Rng) -> Option<&mut Client> {
        if self.client.is_none() {
            let node = if rng.gen_bool(0.7) {
                self.home
            } else {
                rng.gen_range(1..=self.nodes)
            };
            let resume = self.session.map(|s| (s, zraft::session::password(s)));
            let addr = format!("10.0.0.{node}:2181");
            match Client::connect(&addr, SESSION_TIMEOUT_MS, resume, self.last_zxid).await {
                Ok(mut c) => {
                    self.resumed = self.session == Some(c.session_id());
                    self.next_xid = if self.resumed { self.next_xid } else { 1 };
                    c.continue_xids(self.next_xid);
                    self.rec.tap.connected(node, c.session_id());
                    self.session = Some(c.session_id());
                    self.epoch += 1;
                    self.events_taken = 0;
                    self.rec.observed(c.session_id(), "", RegOp::Connected);
                    self.client = Some(c);
                    // Like kazoo and the Java client, re-send the watches first thing on a
                    // connection that resumed the session, relative to the last zxid seen on
                    // the old one (mostly: sometimes this client forgets them, as one that does
                    // not re-send would). A new session starts without watches.
                    if self.resumed && !(self.watched.is_empty() && self.ops_watches.is_empty()) && rng.gen_bool(0.8) {
                        self.set_watches().await;
                    } else {
                        self.watched.clear();
                        self.ops_watches = OpsWatches::default();
                    }
                }
                Err(ClientError::SessionExpired) => {
                    self.session = None;
                    return None;
                }
                Err(_) => {
                    madsim::time::sleep(Duration::from_millis(200)).await;
                    return None;
                }
            }
        }
        self.client.as_mut()
    }

    /// Re-sends the pending data watches and records it. If the reply is lost they stay
    /// pending here: the next connection re-sends them.
    async fn set_watches(&mut self) {
        let keys: Vec<String> = self.watched.iter().cloned().collect();
        let invoke = self.rec.now();
        let w = &self.ops_watches;
        let list = |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        let data_watches: Vec<String> = self.watched.union(&w.data).cloned().collect();
        // As the Java client: setWatches2 only when there are persistent watches to re-send.
        let req = if w.persistent.is_empty() && w.recursive.is_empty() {
            Request::SetWatches(SetWatches {
                relative_zxid: self.last_zxid,
                data_watches,
                exist_watches: list(&w.exist),
                child_watches: list(&w.child),
            })
        } else {
            Request::SetWatches2(zraft::jute::SetWatches2 {
                relative_zxid: self.last_zxid,
                data_watches,
                exist_watches: list(&w.exist),
                child_watches: list(&w.child),
                persistent_watches: list(&w.persistent),
                persistent_recursive_watches: list(&w.recursive),
            })
        };
        // Changes missed while away fire before the reply (`call` records them, and their
        // watches are spent).
        let (r, zxid) = self.call(req).await;
        let outcome = match &r {
            Ok(_) => Outcome::Ok(None),
            Err(ClientError::Server(_)) => Outcome::Fail,
            Err(_) => Outcome::Info,
        };
        self.rec
            .push(self.session(), "", RegOp::SetWatches(keys), invoke, outcome, zxid);
    }

    /// Whether a data watch on `key` is pending.
    pub fn watching(&self, key: &str) -> bool {
        self.watched.contains(key)
    }

    /// Notes a data watch left on `key` by a successful read.
    pub fn watch(&mut self, key: &str) {
        self.watched.insert(key.to_string());
    }

    /// Notes the watch an every-opcode request left or removed, given its result.
    pub fn note_watch(&mut self, q: &Request, r: &Result<Response, ClientError>) {
        let ok = r.is_ok();
        let no_node = matches!(r, Err(ClientError::Server(ErrorCode::NoNode)));
        let w = &mut self.ops_watches;
        match q {
            Request::Exists(e) if e.watch && ok => {
                w.data.insert(e.path.clone());
            }
            Request::Exists(e) if e.watch && no_node => {
                w.exist.insert(e.path.clone());
            }
            Request::GetData(g) if g.watch && ok => {
                w.data.insert(g.path.clone());
            }
            Request::GetChildren(g) if g.watch && ok => {
                w.child.insert(g.path.clone());
            }
            Request::GetChildren2(g) if g.watch && ok => {
                w.child.insert(g.path.clone());
            }
            Request::AddWatch(a) if ok => {
                let set = if a.mode == 0 {
                    &mut w.persistent
                } else {
                    &mut w.recursive
                };
                set.insert(a.path.clone());
            }
            Request::RemoveWatches(rw) if ok => {
                let p = &rw.path;
                if rw.r#type != 2 {
                    w.child.remove(p);
                }
                if rw.r#type != 1 {
                    w.data.remove(p);
                    w.exist.remove(p);
                }
                if rw.r#type == 3 {
                    w.persistent.remove(p);
                    w.recursive.remove(p);
                }
            }
            _ => {}
        }
    }

    /// Sends `requests` and leaves at once, without waiting for any reply or closing the
    /// session: they are in flight when the session expires.
    pub fn send_and_vanish(&mut self, requests: Vec<Request>) {
        if let Some(c) = self.client.as_mut() {
            for r in requests {
                self.rec.tap.sent(c.next_xid(), &r);
                let _ = c.send(r);
            }
        }
        self.vanish();
    }

    /// Which connection this is (changes on every reconnect).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the current connection resumed the session of the one before.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The highest zxid this client has seen in a reply (what setWatches is relative to).
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// The current session (0 when there is none).
    pub fn session(&self) -> i64 {
        self.session.unwrap_or(0)
    }

    /// Sends a request on the current connection: the response or error, and the reply's zxid
    /// (0 without a reply). Watch events that arrived before the reply are recorded first, in
    /// order; later ones wait for a later reply (or `events`). A lost or timed-out reply drops
    /// the connection; the next `get` resumes the session elsewhere or at home.
    pub async fn call(&mut self, request: Request) -> (Result<Response, ClientError>, i64) {
        let Some(c) = self.client.as_mut() else {
            return (Err(ClientError::ConnectionLoss), 0);
        };
        self.rec.tap.sent(c.next_xid(), &request);
        let pending = c.send(request);
        self.next_xid = c.next_xid();
        let reply = match pending {
            Ok(p) => p.wait(REPLY_TIMEOUT).await,
            Err(e) => Err(e),
        };
        let r = self.reply(reply);
        if let Some(c) = self.client.as_ref() {
            self.last_zxid = self.last_zxid.max(c.last_zxid());
        }
        if matches!(r.0, Err(ref e) if !matches!(e, ClientError::Server(_))) {
            self.client = None;
        }
        r
    }

    /// Sends `requests` without waiting, then collects every reply in order, as a pipelining
    /// client does (kazoo's async calls, Curator's background operations). Each result is what
    /// `call` would give. A reply out of request order is recorded (`OutOfOrder`) and the
    /// connection dropped, as real clients do.
    pub async fn pipeline(&mut self, requests: Vec<Request>) -> Vec<(Result<Response, ClientError>, i64)> {
        let n = requests.len();
        let Some(c) = self.client.as_mut() else {
            return (0..n).map(|_| (Err(ClientError::ConnectionLoss), 0)).collect();
        };
        let tap = &self.rec.tap;
        let sent: Vec<_> = requests
            .into_iter()
            .map(|r| {
                tap.sent(c.next_xid(), &r);
                c.send(r)
            })
            .collect();
        self.next_xid = c.next_xid();
        let mut out = Vec::with_capacity(n);
        let mut lost = false;
        for s in sent {
            // A reply that does not come ends the connection, as the Java client's read
            // timeout does: the replies behind it are not waited for (nor recorded), since
            // one that arrived after the lost one would show effects of a request whose
            // reply the client never saw.
            let reply = match s {
                _ if lost => Err(ClientError::ConnectionLoss),
                Err(e) => Err(e),
                Ok(p) => p.wait(REPLY_TIMEOUT).await,
            };
            lost |= matches!(reply, Err(ref e) if !matches!(e, ClientError::Server(_)));
            let r = self.reply(reply);
            out.push(r);
        }
        if let Some(c) = self.client.as_ref() {
            self.last_zxid = self.last_zxid.max(c.last_zxid());
            if c.fifo_violations() > 0 {
                self.rec.observed(self.session.unwrap_or(0), "", RegOp::OutOfOrder);
            }
        }
        if out
            .iter()
            .any(|(r, _)| matches!(r, Err(e) if !matches!(e, ClientError::Server(_))))
        {
            self.client = None;
        }
        out
    }

    /// A reply as `call` gives it, after recording the watch events that came before it.
    fn reply(&mut self, reply: Result<(ReplyFrame, u64), ClientError>) -> (Result<Response, ClientError>, i64) {
        let (f, before) = match reply {
            Ok(r) => r,
            Err(e) => return (Err(e), 0),
        };
        self.take_events(before.saturating_sub(self.events_taken));
        self.rec.tap.replied(&f);
        let zxid = f.header.zxid;
        match ErrorCode::try_from(f.header.err) {
            Ok(ErrorCode::Ok) => (Ok(f.response), zxid),
            Ok(e) => (Err(ClientError::Server(e)), zxid),
            Err(_) => (Err(ClientError::Protocol(format!("error code {}", f.header.err))), zxid),
        }
    }

    /// Takes and records up to `n` queued watch events.
    fn take_events(&mut self, n: u64) {
        let Some(c) = self.client.as_mut() else {
            return;
        };
        for _ in 0..n {
            let Ok(ev) = c.events.try_recv() else {
                break;
            };
            self.events_taken += 1;
            self.rec.tap.event(&ev);
            self.ops_watches.fired(ev.r#type, &ev.path);
            self.rec
                .observed(self.session.unwrap_or(0), &ev.path, RegOp::WatchEvent);
            self.watched.remove(&ev.path);
            self.fired.push(ev.path);
        }
    }

    /// Records every watch event queued so far (between replies: e.g. while waiting for one).
    pub fn events(&mut self) {
        self.take_events(u64::MAX);
    }

    /// Paths of the watch events recorded since the last call.
    pub fn take_fired(&mut self) -> Vec<String> {
        std::mem::take(&mut self.fired)
    }

    /// Leaves without closing the session: its ephemerals must go when it expires.
    pub fn vanish(&mut self) {
        self.client = None;
        self.session = None;
        self.watched.clear();
        self.ops_watches = OpsWatches::default();
    }
}

/// A register client: mixes the register, sequential and ephemeral workloads by weight.
pub async fn client(id: u32, cfg: RunConfig, rec: Recorder) {
    let mut rng: ChaCha8Rng = rand::SeedableRng::seed_from_u64(cfg.seed.wrapping_mul(1000) + id as u64);
    let mut conn = Conn::new(rec.clone(), cfg.servers());
    let mut regs = register::Registers::default();
    let mut seq = sequential::Sequential::default();
    let total: u32 = cfg.weights.iter().sum();
    while !rec.done(cfg.secs) {
        if rng.gen_bool(0.005) {
            conn.vanish();
        }
        if conn.get(&mut rng).await.is_none() {
            continue;
        }
        let pick = rng.gen_range(0..total + cfg.pipeline_weight + cfg.ops_weight);
        if pick >= total + cfg.pipeline_weight {
            ops::step(cfg.pipeline_depth, &mut conn, &mut rng).await;
        } else if pick >= total {
            regs.pipelined(cfg.pipeline_depth, &mut conn, &rec, &mut rng).await;
        } else if pick < cfg.weights[0] + cfg.weights[1] + cfg.weights[2] {
            let [r, w, _, _] = cfg.weights;
            let kind = if pick < r {
                register::Kind::Read
            } else if pick < r + w {
                register::Kind::Write
            } else {
                register::Kind::Cas
            };
            regs.step(kind, &mut conn, &rec, &mut rng, cfg.keys).await;
        } else {
            seq.step(&mut conn, &rec, &mut rng).await;
        }
    }
}
