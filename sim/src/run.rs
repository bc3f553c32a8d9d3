//! One simulated run (madsim only): a zraft ensemble on simulated nodes with SimDisks and
//! per-node clocks, workload clients recording a history, the nemesis driven by the scenario,
//! then a liveness probe, a final look at the ephemerals, and every checker. Everything random
//! derives from the run's seed.

use crate::checker::{ephemeral, linear, lock, membership, model, raft, sequential, session, watch};
pub use crate::config::RunConfig;
use crate::history::{Op, RegOp, WireRec};
use crate::nemesis::{self, Cluster, Exit, SkewClock};
use crate::workload::{self, Recorder, Tap};
use madsim::runtime::{Handle, Runtime};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zraft::client::ClientError;
use zraft::jute::*;
use zraft::server::config::{Config, Peer};
use zraft::server::observer::Observation;
use zraft::storage::{Faults, SimDisk};

/// What the membership checks covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipStats {
    /// Conf changes applied.
    pub changes: usize,
    /// Leader commits checked against the voters in force.
    pub commits: usize,
    /// Reconfigs sent, and answered with success.
    pub reconfigs: usize,
    pub done: usize,
    /// Whether the final membership was decided and compared.
    pub final_checked: bool,
}

/// What a run produced, and every checker's verdict.
#[derive(Debug)]
pub struct RunReport {
    pub cfg: RunConfig,
    pub history: Vec<Op>,
    pub nemesis_events: Vec<String>,
    pub linear: linear::Verdict,
    pub session: Result<usize, Box<session::SessionViolation>>,
    pub sequential: Result<usize, Box<sequential::SeqViolation>>,
    /// Watch events before newer data (watches checked).
    pub watch: Result<usize, Box<watch::WatchViolation>>,
    /// Ephemerals present while their session lives and gone after (presences checked).
    pub ephemeral: Result<usize, Box<ephemeral::EphemeralViolation>>,
    /// The lock recipe's mutual exclusion (fenced writes checked).
    pub lock: Result<usize, Box<lock::LockViolation>>,
    /// Every reply, watch event and committed transaction against the reference model.
    pub model: Result<model::ModelStats, Box<model::ModelViolation>>,
    /// Wall-clock microseconds the model checker took (not part of the trace).
    pub model_us: u64,
    /// Raft invariants across nodes: (terms with a leader, applied indices compared).
    pub raft: Result<(usize, usize), Box<raft::RaftViolation>>,
    /// Membership changes: promotions after catch-up, commits by a quorum of the voters in
    /// force, the final membership.
    pub membership: Result<MembershipStats, Box<membership::MembershipViolation>>,
    /// Snapshots the servers reported: (taken for compaction, installed from a leader).
    pub snapshots: (usize, usize),
    /// Raft messages message chaos dropped, duplicated, delayed and replayed.
    pub messages: [u64; 4],
    /// Simulated milliseconds from the final heal to the first successful write (None: never).
    pub recovery_ms: Option<u64>,
    /// Hash of the history and nemesis trace: equal seeds must give equal hashes.
    pub trace_hash: u64,
    /// What the run reached, by name (faults injected, elections, snapshot installs, session
    /// expiries, torn tails recovered, reconnects with setWatches, pipelined ops...): the
    /// sweep's coverage.
    pub coverage: BTreeMap<String, u64>,
    /// What the servers reported (leaderships, starts, snapshots, counted events), with
    /// simulated ns since the workload started: the report page's server lanes.
    pub servers: Vec<(u64, Observation)>,
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
        if let Err(e) = &self.membership {
            return Some(format!("membership guarantee broken: {e:?}"));
        }
        if let Err(e) = &self.watch {
            return Some(format!("watch event arrived after newer data: {e:?}"));
        }
        if let Err(e) = &self.ephemeral {
            return Some(format!("ephemeral guarantee broken: {e:?}"));
        }
        if let Err(e) = &self.lock {
            return Some(format!("lock mutual exclusion broken: {e:?}"));
        }
        // Last of the safety checks: the narrower checkers above name what they catch more
        // plainly; the model checker catches everything they miss.
        if let Err(e) = &self.model {
            return Some(format!("model check failed: {e}"));
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

    /// Client operations in the history (not counting connections and watch events seen).
    pub fn ops(&self) -> usize {
        self.history
            .iter()
            .filter(|o| !matches!(o.op, RegOp::Connected | RegOp::WatchEvent))
            .count()
    }

    /// Register operations that went out pipelined: sent together with another one of the same
    /// client (a batch shares its invoke time), so that a sweep shows the depth it reached.
    pub fn pipelined(&self) -> usize {
        pipelined(&self.history)
    }

    /// Every checker's verdict, one per line, for reports.
    pub fn verdicts(&self) -> String {
        let lin = match &self.linear.violation {
            None => format!(
                "ok ({} keys, {} states explored)",
                self.linear.keys, self.linear.explored
            ),
            Some(v) => format!(
                "{} on {}: cannot place {:?}; longest linearized prefix ({} ops): {:?}",
                if v.budget_exhausted { "undecided" } else { "VIOLATED" },
                v.key,
                v.stuck_at,
                v.best_prefix.len(),
                v.best_prefix
            ),
        };
        format!(
            "linearizability: {lin}\nmodel: {}\nsession: {:?}\nsequential: {:?}\nwatch: {:?}\nephemeral: {:?}\nlock: {:?}\nraft: {:?}\nmembership: {:?}\nliveness: recovered {:?} ms after heal (bound {} s)\n",
            match &self.model {
                Ok(s) => format!("ok ({s:?})"),
                Err(e) => format!("VIOLATED: {e}"),
            },
            self.session,
            self.sequential,
            self.watch,
            self.ephemeral,
            self.lock,
            self.raft,
            self.membership,
            self.recovery_ms,
            self.cfg.liveness_secs
        )
    }
}

/// The server configuration of node `id` of an ensemble of `nodes` (a spare, with an id past
/// them, lists the ensemble and itself, as an operator starts a server to add).
fn server_config(id: u64, nodes: u64, observers: u64, snap_count: u64, max_append_bytes: usize) -> Config {
    Config {
        my_id: id,
        data_dir: format!("/data/{id}"),
        client_port: 2181,
        client_port_address: "0.0.0.0".into(),
        peers: (1..=nodes)
            .chain((id > nodes).then_some(id))
            .map(|i| {
                let line = if i > nodes - observers && i <= nodes {
                    crate::nemesis::membership::observer_line(i)
                } else {
                    crate::nemesis::membership::server_line(i)
                };
                let (_, spec) = zraft::server::membership::server_line(&line).expect("a valid line");
                Peer { id: i, spec }
            })
            .collect(),
        reconfig_enabled: true,
        super_digest: Some(zraft::tree::acl::digest_id(crate::nemesis::membership::SUPER)),
        // A learner gets 2 x tickTime (4 s) to catch up before a reconfig gives up on it.
        init_limit: 2,
        raft_tick_ms: 50,
        min_session_timeout_ms: 2000,
        max_session_timeout_ms: 20000,
        container_check_ms: 1000,
        snap_count,
        // Small segments, so that runs roll them (from a spare or not, a crash around either)
        // and the simulated disk's in-memory files stay small.
        prealloc_bytes: 256 << 10,
        raft_max_append_bytes: max_append_bytes,
        ..Config::default()
    }
}

/// The run's trace hash: the history, then the servers' observations, then the nemesis events,
/// each in order. Integers enter in their little-endian bytes whatever the platform, so that
/// a seed's hash is the same on any machine.
fn trace_hash(history: &[Op], observed: &[Observation], nemesis: &[String]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = TraceHasher::default();
    history.hash(&mut h);
    observed.hash(&mut h);
    nemesis.hash(&mut h);
    h.finish()
}

/// XXH3 over what derived `Hash` impls write, with integers in little-endian order. The
/// writes (a few bytes each, millions a run) are gathered and fed to XXH3 in large pieces:
/// its streaming digest does not depend on how the input is cut, and one call per integer
/// cost more than the hashing.
struct TraceHasher {
    xxh: xxhash_rust::xxh3::Xxh3Default,
    pending: Vec<u8>,
}

impl TraceHasher {
    const PIECE: usize = 64 << 10;

    fn put(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= Self::PIECE {
            self.xxh.update(&self.pending);
            self.pending.clear();
        }
    }
}

impl Default for TraceHasher {
    fn default() -> Self {
        TraceHasher {
            xxh: xxhash_rust::xxh3::Xxh3Default::new(),
            pending: Vec::with_capacity(Self::PIECE + 64),
        }
    }
}

impl std::hash::Hasher for TraceHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.put(bytes);
    }
    fn write_u8(&mut self, i: u8) {
        self.put(&[i]);
    }
    fn write_u16(&mut self, i: u16) {
        self.put(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.put(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.put(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.put(&(i as u64).to_le_bytes());
    }
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_usize(i as usize);
    }
    fn finish(&self) -> u64 {
        let mut xxh = self.xxh.clone();
        xxh.update(&self.pending);
        xxh.digest()
    }
}

/// Parents and registers every workload needs (the shared subtree only with the every-opcode
/// workload, so that runs without it replay as before it existed).
fn initial_nodes(keys: u32, clients: u32, ops: bool) -> Vec<String> {
    (0..keys)
        .map(|k| format!("/k{k}"))
        .chain((0..clients).map(workload::register::pipeline_key))
        .chain(workload::sequential::PARENTS.iter().map(|p| p.to_string()))
        .chain([workload::lock::LOCK.to_string(), workload::lock::DATA.to_string()])
        .chain(ops.then(|| workload::ops::ROOT.to_string()))
        .collect()
}

/// After heal: a fresh client's write must succeed within the bound; the simulated ms it took.
async fn probe_liveness(cfg: &RunConfig, t0: madsim::time::Instant, tap: &Tap) -> Option<u64> {
    let healed = t0.elapsed();
    let bound = Duration::from_secs(cfg.liveness_secs);
    while t0.elapsed() < healed + bound {
        for id in 1..=cfg.servers() {
            if let Ok(mut cl) = tap.connect(id, 2000).await {
                let req = SetDataRequest {
                    path: "/k0".into(),
                    data: Some(b"0".to_vec()),
                    version: i32::MAX,
                };
                // BadVersion proves the write path (leader, prepare, commit) works.
                match tap.ok(&mut cl, Request::SetData(req), Duration::from_secs(2)).await {
                    Ok(_) | Err(ClientError::Server(ErrorCode::BadVersion)) => {
                        return Some((t0.elapsed() - healed).as_millis() as u64);
                    }
                    Err(_) => {}
                }
            }
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// The membership in /zookeeper/config after sync, as a member sees it (None: unreadable).
/// Not recorded: the model checker holds no membership.
async fn final_membership(members: &std::collections::BTreeSet<u64>) -> Option<std::collections::BTreeSet<u64>> {
    for _ in 0..10 {
        for &id in members {
            let Ok(mut c) = zraft::client::Client::connect(&format!("10.0.0.{id}:2181"), 2000, None, 0).await else {
                continue;
            };
            let path = "/zookeeper/config".to_string();
            let sync = Request::Sync(SyncRequest { path: path.clone() });
            if c.ok(sync, Duration::from_secs(2)).await.is_err() {
                continue;
            }
            let get = Request::GetData(GetDataRequest { path, watch: false });
            if let Ok(Response::GetData(g)) = c.ok(get, Duration::from_secs(2)).await {
                let text = String::from_utf8_lossy(g.data.as_deref().unwrap_or_default()).into_owned();
                if let Ok(Some(cfg)) = zraft::server::membership::DynamicConfig::parse(&text) {
                    return Some(cfg.servers.keys().copied().collect());
                }
            }
        }
        madsim::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// Every ephemeral still present (full paths), after sync, as one server sees them.
async fn remaining_ephemerals(nodes: u64, tap: &Tap) -> Vec<String> {
    for _ in 0..20 {
        for id in 1..=nodes {
            let Ok(mut c) = tap.connect(id, 2000).await else {
                continue;
            };
            let mut all = Some(vec![]);
            for parent in ["/eph", workload::lock::LOCK] {
                let sync = Request::Sync(SyncRequest { path: parent.into() });
                let _ = tap.ok(&mut c, sync, Duration::from_secs(2)).await;
                let req = Request::GetChildren(GetChildrenRequest {
                    path: parent.into(),
                    watch: false,
                });
                match (tap.ok(&mut c, req, Duration::from_secs(2)).await, all.as_mut()) {
                    (Ok(Response::GetChildren(g)), Some(a)) => {
                        a.extend(g.children.iter().map(|n| format!("{parent}/{n}")))
                    }
                    _ => all = None,
                }
            }
            if let Some(all) = all {
                return all;
            }
        }
        madsim::time::sleep(Duration::from_millis(500)).await;
    }
    vec!["<could not list the ephemerals>".to_string()]
}

/// What the simulated part of a run hands to the checkers.
struct Outputs {
    history: Vec<Op>,
    wire: Vec<WireRec>,
    nemesis_events: Vec<String>,
    injected: BTreeMap<String, u64>,
    recovery_ms: Option<u64>,
    leftover: Vec<String>,
    /// The nemesis's reconfig attempts, and the membership found at the end.
    attempts: Vec<crate::checker::membership::Attempt>,
    final_members: Option<std::collections::BTreeSet<u64>>,
    /// When the workload started (the history's and the trace's time zero).
    t0: madsim::time::Instant,
    /// Every simulated machine, to be stopped once the run's outputs are taken.
    machines: Vec<madsim::task::NodeId>,
}

async fn scenario(cfg: RunConfig) -> Outputs {
    let handle = Handle::current();
    let (mut nodes, mut disks, mut clocks, mut exits) = (vec![], vec![], vec![], vec![]);
    let mut machines = vec![];
    for id in 1..=cfg.servers() {
        let disk = SimDisk::new(
            cfg.seed ^ id,
            Faults {
                torn: true,
                ..Faults::default()
            },
        );
        disk.set_latency_us(cfg.disk_latency_us[0], cfg.disk_latency_us[1]);
        let clock = SkewClock::with_rate(cfg.tick_drift_ppm.get(id as usize - 1).copied().unwrap_or(0));
        let exit = Exit::default();
        disks.push(disk.clone());
        clocks.push(clock.clone());
        exits.push(exit.clone());
        let (n, seed, snap_count, max_append) = (cfg.nodes, cfg.seed, cfg.snap_count, cfg.max_append_bytes);
        let observers = cfg.observers;
        let container_check_ms = cfg.container_check_ms;
        let node = handle
            .create_node()
            .name(format!("zraft-{id}"))
            .ip(format!("10.0.0.{id}").parse().unwrap())
            .init(move || {
                let (disk, clock, exit) = (disk.clone(), clock.clone(), exit.clone());
                async move {
                    let r = zraft::server::run_with_clock(
                        Config {
                            container_check_ms,
                            ..server_config(id, n, observers, snap_count, max_append)
                        },
                        Box::new(disk),
                        Box::new(clock),
                        seed ^ id,
                    )
                    .await;
                    // The real binary exits here; the nemesis plays the supervisor.
                    let why = match r {
                        Ok(()) => "stopped".to_string(),
                        Err(e) => e.to_string(),
                    };
                    *exit.lock().expect("exit lock") = Some(why);
                }
            })
            .build();
        if id > cfg.nodes {
            // A spare: started when a reconfig adds it.
            handle.kill(node.id());
        }
        machines.push(node.id());
        nodes.push(node);
    }
    let initial = initial_nodes(cfg.keys, cfg.clients, cfg.ops_weight > 0);
    let t_setup = madsim::time::Instant::now();
    let wire = Arc::new(Mutex::new(vec![]));
    // Harness clients are recorded too (ids past the workload's): the model checker accounts
    // for every transaction.
    let harness = cfg.clients + cfg.lock_clients;
    let setup_tap = Tap::new(harness, t_setup, wire.clone());
    let setup = handle
        .create_node()
        .name("setup")
        .ip("10.0.1.1".parse().unwrap())
        .build();
    machines.push(setup.id());
    setup
        .spawn(async move {
            loop {
                madsim::time::sleep(Duration::from_millis(500)).await;
                let Ok(mut c) = setup_tap.connect(1, 4000).await else {
                    continue;
                };
                let mut ok = true;
                for k in &initial {
                    let req = Request::Create(CreateRequest {
                        path: k.clone(),
                        data: Some(b"0".to_vec()),
                        acl: zraft::tree::acl::open_acl(),
                        flags: CreateMode::Persistent.code(),
                    });
                    match setup_tap.ok(&mut c, req, Duration::from_secs(4)).await {
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
    let t0 = madsim::time::Instant::now();
    let mut tasks = vec![];
    for id in 0..cfg.clients + cfg.lock_clients {
        let node = handle
            .create_node()
            .name(format!("client-{id}"))
            .ip(format!("10.0.2.{}", id + 1).parse().unwrap())
            .build();
        machines.push(node.id());
        // Wire records of every client share one time base (the setup's), so that the model
        // checker can order the setup's writes before the workload's.
        let rec = Recorder::new(id, t0, history.clone(), Tap::new(id, t_setup, wire.clone()));
        let cfg = cfg.clone();
        tasks.push(if id < cfg.clients {
            node.spawn(workload::client(id, cfg, rec))
        } else {
            node.spawn(workload::lock::client(id, cfg.servers(), cfg.seed, cfg.secs, rec))
        });
    }
    // The nemesis runs on its own node so it can ask servers who leads.
    let nem = handle
        .create_node()
        .name("nemesis")
        .ip("10.0.3.1".parse().unwrap())
        .build();
    machines.push(nem.id());
    let cfg2 = cfg.clone();
    let probe_tap = Tap::new(harness + 1, t_setup, wire.clone());
    let operator = Tap::new(harness + 3, t_setup, wire.clone());
    let ((nemesis_events, injected), recovery_ms, attempts, final_members) = nem
        .spawn(async move {
            let mut c = Cluster::new(nodes, disks, clocks, exits, cfg2.disk_latency_us);
            c.spares_from(cfg2.nodes as usize);
            c.operator = Some(operator.clone());
            let events = nemesis::run(&mut c, &cfg2, t0).await;
            let recovery = probe_liveness(&cfg2, t0, &probe_tap).await;
            let found = if c.attempts.is_empty() {
                None
            } else {
                final_membership(&c.members).await
            };
            (events, recovery, std::mem::take(&mut c.attempts), found)
        })
        .await
        .unwrap();
    for t in tasks {
        let _ = t.await;
    }
    // Every client is gone now (none closed its session): once the longest session timeout
    // has passed, no ephemeral may remain.
    let n = cfg.servers();
    let last_tap = Tap::new(harness + 2, t_setup, wire.clone());
    let leftover = setup
        .spawn(async move {
            madsim::time::sleep(Duration::from_secs(15)).await;
            remaining_ephemerals(n, &last_tap).await
        })
        .await
        .unwrap();
    let history = history.lock().unwrap().clone();
    let wire = std::mem::take(&mut *wire.lock().unwrap());
    Outputs {
        history,
        wire,
        nemesis_events,
        injected,
        recovery_ms,
        leftover,
        attempts,
        final_members,
        t0,
        machines,
    }
}

/// Stops every simulated machine and lets the executor drop their tasks. madsim does not
/// cancel tasks when its runtime is dropped, and a server's tasks hold one another (channels,
/// wakers) in cycles: left running, each seed leaked its whole cluster, about 60 MB (a
/// 10-seed run of the 5-node swarm peaked at 535 MB, and a tenth of its time went on
/// faulting in fresh pages). Done after the run's outputs are taken, so no trace changes.
fn stop_machines(rt: &Runtime, machines: &[madsim::task::NodeId]) {
    let handle = rt.handle().clone();
    for &id in machines {
        handle.kill(id);
    }
    // Killed tasks are dropped when the executor next takes them from its queue.
    rt.block_on(async { madsim::time::sleep(Duration::from_millis(1)).await });
}

/// Runs one seed to completion and checks its history.
pub fn run(cfg: RunConfig) -> RunReport {
    let rt = Runtime::with_seed_and_config(cfg.seed, madsim::Config::default());
    zraft::read_planted_bug();
    zraft::server::observer::take();
    zraft::server::chaos::set(None);
    zraft::server::chaos::take_stats();
    let out = rt.block_on(scenario(cfg.clone()));
    zraft::server::chaos::set(None);
    let messages = zraft::server::chaos::take_stats();
    let history = out.history;
    let (times, observed) = zraft::server::observer::take_timed();
    stop_machines(&rt, &out.machines);
    let raft = raft::check(&observed);
    let initial: std::collections::BTreeSet<u64> = (1..=cfg.nodes).collect();
    let mut start = zraft::raft::ConfState::voters(cfg.voters());
    start.learners = initial.difference(&cfg.voters()).copied().collect();
    let membership = membership::check_log(&observed, &start).and_then(|(changes, commits)| {
        let final_checked = membership::check_final(&initial, &out.attempts, out.final_members.as_ref())?;
        Ok(MembershipStats {
            changes,
            commits,
            reconfigs: out.attempts.len(),
            done: out
                .attempts
                .iter()
                .filter(|a| matches!(a.outcome, membership::Outcome::Done(_)))
                .count(),
            final_checked,
        })
    });
    let commits: Vec<model::Commit> = observed
        .iter()
        .filter_map(|o| match o {
            Observation::Committed {
                zxid,
                session,
                cxid,
                kind,
                ..
            } => Some(model::Commit {
                zxid: *zxid,
                session: *session,
                cxid: *cxid,
                kind: kind.clone(),
            }),
            _ => None,
        })
        .collect();
    let started = std::time::Instant::now();
    let model = model::check(&out.wire, &commits);
    let model_us = started.elapsed().as_micros() as u64;
    // What the report page draws, timed like the history (reports before the workload: 0).
    let servers: Vec<(u64, Observation)> = times
        .iter()
        .zip(&observed)
        .filter_map(|(t, o)| {
            let t = (*t)?;
            Some((t.saturating_duration_since(out.t0).as_nanos() as u64, o.clone()))
        })
        .collect();
    let snapshots = observed.iter().fold((0, 0), |(t, i), o| match o {
        Observation::Snapshot { installed: false, .. } => (t + 1, i),
        Observation::Snapshot { installed: true, .. } => (t, i + 1),
        _ => (t, i),
    });
    // The trace: every client operation, every nemesis event, and what every server did
    // (leaders, and applied indices with their tree hashes) in order. Hashed field by field
    // (derived Hash into XXH3): formatting each record with Debug was 4% of the simulator's time.
    let h = trace_hash(&history, &observed, &out.nemesis_events);
    let mut coverage = observed_coverage(&observed);
    for (k, n) in out.injected {
        coverage.insert(format!("fault {k}"), n);
    }
    coverage.extend(nemesis::reach(&out.nemesis_events));
    for (name, n) in ["chaos dropped", "chaos duplicated", "chaos delayed", "chaos replayed"]
        .iter()
        .zip(messages)
    {
        coverage.insert(name.to_string(), n);
    }
    let mut count = |k: &str, n: usize| {
        coverage.insert(k.to_string(), n as u64);
    };
    count(
        "ops",
        history
            .iter()
            .filter(|o| !matches!(o.op, RegOp::Connected | RegOp::WatchEvent))
            .count(),
    );
    count(
        "unknown outcomes",
        history.iter().filter(|o| o.complete.is_none()).count(),
    );
    count(
        "client connections",
        history.iter().filter(|o| o.op == RegOp::Connected).count(),
    );
    count(
        "watch events",
        history.iter().filter(|o| o.op == RegOp::WatchEvent).count(),
    );
    count("pipelined ops", pipelined(&history));
    // With the ops, the mean depth of a batch; the deepest a seed drew, as a share of seeds.
    count("pipelined batches", pipelined_batches(&history));
    count(&format!("pipeline depth {:02} drawn", cfg.pipeline_depth), 1);
    for r in &out.wire {
        if let crate::history::Wire::Sent { request, .. } = &r.wire {
            *coverage.entry(format!("opcode {:?}", request.op_code())).or_default() += 1;
        }
    }
    let mut count = |k: &str, n: usize| {
        coverage.insert(k.to_string(), n as u64);
    };
    if let Ok(m) = &membership {
        if m.reconfigs > 0 {
            count("reconfigs sent", m.reconfigs);
            count("reconfigs done", m.done);
            count("final membership checked", m.final_checked as usize);
        }
    }
    // Wall time, so not part of the trace; the sweep adds it up into a rate per 100k.
    count("model: checker us", model_us as usize);
    if let Ok(s) = &model {
        count("model: transactions replayed", s.txns);
        count("model: replies checked", s.replies);
        count("model: watch events matched", s.events);
        count("model: lost replies, committed", s.unknown_committed);
        count("model: lost replies, not committed", s.unknown_dropped);
    }
    RunReport {
        model,
        model_us,
        linear: linear::check_from(&history, (0, 0), 50_000_000),
        session: session::check(&history),
        sequential: sequential::check(&history),
        watch: watch::check(&history),
        ephemeral: ephemeral::check(&history, &out.leftover),
        lock: lock::check(&history),
        raft,
        membership,
        snapshots,
        messages,
        recovery_ms: out.recovery_ms,
        trace_hash: h,
        coverage,
        servers,
        cfg,
        history,
        nemesis_events: out.nemesis_events,
    }
}

/// Register operations sent together with another one of the same client (a batch shares its
/// invoke time).
fn pipelined(history: &[Op]) -> usize {
    batch_sizes(history).filter(|&n| n > 1).sum()
}

/// Batches of more than one register operation sent together.
fn pipelined_batches(history: &[Op]) -> usize {
    batch_sizes(history).filter(|&n| n > 1).count()
}

/// Register operations per (client, invoke time).
fn batch_sizes(history: &[Op]) -> impl Iterator<Item = usize> {
    let mut batches: BTreeMap<(u32, u64), usize> = BTreeMap::new();
    for o in history.iter().filter(|o| o.op.is_register() || o.op.is_read()) {
        *batches.entry((o.client, o.invoke)).or_default() += 1;
    }
    batches.into_values()
}

/// What the servers reported doing: elections won, leader changes (a term led by another
/// server than the previous led term), votes, snapshots, and the counted events.
fn observed_coverage(observed: &[Observation]) -> BTreeMap<String, u64> {
    let mut c: BTreeMap<String, u64> = BTreeMap::new();
    let mut leaders: BTreeMap<u64, u64> = BTreeMap::new();
    for o in observed {
        let key = match o {
            Observation::Leader { node, term } => {
                leaders.insert(*term, *node);
                "elections won"
            }
            Observation::Vote { .. } => "votes granted",
            Observation::Snapshot { installed: false, .. } => "snapshots taken",
            Observation::Snapshot { installed: true, .. } => "snapshots installed",
            Observation::Recovered { .. } => "server starts from disk",
            Observation::Event { what, .. } => what,
            Observation::ConfChange { .. } => "membership changes applied",
            Observation::ConfAppended { .. } => continue,
            Observation::LeaderCommit { .. }
            | Observation::Entries { .. }
            | Observation::Applied { .. }
            | Observation::Committed { .. } => continue,
        };
        *c.entry(key.to_string()).or_default() += 1;
    }
    let changes = leaders
        .values()
        .zip(leaders.values().skip(1))
        .filter(|(a, b)| a != b)
        .count();
    c.insert("leader changes".into(), changes as u64);
    c
}

#[cfg(test)]
mod tests {
    use super::TraceHasher;
    use std::hash::Hasher;

    /// Gathering the writes must not change the digest: it is XXH3 of every byte written, in
    /// order, however many pieces they reach it in.
    #[test]
    fn trace_hasher_is_xxh3_of_the_bytes_written() {
        for n in [
            0u64,
            1,
            7,
            (TraceHasher::PIECE / 8) as u64,
            3 * TraceHasher::PIECE as u64 / 8 + 5,
        ] {
            let mut h = TraceHasher::default();
            let mut bytes = Vec::new();
            for i in 0..n {
                h.write_u64(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                bytes.extend_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
                h.write_u8(i as u8);
                bytes.push(i as u8);
            }
            assert_eq!(h.finish(), xxhash_rust::xxh3::xxh3_64(&bytes), "{n} writes");
        }
    }
}
