//! The network server: client listener, peer transport and the replica loop.

pub mod config;
pub mod conn;
pub mod node;
pub mod observer;
pub mod peer;
pub mod persist;
pub mod watch;

use config::{socket_addr, Config};
use node::{Event, Node, NodeError, SystemClock};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {msg}")]
    Listen { addr: String, msg: String },
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Runs a server until the process is killed or storage fails.
pub async fn run(cfg: Config, disk: Box<dyn crate::storage::Disk>, seed: u64) -> Result<(), ServerError> {
    run_with_clock(cfg, disk, Box::new(SystemClock), seed).await
}

/// `run` with a given wall clock (the simulator skews it).
pub async fn run_with_clock(
    cfg: Config,
    disk: Box<dyn crate::storage::Disk>,
    clock: Box<dyn node::Clock>,
    seed: u64,
) -> Result<(), ServerError> {
    let cfg = Arc::new(cfg);
    let rate_ppm = clock.rate_ppm();
    let peers_addrs = cfg.peer_addrs();
    let peers = peer::Peers::start(cfg.my_id, &peers_addrs);
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    if let Some(addr) = peers_addrs.get(&cfg.my_id) {
        let bind = socket_addr(&addr.replace(addr.split(':').next().unwrap_or(""), "0.0.0.0"))
            .unwrap_or_else(|| socket_addr("0.0.0.0:0").expect("literal"));
        let l = TcpListener::bind(bind).await.map_err(|e| ServerError::Listen {
            addr: addr.clone(),
            msg: e.to_string(),
        })?;
        tokio::spawn(peer::listen(l, tx.clone()));
    }
    let (node, applied) = Node::open((*cfg).clone(), disk, peers, clock, seed)?;
    let client_addr = cfg.client_addr();
    let listener = TcpListener::bind(socket_addr(&client_addr).ok_or_else(|| ServerError::Listen {
        addr: client_addr.clone(),
        msg: "bad address".into(),
    })?)
    .await
    .map_err(|e| ServerError::Listen {
        addr: client_addr.clone(),
        msg: e.to_string(),
    })?;
    // Ticks drive Raft timers and session expiry.
    let ticker = tx.clone();
    let tick = node::drifted(cfg.raft_tick_ms, rate_ppm);
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(tick);
        loop {
            iv.tick().await;
            if ticker.send(Event::Tick).is_err() {
                return;
            }
        }
    });
    let node_task = tokio::spawn(node.run(rx, tx.clone()));
    let next_conn = Arc::new(AtomicU64::new(1));
    let per_ip: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let accept = async {
        loop {
            let Ok((stream, addr)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let ip = addr.ip().to_string();
            {
                let mut m = per_ip.lock().expect("per-ip lock");
                let n = m.entry(ip.clone()).or_insert(0);
                if cfg.max_client_cnxns > 0 && *n >= cfg.max_client_cnxns {
                    tracing::warn!(%ip, max = cfg.max_client_cnxns, "too many connections from one address (maxClientCnxns)");
                    continue;
                }
                *n += 1;
            }
            let conn = next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (cfg, tx, applied, per_ip) = (cfg.clone(), tx.clone(), applied.clone(), per_ip.clone());
            tokio::spawn(async move {
                conn::serve(stream, conn, ip.clone(), cfg, tx, applied).await;
                let mut m = per_ip.lock().expect("per-ip lock");
                if let Some(n) = m.get_mut(&ip) {
                    *n = n.saturating_sub(1);
                }
            });
        }
    };
    tokio::select! {
        r = node_task => match r {
            Ok(r) => r.map_err(ServerError::from),
            Err(e) => panic!("node task panicked: {e}"),
        },
        _ = accept => Ok(()),
    }
}
