//! Applying faults to the simulated ensemble: partitions of every shape, kills (the node's
//! SimDisk crashes with it), pauses, network latency and loss, clock skew, disk faults.

use super::clock::SkewClock;
use crate::scenario::Fault;
use madsim::runtime::{Handle, NodeHandle};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zraft::storage::{Faults, SimDisk};

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

/// Why a server stopped, if it did (written by the server's madsim node, read by the nemesis).
pub type Exit = Arc<Mutex<Option<String>>>;

/// The simulated ensemble as the nemesis sees it: node handles, their disks and clocks, and
/// which faults are in force (so `heal` can undo them).
pub struct Cluster {
    handle: Handle,
    nodes: Vec<NodeHandle>,
    pub disks: Vec<SimDisk>,
    clocks: Vec<SkewClock>,
    /// Set by a server that stopped with an error (fail-stop, e.g. on an I/O error).
    exits: Vec<Exit>,
    /// Stopped servers killed by the supervisor, started again at its next look.
    restarting: Vec<usize>,
    down: Vec<usize>,
    paused: Vec<usize>,
    cut: Vec<(usize, usize)>,
    net_default: madsim::net::Config,
}

impl Cluster {
    /// The nemesis's view of these nodes (call on a madsim node).
    pub fn new(nodes: Vec<NodeHandle>, disks: Vec<SimDisk>, clocks: Vec<SkewClock>, exits: Vec<Exit>) -> Self {
        assert!(nodes.len() == disks.len() && nodes.len() == clocks.len() && nodes.len() == exits.len());
        Cluster {
            handle: Handle::current(),
            nodes,
            disks,
            clocks,
            exits,
            restarting: vec![],
            down: vec![],
            paused: vec![],
            cut: vec![],
            net_default: madsim::net::Config::default(),
        }
    }

    fn cut_link(&mut self, a: usize, b: usize) {
        madsim::net::NetSim::current().clog_link(self.nodes[a].id(), self.nodes[b].id());
        self.cut.push((a, b));
    }

    /// Undoes every fault in force: links, pauses, killed nodes (restarted), network settings.
    pub fn heal(&mut self) {
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
        zraft::server::chaos::set(None);
    }

    /// Like a process supervisor: a server that stopped with an error is killed (its disk loses
    /// what was not synced) and started again at the next look (madsim frees its sockets only
    /// once the kill has taken effect); returns a trace line for each.
    pub fn restart_exited(&mut self) -> Vec<String> {
        let mut lines = vec![];
        for i in std::mem::take(&mut self.restarting) {
            if !self.down.contains(&i) {
                self.handle.restart(self.nodes[i].id());
                lines.push(format!("zraft-{} restarted", i + 1));
            }
        }
        for i in 0..self.nodes.len() {
            let Some(why) = self.exits[i].lock().expect("exit lock").take() else {
                continue;
            };
            if self.down.contains(&i) {
                continue;
            }
            self.handle.kill(self.nodes[i].id());
            self.disks[i].crash();
            self.restarting.push(i);
            lines.push(format!("zraft-{} stopped: {why}", i + 1));
        }
        lines
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
    pub async fn inject(&mut self, f: Fault, rng: &mut ChaCha8Rng) -> String {
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
                let off = rng.gen_range(-60_000..60_000);
                let drift = rng.gen_range(-20_000..20_000);
                self.clocks[i].skew(off, drift);
                format!("clock zraft-{} offset {off} ms drift {drift} ppm", i + 1)
            }
            Fault::MessageChaos => {
                let c = zraft::server::chaos::MessageChaos {
                    drop: [0.01, 0.05, 0.2][rng.gen_range(0..3)],
                    duplicate: [0.01, 0.05, 0.2][rng.gen_range(0..3)],
                    delay: [0.05, 0.2, 0.5][rng.gen_range(0..3)],
                    max_delay: Duration::from_millis(rng.gen_range(5..500)),
                    replay: [0.01, 0.05][rng.gen_range(0..2)],
                    seed: rng.gen(),
                };
                let line = format!(
                    "message chaos drop {} duplicate {} delay {} up to {:?} replay {}",
                    c.drop, c.duplicate, c.delay, c.max_delay, c.replay
                );
                zraft::server::chaos::set(Some(c));
                line
            }
            Fault::DiskFaults => {
                let i = any();
                let io_error = [0.0, 0.0005, 0.002][rng.gen_range(0..3)];
                self.disks[i].set_faults(Faults {
                    torn: true,
                    garble_unsynced: true,
                    read_flip: 0.01,
                    io_error,
                    ..Faults::default()
                });
                format!("disk faults on zraft-{} (I/O errors {io_error})", i + 1)
            }
        }
    }
}
