//! One simulated run (madsim only): a zraft ensemble on simulated nodes with SimDisks,
//! register clients recording a history, and a nemesis that partitions, kills and restarts.
//! Everything random derives from the run's seed.

use crate::checker::{linear, session};
use crate::history::{Op, Outcome, RegOp};
use madsim::runtime::{Handle, NodeHandle, Runtime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zraft::client::{Client, ClientError};
use zraft::jute::*;
use zraft::server::config::{Config, Peer};
use zraft::storage::{Faults, SimDisk};

/// What a run does; every field derives from the seed unless set.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    pub nodes: u64,
    pub clients: u32,
    pub keys: u32,
    pub secs: u64,
    pub nemesis: bool,
}

impl RunConfig {
    /// The options a seed chooses.
    pub fn from_seed(seed: u64, secs: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        RunConfig {
            seed,
            nodes: 3,
            clients: r.gen_range(2..=5),
            keys: r.gen_range(1..=3),
            secs,
            nemesis: true,
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
    /// Hash of the history and nemesis trace: equal seeds must give equal hashes.
    pub trace_hash: u64,
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
        ..Config::default()
    }
}

fn fnv(h: u64, b: &[u8]) -> u64 {
    b.iter().fold(h, |h, x| (h ^ *x as u64).wrapping_mul(0x0100_0000_01b3))
}

fn now_ns(start: madsim::time::Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

fn parse(d: &Option<Vec<u8>>) -> u64 {
    d.as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

async fn client_loop(id: u32, cfg: RunConfig, start: madsim::time::Instant, history: Arc<Mutex<Vec<Op>>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_mul(1000) + id as u64);
    let deadline = Duration::from_secs(cfg.secs);
    let mut conn: Option<Client> = None;
    let mut session: Option<i64> = None;
    // Clients mostly stay with a home server (resuming their session there), sometimes move.
    let home = (id as u64 % cfg.nodes) + 1;
    let mut last_zxid = 0;
    let mut versions: BTreeMap<String, i32> = BTreeMap::new();
    let mut counter = 0u64;
    let t = Duration::from_secs(2);
    while start.elapsed() < deadline {
        if conn.is_none() {
            let node = if rng.gen_bool(0.7) {
                home
            } else {
                rng.gen_range(1..=cfg.nodes)
            };
            let resume = session.map(|s| (s, zraft::session::password(s)));
            match Client::connect(&format!("10.0.0.{node}:2181"), 4000, resume, last_zxid).await {
                Ok(c) => {
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
        let invoke = now_ns(start);
        let kind = rng.gen_range(0..3);
        let (op, result) = match kind {
            0 => {
                let r = match c.ok(Request::Sync(SyncRequest { path: key.clone() }), t).await {
                    Ok(_) => c.get(&key).await.map(|(d, s)| Some((parse(&d), s.version))),
                    Err(e) => Err(e),
                };
                (RegOp::Read, r)
            }
            1 => {
                let req = SetDataRequest {
                    path: key.clone(),
                    data: Some(value.to_string().into_bytes()),
                    version: -1,
                };
                (RegOp::Write(value), c.ok(Request::SetData(req), t).await.map(|_| None))
            }
            _ => {
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
            }
        };
        let complete = now_ns(start);
        let session = c.session_id();
        last_zxid = last_zxid.max(c.last_zxid());
        let (outcome, complete) = match result {
            Ok(seen) => {
                if let Some((_, v)) = seen {
                    versions.insert(key.clone(), v);
                }
                (Outcome::Ok(seen), Some(complete))
            }
            Err(ClientError::Server(ErrorCode::BadVersion)) => (Outcome::Fail, Some(complete)),
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
            session,
            key,
            op,
            invoke,
            complete,
            outcome,
            zxid: last_zxid,
        });
    }
}

async fn scenario(cfg: RunConfig) -> (Vec<Op>, Vec<String>) {
    let handle = Handle::current();
    let mut nodes: Vec<NodeHandle> = vec![];
    let mut disks = vec![];
    for id in 1..=cfg.nodes {
        let disk = SimDisk::new(
            cfg.seed ^ id,
            Faults {
                torn: true,
                ..Faults::default()
            },
        );
        disks.push(disk.clone());
        let n = cfg.nodes;
        let seed = cfg.seed;
        let node = handle
            .create_node()
            .name(format!("zraft-{id}"))
            .ip(format!("10.0.0.{id}").parse().unwrap())
            .init(move || {
                let disk = disk.clone();
                async move {
                    let _ = zraft::server::run(server_config(id, n), Box::new(disk), seed ^ id).await;
                }
            })
            .build();
        nodes.push(node);
    }
    let start = madsim::time::Instant::now();
    // Create the registers before the clock of the workload starts mattering.
    let setup = handle
        .create_node()
        .name("setup")
        .ip("10.0.1.1".parse().unwrap())
        .build();
    let keys = cfg.keys;
    setup
        .spawn(async move {
            loop {
                madsim::time::sleep(Duration::from_millis(500)).await;
                let Ok(mut c) = Client::connect("10.0.0.1:2181", 4000, None, 0).await else {
                    continue;
                };
                let mut ok = true;
                for k in 0..keys {
                    match c.create(&format!("/k{k}"), b"0", CreateMode::Persistent).await {
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
    for id in 0..cfg.clients {
        let node = handle
            .create_node()
            .name(format!("client-{id}"))
            .ip(format!("10.0.2.{}", id + 1).parse().unwrap())
            .build();
        let (cfg2, h) = (cfg.clone(), history.clone());
        tasks.push(node.spawn(client_loop(id, cfg2, t0, h)));
    }
    let mut events = vec![];
    if cfg.nemesis {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xdead_beef);
        let net = madsim::net::NetSim::current();
        let mut down: Vec<usize> = vec![];
        let mut cut: Vec<(usize, usize)> = vec![];
        while t0.elapsed() < Duration::from_secs(cfg.secs) {
            madsim::time::sleep(Duration::from_millis(rng.gen_range(1000..4000))).await;
            let at = t0.elapsed().as_millis();
            match rng.gen_range(0..4) {
                0 if down.is_empty() => {
                    let i = rng.gen_range(0..nodes.len());
                    handle.kill(nodes[i].id());
                    disks[i].crash();
                    down.push(i);
                    events.push(format!("{at}ms kill zraft-{}", i + 1));
                }
                1 => {
                    for i in down.drain(..) {
                        handle.restart(nodes[i].id());
                        events.push(format!("{at}ms restart zraft-{}", i + 1));
                    }
                }
                2 if cut.is_empty() => {
                    let lone = rng.gen_range(0..nodes.len());
                    for j in 0..nodes.len() {
                        if j != lone {
                            net.clog_link(nodes[lone].id(), nodes[j].id());
                            net.clog_link(nodes[j].id(), nodes[lone].id());
                            cut.push((lone, j));
                        }
                    }
                    events.push(format!("{at}ms isolate zraft-{}", lone + 1));
                }
                _ => {
                    for (a, b) in cut.drain(..) {
                        net.unclog_link(nodes[a].id(), nodes[b].id());
                        net.unclog_link(nodes[b].id(), nodes[a].id());
                    }
                    events.push(format!("{at}ms heal"));
                }
            }
        }
        for (a, b) in cut.drain(..) {
            net.unclog_link(nodes[a].id(), nodes[b].id());
            net.unclog_link(nodes[b].id(), nodes[a].id());
        }
        for i in down.drain(..) {
            handle.restart(nodes[i].id());
        }
        events.push(format!("{}ms heal all", t0.elapsed().as_millis()));
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = start;
    let h = history.lock().unwrap().clone();
    (h, events)
}

/// Runs one seed to completion and checks its history.
pub fn run(cfg: RunConfig) -> RunReport {
    let rt = Runtime::with_seed_and_config(cfg.seed, madsim::Config::default());
    let (history, nemesis_events) = rt.block_on(scenario(cfg.clone()));
    let linear = linear::check_from(&history, (0, 0), 50_000_000);
    let session = session::check(&history);
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
        trace_hash: h,
    }
}
