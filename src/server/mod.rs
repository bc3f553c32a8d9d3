//! The network server: client listener, peer transport and the replica loop.

#[cfg(madsim)]
pub mod chaos;
pub mod config;
pub mod conn;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod observer;
pub mod peer;
pub mod persist;
#[cfg(not(madsim))]
pub mod tls;
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
    #[cfg(not(madsim))]
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The TLS acceptor of the secure client port. Simulation builds have no TLS: there the type
/// has no value and a listener is always plaintext.
#[cfg(not(madsim))]
type Acceptor = tls::TlsAcceptor;
#[cfg(madsim)]
#[derive(Clone)]
enum Acceptor {}

/// What every client connection of a server shares.
#[derive(Clone)]
struct Shared {
    cfg: Arc<Config>,
    node: mpsc::UnboundedSender<Event>,
    applied: Arc<std::sync::atomic::AtomicI64>,
    next_conn: Arc<AtomicU64>,
    per_ip: Arc<Mutex<BTreeMap<String, u32>>>,
}

async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    let sa = socket_addr(addr).ok_or_else(|| ServerError::Listen {
        addr: addr.into(),
        msg: "bad address".into(),
    })?;
    TcpListener::bind(sa).await.map_err(|e| ServerError::Listen {
        addr: addr.into(),
        msg: e.to_string(),
    })
}

/// Accepts client connections on one listener until the server stops; with an acceptor, each
/// connection first completes a TLS handshake (within the handshake deadline).
async fn accept_loop(listener: TcpListener, tls: Option<Acceptor>, sh: Shared) {
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ip = addr.ip().to_string();
        {
            let mut m = sh.per_ip.lock().expect("per-ip lock");
            let n = m.entry(ip.clone()).or_insert(0);
            if sh.cfg.max_client_cnxns > 0 && *n >= sh.cfg.max_client_cnxns {
                tracing::warn!(%ip, max = sh.cfg.max_client_cnxns, "too many connections from one address (maxClientCnxns)");
                continue;
            }
            *n += 1;
        }
        let conn = sh.next_conn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sh, tls) = (sh.clone(), tls.clone());
        tokio::spawn(async move {
            let (cfg, tx, applied) = (sh.cfg.clone(), sh.node.clone(), sh.applied.clone());
            match tls {
                None => {
                    conn::serve(stream, conn, ip.clone(), cfg, tx, applied).await;
                }
                #[cfg(not(madsim))]
                Some(acceptor) => {
                    let deadline = std::time::Duration::from_millis(cfg.max_session_timeout_ms.max(1000) as u64);
                    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            conn::serve(s, conn, ip.clone(), cfg, tx, applied).await;
                        }
                        Ok(Err(e)) => tracing::info!(%ip, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::info!(%ip, "TLS handshake timed out"),
                    }
                }
                #[cfg(madsim)]
                Some(never) => match never {},
            }
            let mut m = sh.per_ip.lock().expect("per-ip lock");
            if let Some(n) = m.get_mut(&ip) {
                *n = n.saturating_sub(1);
            }
        });
    }
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
    let stretch = clock.tick_stretch();
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
        tokio::spawn(peer::listen(l, tx.clone(), peers.announced()));
    }
    let (node, applied) = Node::open((*cfg).clone(), disk, peers, clock, seed)?;
    // Listeners are bound before the node runs, so a port in use fails the start at once.
    let plain = if cfg.plain_client_port {
        Some(bind(&cfg.client_addr()).await?)
    } else {
        None
    };
    #[cfg(not(madsim))]
    let secure = match &cfg.tls {
        Some(t) => Some((bind(&t.addr()).await?, tls::acceptor(t)?)),
        None => None,
    };
    #[cfg(madsim)]
    let secure: Option<(TcpListener, Acceptor)> = None;
    if let Some(addr) = &cfg.metrics_addr {
        tokio::spawn(metrics::serve(bind(addr).await?, tx.clone()));
    }
    // Ticks drive Raft timers and session expiry.
    let ticker = tx.clone();
    let tick = node::drifted(cfg.raft_tick_ms, rate_ppm);
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(tick);
        let mut count = 0u32;
        loop {
            iv.tick().await;
            if let Some(n) = &stretch {
                count = count.wrapping_add(1);
                if !count.is_multiple_of(n.load(std::sync::atomic::Ordering::Relaxed).max(1)) {
                    continue;
                }
            }
            if ticker.send(Event::Tick).is_err() {
                return;
            }
        }
    });
    let node_task = tokio::spawn(node.run(rx, tx.clone()));
    let sh = Shared {
        cfg: cfg.clone(),
        node: tx.clone(),
        applied,
        next_conn: Arc::new(AtomicU64::new(1)),
        per_ip: Arc::default(),
    };
    let accept = async {
        let plain = async {
            if let Some(l) = plain {
                accept_loop(l, None, sh.clone()).await
            }
        };
        let secure = async {
            if let Some((l, acceptor)) = secure {
                accept_loop(l, Some(acceptor), sh.clone()).await
            }
        };
        tokio::join!(plain, secure);
        // Neither port is open (a configuration error would have stopped the start): run
        // the node alone.
        std::future::pending::<()>().await
    };
    tokio::select! {
        r = node_task => match r {
            Ok(r) => r.map_err(ServerError::from),
            Err(e) => panic!("node task panicked: {e}"),
        },
        _ = accept => Ok(()),
    }
}
