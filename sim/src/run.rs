//! One simulated run (madsim only): a zraft ensemble on simulated nodes with SimDisks and
//! skewable clocks, register clients recording a history, a nemesis driven by the scenario,
//! then a liveness probe and the checkers. Everything random derives from the run's seed.

use crate::checker::{linear, raft, sequential, session};
use crate::history::{Op, Outcome, RegOp};
use crate::scenario::{Fault, Scenario};
use madsim::runtime::{Handle, NodeHandle, Runtime};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zraft::client::{Client, ClientError};
use zraft::jute::*;
use zraft::server::config::{Config, Peer};
use zraft::server::node::Clock;
use zraft::storage::{Faults, SimDisk};

/// What a seed chose, printed at the start of every run and written into its report.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub scenario: String,
    pub seed: u64,
    pub nodes: u64,
    pub clients: u32,
    pub keys: u32,
    pub secs: u64,
    pub weights: [u32; 4],
    pub faults: Vec<Fault>,
    pub interval_ms: [u64; 2],
    pub events: Vec<(u64, Option<Fault>, bool)>,
    pub liveness_secs: u64,
}

impl RunConfig {
    /// Expands a seed of a scenario into every option it chooses.
    pub fn new(s: &Scenario, seed: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_5ce7);
        let mut faults = s.nemesis.faults.clone();
        let mut interval_ms = s.nemesis.interval_ms;
        if s.nemesis.swarm && !faults.is_empty() {
            faults.shuffle(&mut r);
            faults.truncate(r.gen_range(1..=faults.len()));
            faults.sort_by_key(|f| format!("{f:?}"));
            let lo = r.gen_range(interval_ms[0]..=interval_ms[1]);
            interval_ms = [lo, r.gen_range(lo..=interval_ms[1])];
        }
        RunConfig {
            scenario: s.name.clone(),
            seed,
            nodes: s.nodes,
            clients: r.gen_range(s.clients[0]..=s.clients[1]),
            keys: s.workload.keys,
            secs: s.seconds,
            weights: [s.workload.read, s.workload.write, s.workload.cas, s.workload.seq],
            faults,
            interval_ms,
            events: s.nemesis.events.iter().map(|e| (e.at_ms, e.fault, e.heal)).collect(),
            liveness_secs: s.liveness_secs,
        }
    }

    /// A run with no faults, for quick checks.
    pub fn quiet(seed: u64, secs: u64) -> Self {
        RunConfig {
            scenario: "quiet".into(),
            seed,
            nodes: 3,
            clients: 3,
            keys: 2,
            secs,
            weights: [1, 1, 1, 1],
            faults: vec![],
            interval_ms: [1000, 2000],
            events: vec![],
            liveness_secs: 15,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    pub cfg: RunConfig,
    pub history: Vec<Op>,
    pub nemesis_events: Vec<String>,
    pub linear: linear::Verdict,
    pub session: Result<usize, Box<session::SessionViolation>>,
    pub sequential: Result<usize, Box<sequential::SeqViolation>>,
    /// Ephemerals still present after every session was abandoned and had time to expire.
    pub leftover_ephemerals: Vec<String>,
    /// Reads that showed data newer than a watched change before its watch event arrived.
    pub watch_violations: Vec<String>,
    /// Raft invariants across nodes: (terms with a leader, applied indices compared).
    pub raft: Result<(usize, usize), Box<raft::RaftViolation>>,
    /// Simulated milliseconds from the final heal to the first successful write (None: never).
    pub recovery_ms: Option<u64>,
    /// Hash of the history and nemesis trace: equal seeds must give equal hashes.
    pub trace_hash: u64,
}

impl RunReport {
    /// The first failed check, if any (an undecided linearizability search counts separately).
    pub fn failure(&self) -> Option<String> {
        if let Some(v) = self.linear.violation.as_ref().filter(|v| !v.budget_exhausted) {
            return Some(format!("not linearizable on {}: cannot place {:?}", v.key, v.stuck_at));
        }
        if let Err(e) = &self.session {
            return Some(format!("session guarantee broken: {e:?}"));
        }
        if let Err(e) = &self.sequential {
            return Some(format!("sequential names broken: {e:?}"));
        }
        if let Err(e) = &self.raft {
            return Some(format!("Raft invariant broken: {e:?}"));
        }
        if let Some(w) = self.watch_violations.first() {
            return Some(format!("watch event arrived after newer data: {w}"));
        }
        if !self.leftover_ephemerals.is_empty() {
            return Some(format!(
                "ephemerals outlived their sessions: {:?}",
                self.leftover_ephemerals
            ));
        }
        match self.recovery_ms {
            None => Some(format!(
                "liveness: no write succeeded within {} s after healing",
                self.cfg.liveness_secs
            )),
            Some(_) => None,
        }
    }

    /// Whether linearizability stayed undecided within the search budget.
    pub fn undecided(&self) -> bool {
        self.linear.violation.as_ref().is_some_and(|v| v.budget_exhausted)
    }
}

/// A wall clock the nemesis can skew and make drift.
#[derive(Clone, Default)]
struct SkewClock {
    offset_ms: Arc<AtomicI64>,
    drift_ppm: Arc<AtomicI64>,
    since_ms: Arc<AtomicI64>,
}

fn sim_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Clock for SkewClock {
    fn now_ms(&self) -> i64 {
        let now = sim_now_ms();
        let since = self.since_ms.load(Ordering::Relaxed);
        now + self.offset_ms.load(Ordering::Relaxed)
            + (now - since) * self.drift_ppm.load(Ordering::Relaxed) / 1_000_000
    }
}

fn server_config(id: u64, nodes: u64) -> Config {
    Config {
        my_id: id,
        data_dir: format!("/data/{id}"),
        client_port: 2181,
        client_port_address: "0.0.0.0".into(),
        peers: (1..=nodes)
            .map(|i| Peer {
                id: i,
                addr: format!("10.0.0.{i}:2888"),
                observer: false,
            })
            .collect(),
        raft_tick_ms: 50,
        min_session_timeout_ms: 2000,
        max_session_timeout_ms: 20000,
        container_check_ms: 1000,
        ..Config::default()
    }
}

fn fnv(h: u64, b: &[u8]) -> u64 {
    b.iter().fold(h, |h, x| (h ^ *x as u64).wrapping_mul(0x0100_0000_01b3))
}

fn parse(d: &Option<Vec<u8>>) -> u64 {
    d.as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn client_loop(
    id: u32,
    cfg: RunConfig,
    start: madsim::time::Instant,
    history: Arc<Mutex<Vec<Op>>>,
    watch_violations: Arc<Mutex<Vec<String>>>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(1000) + id as u64);
    let deadline = Duration::from_secs(cfg.secs);
    let mut conn: Option<Client> = None;
    let mut session: Option<i64> = None;
    // Clients mostly stay with a home server (resuming their session there), sometimes move.
    let home = (id as u64 % cfg.nodes) + 1;
    let mut last_zxid = 0;
    let mut versions: BTreeMap<String, i32> = BTreeMap::new();
    // Keys with a data watch on the current connection, and the version it was set at.
    let mut watched: BTreeMap<String, i32> = BTreeMap::new();
    let mut counter = 0u64;
    let t = Duration::from_secs(2);
    let total: u32 = cfg.weights.iter().sum();
    while start.elapsed() < deadline {
        // Now and then a client vanishes without closing its session (its ephemerals must go
        // when the session expires).
        if rng.gen_bool(0.005) {
            conn = None;
            session = None;
        }
        if conn.is_none() {
            let node = if rng.gen_bool(0.7) {
                home
            } else {
                rng.gen_range(1..=cfg.nodes)
            };
            let resume = session.map(|s| (s, zraft::session::password(s)));
            match Client::connect(&format!("10.0.0.{node}:2181"), 4000, resume, last_zxid).await {
                Ok(c) => {
                    // Watches live on a connection; this client does not resend them.
                    watched.clear();
                    session = Some(c.session_id());
                    conn = Some(c);
                }
                Err(ClientError::SessionExpired) => {
                    session = None;
                    continue;
                }
                Err(_) => {
                    madsim::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected");
        let key = format!("/k{}", rng.gen_range(0..cfg.keys));
        counter += 1;
        let value = ((id as u64) << 32) | counter;
        let invoke = start.elapsed().as_nanos() as u64;
        let pick = rng.gen_range(0..total);
        let (op, result) = if pick < cfg.weights[0] {
            // Reads also carry a data watch: the event for a change must arrive before any
            // read that shows data newer than that change.
            let want_watch = !watched.contains_key(&key);
            let r = match c.ok(Request::Sync(SyncRequest { path: key.clone() }), t).await {
                Ok(_) => match c
                    .ok(
                        Request::GetData(GetDataRequest {
                            path: key.clone(),
                            watch: want_watch,
                        }),
                        t,
                    )
                    .await
                {
                    Ok(Response::GetData(g)) => Ok(Some((parse(&g.data), g.stat.version))),
                    Ok(other) => Err(ClientError::Protocol(format!("{other:?}"))),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            while let Ok(ev) = c.events.try_recv() {
                watched.remove(&ev.path);
            }
            if let Ok(Some((_, ver))) = &r {
                match watched.get(&key) {
                    Some(&w) if *ver > w => {
                        watch_violations.lock().unwrap().push(format!(
                            "client {id}: read {key} at version {ver} before the watch event set at version {w}"
                        ));
                        watched.remove(&key);
                    }
                    Some(_) => {}
                    None if want_watch => {
                        watched.insert(key.clone(), *ver);
                    }
                    None => {}
                }
            }
            (RegOp::Read, r)
        } else if pick < cfg.weights[0] + cfg.weights[1] {
            let req = SetDataRequest {
                path: key.clone(),
                data: Some(value.to_string().into_bytes()),
                version: -1,
            };
            (RegOp::Write(value), c.ok(Request::SetData(req), t).await.map(|_| None))
        } else if pick >= cfg.weights[0] + cfg.weights[1] + cfg.weights[2] {
            let invoke = start.elapsed().as_nanos() as u64;
            // Half of them are ephemeral: they must die with their session.
            let (parent, flags) = if rng.gen_bool(0.5) {
                ("/eph", CreateMode::EphemeralSequential.code())
            } else {
                ("/seq", CreateMode::PersistentSequential.code())
            };
            let req = CreateRequest {
                path: format!("{parent}/s-"),
                data: None,
                acl: zraft::tree::acl::open_acl(),
                flags,
            };
            let r = c.ok(Request::Create(req), t).await;
            let complete = start.elapsed().as_nanos() as u64;
            last_zxid = last_zxid.max(c.last_zxid());
            let sid = c.session_id();
            let (outcome, complete) = match r {
                Ok(Response::Create(cr)) => (Outcome::Created(cr.path), Some(complete)),
                Ok(_) | Err(ClientError::Server(_)) => (Outcome::Fail, Some(complete)),
                Err(_) => {
                    conn = None;
                    (Outcome::Info, None)
                }
            };
            let op = Op {
                client: id,
                session: sid,
                key: parent.into(),
                op: RegOp::SeqCreate,
                invoke,
                complete,
                outcome,
                zxid: last_zxid,
            };
            history.lock().unwrap().push(op);
            continue;
        } else {
            let version = versions.get(&key).copied().unwrap_or(0);
            let req = SetDataRequest {
                path: key.clone(),
                data: Some(value.to_string().into_bytes()),
                version,
            };
            (
                RegOp::Cas { version, value },
                c.ok(Request::SetData(req), t).await.map(|_| None),
            )
        };
        let complete = start.elapsed().as_nanos() as u64;
        let sid = c.session_id();
        last_zxid = last_zxid.max(c.last_zxid());
        let (outcome, complete) = match result {
            Ok(seen) => {
                if let Some((_, v)) = seen {
                    versions.insert(key.clone(), v);
                }
                (Outcome::Ok(seen), Some(complete))
            }
            Err(ClientError::Server(_)) => (Outcome::Fail, Some(complete)),
            Err(_) => {
                // Unknown outcome; reconnect (resuming the session).
                conn = None;
                (Outcome::Info, None)
            }
        };
        if matches!(op, RegOp::Read) && outcome == Outcome::Info {
            continue;
        }
        history.lock().unwrap().push(Op {
            client: id,
            session: sid,
            key,
            op,
            invoke,
            complete,
            outcome,
            zxid: last_zxid,
        });
    }
}

/// Asks a server for its mode with the `srvr` four-letter word.
async fn is_leader(id: u64) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(format!("10.0.0.{id}:2181")),
    )
    .await
    else {
        return false;
    };
    if s.write_all(b"srvr").await.is_err() || s.flush().await.is_err() {
        return false;
    }
    let mut out = vec![];
    let _ = tokio::time::timeout(Duration::from_millis(300), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).contains("Mode: leader")
}

struct Cluster {
    handle: Handle,
    nodes: Vec<NodeHandle>,
    disks: Vec<SimDisk>,
    clocks: Vec<SkewClock>,
    down: Vec<usize>,
    paused: Vec<usize>,
    cut: Vec<(usize, usize)>,
    net_default: madsim::net::Config,
}

impl Cluster {
    fn cut_link(&mut self, a: usize, b: usize) {
        madsim::net::NetSim::current().clog_link(self.nodes[a].id(), self.nodes[b].id());
        self.cut.push((a, b));
    }

    fn heal(&mut self) {
        let net = madsim::net::NetSim::current();
        for (a, b) in self.cut.drain(..) {
            net.unclog_link(self.nodes[a].id(), self.nodes[b].id());
        }
        for i in self.paused.drain(..) {
            self.handle.resume(self.nodes[i].id());
        }
        for i in self.down.drain(..) {
            self.handle.restart(self.nodes[i].id());
        }
        let d = self.net_default.clone();
        net.update_config(|c| *c = d);
    }

    fn kill(&mut self, i: usize) {
        if !self.down.contains(&i) {
            self.handle.kill(self.nodes[i].id());
            self.disks[i].crash();
            self.down.push(i);
        }
    }

    async fn leader(&self) -> Option<usize> {
        for (i, _) in self.nodes.iter().enumerate() {
            if !self.down.contains(&i) && !self.paused.contains(&i) && is_leader(i as u64 + 1).await {
                return Some(i);
            }
        }
        None
    }

    /// Applies one fault; returns a line for the trace.
    async fn inject(&mut self, f: Fault, rng: &mut ChaCha8Rng) -> String {
        let n = self.nodes.len();
        let mut any = || rng.gen_range(0..n);
        match f {
            Fault::Isolate | Fault::IsolateLeader => {
                let lone = if f == Fault::IsolateLeader {
                    self.leader().await.unwrap_or_else(&mut any)
                } else {
                    any()
                };
                for j in (0..n).filter(|&j| j != lone) {
                    self.cut_link(lone, j);
                    self.cut_link(j, lone);
                }
                format!("isolate zraft-{}", lone + 1)
            }
            Fault::Halves => {
                let mut ids: Vec<usize> = (0..n).collect();
                ids.shuffle(rng);
                let (a, b) = ids.split_at(n / 2);
                for &x in a {
                    for &y in b {
                        self.cut_link(x, y);
                        self.cut_link(y, x);
                    }
                }
                format!(
                    "halves {:?} | {:?}",
                    a.iter().map(|x| x + 1).collect::<Vec<_>>(),
                    b.iter().map(|x| x + 1).collect::<Vec<_>>()
                )
            }
            Fault::OneWay => {
                let a = rng.gen_range(0..n);
                let b = (a + rng.gen_range(1..n.max(2))) % n;
                if a != b {
                    self.cut_link(a, b);
                }
                format!("one-way zraft-{} -/-> zraft-{}", a + 1, b + 1)
            }
            Fault::Ring => {
                for a in 0..n {
                    for b in 0..n {
                        let d = (a + n - b) % n;
                        if a != b && d != 1 && d != n - 1 {
                            self.cut_link(a, b);
                        }
                    }
                }
                "ring".into()
            }
            Fault::Bridge => {
                let mut ids: Vec<usize> = (0..n).collect();
                ids.shuffle(rng);
                let bridge = ids[0];
                let (a, b) = ids[1..].split_at((n - 1) / 2);
                for &x in a {
                    for &y in b {
                        self.cut_link(x, y);
                        self.cut_link(y, x);
                    }
                }
                format!("bridge via zraft-{}", bridge + 1)
            }
            Fault::Kill | Fault::KillLeader => {
                let i = if f == Fault::KillLeader {
                    self.leader().await.unwrap_or_else(&mut any)
                } else {
                    any()
                };
                self.kill(i);
                format!("kill zraft-{}", i + 1)
            }
            Fault::KillAll => {
                for i in 0..n {
                    self.kill(i);
                }
                "kill all".into()
            }
            Fault::Pause => {
                let i = any();
                if !self.paused.contains(&i) && !self.down.contains(&i) {
                    self.handle.pause(self.nodes[i].id());
                    self.paused.push(i);
                }
                format!("pause zraft-{}", i + 1)
            }
            Fault::Delay => {
                let hi = rng.gen_range(5..200);
                madsim::net::NetSim::current()
                    .update_config(|c| c.send_latency = Duration::from_millis(1)..Duration::from_millis(hi));
                format!("delay 1..{hi} ms")
            }
            Fault::Loss => {
                let p = [0.01, 0.05, 0.2][rng.gen_range(0..3)];
                madsim::net::NetSim::current().update_config(|c| c.packet_loss_rate = p);
                format!("loss {p}")
            }
            Fault::ClockSkew => {
                let i = any();
                let c = &self.clocks[i];
                let off = rng.gen_range(-60_000..60_000);
                let drift = rng.gen_range(-20_000..20_000);
                c.offset_ms.store(off, Ordering::Relaxed);
                c.drift_ppm.store(drift, Ordering::Relaxed);
                c.since_ms.store(sim_now_ms(), Ordering::Relaxed);
                format!("clock zraft-{} offset {off} ms drift {drift} ppm", i + 1)
            }
            Fault::DiskFaults => {
                let i = any();
                self.disks[i].set_faults(Faults {
                    torn: true,
                    garble_unsynced: true,
                    read_flip: 0.01,
                    ..Faults::default()
                });
                format!("disk faults on zraft-{}", i + 1)
            }
        }
    }
}

async fn scenario(cfg: RunConfig) -> (Vec<Op>, Vec<String>, Option<u64>, Vec<String>, Vec<String>) {
    let handle = Handle::current();
    let mut nodes = vec![];
    let mut disks = vec![];
    let mut clocks = vec![];
    for id in 1..=cfg.nodes {
        let disk = SimDisk::new(
            cfg.seed ^ id,
            Faults {
                torn: true,
                ..Faults::default()
            },
        );
        let clock = SkewClock::default();
        disks.push(disk.clone());
        clocks.push(clock.clone());
        let (n, seed) = (cfg.nodes, cfg.seed);
        let node = handle
            .create_node()
            .name(format!("zraft-{id}"))
            .ip(format!("10.0.0.{id}").parse().unwrap())
            .init(move || {
                let (disk, clock) = (disk.clone(), clock.clone());
                async move {
                    let _ =
                        zraft::server::run_with_clock(server_config(id, n), Box::new(disk), Box::new(clock), seed ^ id)
                            .await;
                }
            })
            .build();
        nodes.push(node);
    }
    let keys = cfg.keys;
    let setup = handle
        .create_node()
        .name("setup")
        .ip("10.0.1.1".parse().unwrap())
        .build();
    setup
        .spawn(async move {
            loop {
                madsim::time::sleep(Duration::from_millis(500)).await;
                let Ok(mut c) = Client::connect("10.0.0.1:2181", 4000, None, 0).await else {
                    continue;
                };
                let mut ok = true;
                for k in (0..keys)
                    .map(|k| format!("/k{k}"))
                    .chain(["/seq".to_string(), "/eph".to_string()])
                {
                    match c.create(&k, b"0", CreateMode::Persistent).await {
                        Ok(_) | Err(ClientError::Server(ErrorCode::NodeExists)) => {}
                        Err(_) => ok = false,
                    }
                }
                if ok {
                    return;
                }
            }
        })
        .await
        .unwrap();
    let history = Arc::new(Mutex::new(vec![]));
    let watch_violations = Arc::new(Mutex::new(vec![]));
    let t0 = madsim::time::Instant::now();
    let mut tasks = vec![];
    for id in 0..cfg.clients {
        let node = handle
            .create_node()
            .name(format!("client-{id}"))
            .ip(format!("10.0.2.{}", id + 1).parse().unwrap())
            .build();
        tasks.push(node.spawn(client_loop(
            id,
            cfg.clone(),
            t0,
            history.clone(),
            watch_violations.clone(),
        )));
    }
    // The nemesis runs on its own node so it can ask servers who leads.
    let nem = handle
        .create_node()
        .name("nemesis")
        .ip("10.0.3.1".parse().unwrap())
        .build();
    let cfg2 = cfg.clone();
    let net_default = madsim::net::Config::default();
    let (events, recovery) = nem
        .spawn(async move {
            let mut c = Cluster {
                handle: Handle::current(),
                nodes,
                disks,
                clocks,
                down: vec![],
                paused: vec![],
                cut: vec![],
                net_default,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(cfg2.seed ^ 0xdead_beef);
            let mut events = vec![];
            let stop_faults = Duration::from_secs(cfg2.secs.saturating_sub(4));
            let mut timed = cfg2.events.clone();
            timed.sort_by_key(|e| e.0);
            let mut timed = timed.into_iter().peekable();
            let mut next_random =
                t0.elapsed() + Duration::from_millis(rng.gen_range(cfg2.interval_ms[0]..=cfg2.interval_ms[1]));
            while t0.elapsed() < stop_faults {
                let next_timed = timed.peek().map(|e| Duration::from_millis(e.0));
                let wake = next_timed.map_or(next_random, |t| t.min(next_random)).min(stop_faults);
                madsim::time::sleep(wake.saturating_sub(t0.elapsed())).await;
                if t0.elapsed() >= stop_faults {
                    break;
                }
                let at = t0.elapsed().as_millis();
                if next_timed.is_some_and(|t| t <= t0.elapsed()) {
                    let (_, fault, heal) = timed.next().expect("peeked");
                    if heal {
                        c.heal();
                        events.push(format!("{at}ms heal (scheduled)"));
                    }
                    if let Some(f) = fault {
                        let line = c.inject(f, &mut rng).await;
                        events.push(format!("{at}ms {line} (scheduled)"));
                    }
                    continue;
                }
                next_random =
                    t0.elapsed() + Duration::from_millis(rng.gen_range(cfg2.interval_ms[0]..=cfg2.interval_ms[1]));
                if cfg2.faults.is_empty() {
                    continue;
                }
                // Half of the time heal first, so faults come and go.
                if rng.gen_bool(0.5) {
                    c.heal();
                    events.push(format!("{at}ms heal"));
                } else {
                    let f = cfg2.faults[rng.gen_range(0..cfg2.faults.len())];
                    let line = c.inject(f, &mut rng).await;
                    events.push(format!("{at}ms {line}"));
                }
            }
            c.heal();
            for d in &c.disks {
                d.set_faults(Faults {
                    torn: true,
                    ..Faults::default()
                });
            }
            events.push(format!("{}ms heal all", t0.elapsed().as_millis()));
            // Liveness: after healing, a fresh client's write must succeed within the bound.
            let healed = t0.elapsed();
            let bound = Duration::from_secs(cfg2.liveness_secs);
            let mut recovery = None;
            'probe: while t0.elapsed() < healed + bound {
                for id in 1..=cfg2.nodes {
                    if let Ok(mut cl) = Client::connect(&format!("10.0.0.{id}:2181"), 2000, None, 0).await {
                        let req = SetDataRequest {
                            path: "/k0".into(),
                            data: Some(b"0".to_vec()),
                            version: i32::MAX,
                        };
                        // BadVersion proves the write path (leader, prepare, commit) works.
                        match cl.ok(Request::SetData(req), Duration::from_secs(2)).await {
                            Ok(_) | Err(ClientError::Server(ErrorCode::BadVersion)) => {
                                recovery = Some((t0.elapsed() - healed).as_millis() as u64);
                                break 'probe;
                            }
                            Err(_) => {}
                        }
                    }
                }
                madsim::time::sleep(Duration::from_millis(200)).await;
            }
            (events, recovery)
        })
        .await
        .unwrap();
    for t in tasks {
        let _ = t.await;
    }
    // Every client is gone now (none closed its session): once the longest session timeout
    // has passed, no ephemeral may remain.
    let leftover = setup
        .spawn(async move {
            madsim::time::sleep(Duration::from_secs(15)).await;
            for _ in 0..20 {
                for id in 1..=3u64 {
                    if let Ok(mut c) = Client::connect(&format!("10.0.0.{id}:2181"), 2000, None, 0).await {
                        let _ = c
                            .ok(
                                Request::Sync(SyncRequest { path: "/eph".into() }),
                                Duration::from_secs(2),
                            )
                            .await;
                        let req = Request::GetChildren(GetChildrenRequest {
                            path: "/eph".into(),
                            watch: false,
                        });
                        if let Ok(Response::GetChildren(g)) = c.ok(req, Duration::from_secs(2)).await {
                            return g.children;
                        }
                    }
                }
                madsim::time::sleep(Duration::from_millis(500)).await;
            }
            vec!["<could not list /eph>".to_string()]
        })
        .await
        .unwrap();
    let h = history.lock().unwrap().clone();
    let w = watch_violations.lock().unwrap().clone();
    (h, events, recovery, leftover, w)
}

/// Runs one seed to completion and checks its history.
pub fn run(cfg: RunConfig) -> RunReport {
    let rt = Runtime::with_seed_and_config(cfg.seed, madsim::Config::default());
    zraft::server::observer::take();
    let (history, nemesis_events, recovery_ms, leftover_ephemerals, watch_violations) =
        rt.block_on(scenario(cfg.clone()));
    let raft = raft::check(&zraft::server::observer::take());
    let linear = linear::check_from(&history, (0, 0), 50_000_000);
    let session = session::check(&history);
    let sequential = sequential::check(&history);
    let mut h = 0xcbf2_9ce4_8422_2325;
    for o in &history {
        h = fnv(h, format!("{o:?}").as_bytes());
    }
    for e in &nemesis_events {
        h = fnv(h, e.as_bytes());
    }
    RunReport {
        cfg,
        history,
        nemesis_events,
        linear,
        session,
        sequential,
        raft,
        leftover_ephemerals,
        watch_violations,
        recovery_ms,
        trace_hash: h,
    }
}
