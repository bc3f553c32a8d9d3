//! Applying faults to the simulated ensemble: partitions of every shape, kills (the node's
//! SimDisk crashes with it), pauses, network latency and loss, clock skew, disk faults.

use super::clock::SkewClock;
use super::strike;
use crate::scenario::Fault;
use madsim::runtime::{Handle, NodeHandle};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zraft::storage::{Faults, SimDisk};

/// A server's answer to the `srvr` four-letter word ("" if it does not answer in time).
async fn srvr(id: u64) -> String {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(format!("10.0.0.{id}:2181")),
    )
    .await
    else {
        return String::new();
    };
    if s.write_all(b"srvr").await.is_err() || s.flush().await.is_err() {
        return String::new();
    }
    let mut out = vec![];
    let _ = tokio::time::timeout(Duration::from_millis(300), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a server says it leads.
async fn is_leader(id: u64) -> bool {
    srvr(id).await.contains("Mode: leader")
}

/// Whether a server serves clients (a replica being rebuilt, or one removed from the
/// ensemble, says it is not serving).
async fn serving(id: u64) -> bool {
    srvr(id).await.contains("Mode: ")
}

/// Why a server stopped, if it did (written by the server's madsim node, read by the nemesis).
pub type Exit = Arc<Mutex<Option<String>>>;

/// The simulated ensemble as the nemesis sees it: node handles, their disks and clocks, and
/// which faults are in force (so `heal` can undo them).
pub struct Cluster {
    pub(super) handle: Handle,
    pub(super) nodes: Vec<NodeHandle>,
    pub disks: Vec<SimDisk>,
    clocks: Vec<SkewClock>,
    /// Set by a server that stopped with an error (fail-stop, e.g. on an I/O error).
    exits: Vec<Exit>,
    /// Stopped servers killed by the supervisor, started again at its next look.
    restarting: Vec<usize>,
    pub(super) down: Vec<usize>,
    /// Spares never started yet (a reconfig adding one starts it; faults leave them alone).
    pub(super) outside: BTreeSet<usize>,
    /// Servers whose disk was damaged, until they serve again (rebuilt).
    damaged: BTreeSet<usize>,
    /// The membership as the last successful reconfig reported it (1-based ids).
    pub members: BTreeSet<u64>,
    /// The harness client reconfig requests go through (recorded for the model checker).
    pub operator: Option<crate::workload::Tap>,
    /// Every reconfig sent and what came of it.
    pub attempts: Vec<crate::checker::membership::Attempt>,
    paused: Vec<usize>,
    cut: Vec<(usize, usize)>,
    /// Disks slowed by a strike, back to `disk_latency_us` at the next heal.
    slowed: Vec<usize>,
    disk_latency_us: [u64; 2],
    net_default: madsim::net::Config,
}

impl Cluster {
    /// Marks the servers after the first `members` as spares that have not started (the
    /// caller killed them right after creating them).
    pub fn spares_from(&mut self, members: usize) {
        self.outside = (members..self.nodes.len()).collect();
        self.members = (1..=members as u64).collect();
    }

    /// The nemesis's view of these nodes (call on a madsim node).
    pub fn new(
        nodes: Vec<NodeHandle>,
        disks: Vec<SimDisk>,
        clocks: Vec<SkewClock>,
        exits: Vec<Exit>,
        disk_latency_us: [u64; 2],
    ) -> Self {
        assert!(nodes.len() == disks.len() && nodes.len() == clocks.len() && nodes.len() == exits.len());
        let n = nodes.len() as u64;
        Cluster {
            handle: Handle::current(),
            nodes,
            disks,
            clocks,
            exits,
            restarting: vec![],
            down: vec![],
            outside: BTreeSet::new(),
            damaged: BTreeSet::new(),
            members: (1..=n).collect(),
            operator: None,
            attempts: vec![],
            paused: vec![],
            cut: vec![],
            slowed: vec![],
            disk_latency_us,
            net_default: madsim::net::Config::default(),
        }
    }

    pub(super) fn cut_link(&mut self, a: usize, b: usize) {
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
        for c in &self.clocks {
            c.set_tick_stretch(1);
        }
        for i in self.slowed.drain(..) {
            self.disks[i].set_latency_us(self.disk_latency_us[0], self.disk_latency_us[1]);
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

    fn is_up(&self, i: usize) -> bool {
        !self.down.contains(&i) && !self.paused.contains(&i)
    }

    pub(super) fn isolate(&mut self, lone: usize) {
        for j in (0..self.nodes.len()).filter(|&j| j != lone) {
            self.cut_link(lone, j);
            self.cut_link(j, lone);
        }
    }

    /// Reconnects `i` (links cut by other faults between other servers stay cut).
    fn reconnect(&mut self, i: usize) {
        let net = madsim::net::NetSim::current();
        let (nodes, cut) = (&self.nodes, &mut self.cut);
        cut.retain(|&(a, b)| {
            let keep = a != i && b != i;
            if !keep {
                net.unclog_link(nodes[a].id(), nodes[b].id());
            }
            keep
        });
    }

    /// Waits up to `within` for `trigger` (over the live states now and when waiting began)
    /// to name a server that is up; its 0-based index.
    async fn wait_for(
        &self,
        within: Duration,
        trigger: impl Fn(&strike::States, &strike::States, &dyn Fn(u64) -> bool) -> Option<u64>,
    ) -> Option<usize> {
        let changes = zraft::server::observer::changes();
        let armed = zraft::server::observer::live();
        let up = |id: u64| self.is_up(id as usize - 1);
        let deadline = madsim::time::Instant::now() + within;
        loop {
            // Registered before looking, so that no change between the look and the wait is
            // missed.
            let changed = changes.notified();
            if let Some(id) = trigger(&zraft::server::observer::live(), &armed, &up) {
                return Some(id as usize - 1);
            }
            let left = deadline.saturating_duration_since(madsim::time::Instant::now());
            if left.is_zero() || madsim::time::timeout(left, changed).await.is_err() {
                return None;
            }
        }
    }

    /// The windows a random fault on `i` happened to hit (for the trace and the sweep's counts
    /// of what random faults reach).
    fn windows_note(&self, i: usize) -> String {
        let up = |id: u64| self.is_up(id as usize - 1);
        let w = strike::windows(&zraft::server::observer::live(), self.nodes.len(), i as u64 + 1, &up);
        if w.is_empty() {
            String::new()
        } else {
            format!(" (window: {})", w.join(", "))
        }
    }

    /// Forces a term change, so that an election's windows open: cuts off (or kills) the
    /// current leader; the trace line's prefix.
    fn provoke_election(&mut self, rng: &mut ChaCha8Rng) -> String {
        match self.live_leader() {
            Some(i) if rng.gen_bool(0.5) => {
                self.kill(i);
                format!("kill leader zraft-{}, then ", i + 1)
            }
            Some(i) => {
                self.isolate(i);
                format!("isolate leader zraft-{}, then ", i + 1)
            }
            None => String::new(),
        }
    }

    /// The leader (0-based) as the servers last reported, among those up.
    fn live_leader(&self) -> Option<usize> {
        let up = |id: u64| self.is_up(id as usize - 1);
        strike::leader(&zraft::server::observer::live(), &up).map(|id| id as usize - 1)
    }

    /// Cuts `i` off for 20-400 ms, then reconnects it.
    async fn cut_off_briefly(&mut self, i: usize, rng: &mut ChaCha8Rng) {
        self.isolate(i);
        madsim::time::sleep(Duration::from_millis(rng.gen_range(20..400))).await;
        self.reconnect(i);
    }

    /// A state-aware fault: waits for its window (up to a few seconds; faults that need an
    /// election start one), then strikes.
    async fn strike(&mut self, f: Fault, rng: &mut ChaCha8Rng) -> String {
        let n = self.nodes.len();
        let within = Duration::from_millis(rng.gen_range(1000..4000));
        let provoked = match f {
            Fault::StrikeAfterVote | Fault::StrikeElection | Fault::StrikeNewLeader => self.provoke_election(rng),
            _ => String::new(),
        };
        let line = self.strike_in(f, rng, n, within).await;
        format!("strike {provoked}{line}")
    }

    /// Kills or cuts off (even odds) the leader a trigger named; the trace line.
    fn kill_or_isolate(&mut self, hit: Option<usize>, rng: &mut ChaCha8Rng, what: &str) -> String {
        match hit {
            Some(i) if rng.gen_bool(0.5) => {
                self.kill(i);
                format!("{what}: kill leader zraft-{}", i + 1)
            }
            Some(i) => {
                self.isolate(i);
                format!("{what}: isolate leader zraft-{}", i + 1)
            }
            None => format!("{what}: window not reached"),
        }
    }

    async fn strike_in(&mut self, f: Fault, rng: &mut ChaCha8Rng, n: usize, within: Duration) -> String {
        match f {
            Fault::StrikeMinorityAppend => {
                let min_holders = rng.gen_range(1..=2);
                let hit = self
                    .wait_for(within, |s, _, up| strike::minority_append(s, n, min_holders, up))
                    .await;
                self.kill_or_isolate(hit, rng, "minority-append")
            }
            Fault::StrikeAfterVote => match self.wait_for(within, strike::voted).await {
                Some(i) => {
                    // Back within the election it voted in, as under a process supervisor: a
                    // vote it forgot could go to a second candidate of the same term.
                    let after = Duration::from_millis(rng.gen_range(5..300));
                    self.kill(i);
                    madsim::time::sleep(after).await;
                    self.down.retain(|&d| d != i);
                    self.handle.restart(self.nodes[i].id());
                    format!("after-vote: kill zraft-{}, restarted after {after:?}", i + 1)
                }
                None => "after-vote: window not reached".into(),
            },
            Fault::StrikeElection => match self.wait_for(within, strike::candidate).await {
                Some(i) => {
                    // The candidate ends up on a random side of a random split.
                    let mut ids: Vec<usize> = (0..n).filter(|&j| j != i).collect();
                    ids.shuffle(rng);
                    let k = rng.gen_range(0..=(n - 1) / 2);
                    let (with, against) = ids.split_at(k);
                    let side: Vec<usize> = with.iter().copied().chain([i]).collect();
                    for &x in &side {
                        for &y in against {
                            self.cut_link(x, y);
                            self.cut_link(y, x);
                        }
                    }
                    format!(
                        "election: candidate zraft-{} split with {:?}",
                        i + 1,
                        side.iter().map(|x| x + 1).collect::<Vec<_>>()
                    )
                }
                None => "election: window not reached".into(),
            },
            Fault::StrikeNewLeader => {
                let hit = self.wait_for(within, strike::new_leader).await;
                self.kill_or_isolate(hit, rng, "new-leader")
            }
            Fault::StrikeSlowLeaderDisk => match self.wait_for(within, strike::new_leader_with_old_tail).await {
                Some(i) => {
                    self.disks[i].set_latency_us(50_000, 300_000);
                    self.slowed.push(i);
                    format!("slow-leader-disk: zraft-{} writes take 50-300 ms", i + 1)
                }
                None => "slow-leader-disk: window not reached".into(),
            },
            Fault::StrikeSnapshot => match self.wait_for(within, strike::snapshotted).await {
                Some(i) => {
                    self.kill(i);
                    format!("snapshot: kill zraft-{}", i + 1)
                }
                None => "snapshot: window not reached".into(),
            },
            Fault::LeaderChurn => {
                let rounds = rng.gen_range(3..8);
                let mut cut = vec![];
                for _ in 0..rounds {
                    if let Some(i) = self.live_leader() {
                        if !cut.contains(&(i as u64 + 1)) {
                            cut.push(i as u64 + 1);
                            self.cut_off_briefly(i, rng).await;
                        }
                    }
                    let Some(i) = self.wait_for(within, strike::new_leader).await else {
                        break;
                    };
                    cut.push(i as u64 + 1);
                    self.cut_off_briefly(i, rng).await;
                }
                format!("leader-churn: cut off {} new leaders in turn {cut:?}", cut.len())
            }
            Fault::StrikeStaleSuffix => {
                let Some(l) = self.live_leader() else {
                    return "stale-suffix: window not reached (no leader)".into();
                };
                self.isolate(l);
                let deposed = l as u64 + 1;
                // The others need an election and a snapshot: give them longer.
                let hit = self
                    .wait_for(within * 2, |s, _, up| strike::snapshot_inside_tail(s, deposed, up))
                    .await;
                self.reconnect(l);
                match hit {
                    Some(i) => format!(
                        "stale-suffix: cut off leader zraft-{deposed}, rejoined when zraft-{}'s snapshot ended inside its uncommitted tail",
                        i + 1
                    ),
                    None => format!("stale-suffix: cut off leader zraft-{deposed}, window not reached, rejoined"),
                }
            }
            Fault::StrikeDeposedLeader => {
                let Some(l) = self.live_leader() else {
                    return "deposed-leader: window not reached (no leader)".into();
                };
                // Its timers lag twentyfold: its check-quorum round, which would depose it
                // within an election timeout, comes only after the strike.
                self.isolate(l);
                self.clocks[l].set_tick_stretch(20);
                let hit = self.wait_for(within, strike::new_leader).await;
                // Writes acknowledged by the new leader meanwhile, while its clients sync and
                // read on.
                madsim::time::sleep(Duration::from_millis(rng.gen_range(300..2000))).await;
                self.clocks[l].set_tick_stretch(1);
                self.reconnect(l);
                match hit {
                    Some(i) => format!(
                        "deposed-leader: leader zraft-{} cut off, its timers lagging, until zraft-{} led and wrote",
                        l + 1,
                        i + 1
                    ),
                    None => format!(
                        "deposed-leader: leader zraft-{} cut off, its timers lagging, window not reached",
                        l + 1
                    ),
                }
            }
            other => unreachable!("{other:?} is not state-aware"),
        }
    }

    /// Damages synced data of a member that is up (a third to two thirds into one of its log
    /// segments or its snapshot, so that records follow it: not a torn tail) and kills it;
    /// only while fewer than a minority of the members are being rebuilt (a majority that lost
    /// its data cannot rebuild from anyone).
    async fn corrupt_disk(&mut self, rng: &mut ChaCha8Rng) -> String {
        use zraft::storage::Disk;
        let mut still = BTreeSet::new();
        for &i in &self.damaged {
            if self.down.contains(&i) || !serving(i as u64 + 1).await {
                still.insert(i);
            }
        }
        self.damaged = still;
        if self.damaged.len() >= (self.members.len() - 1) / 2 {
            return format!(
                "corrupt-disk: {:?} still down or rebuilding",
                self.damaged.iter().map(|i| i + 1).collect::<Vec<_>>()
            );
        }
        let up: Vec<usize> = self
            .members
            .iter()
            .map(|&id| id as usize - 1)
            .filter(|&i| self.is_up(i) && !self.outside.contains(&i))
            .collect();
        let Some(&i) = up.choose(rng) else {
            return "corrupt-disk: no member up".into();
        };
        let dir = format!("/data/{}/raft", i + 1);
        let mut handle = self.disks[i].clone();
        let files: Vec<(String, usize)> = handle
            .list(&dir)
            .unwrap_or_default()
            .into_iter()
            // Segments and snapshots (not the spare, nor temp files).
            .filter(|f| {
                (f.starts_with("wal-") && f.ends_with(".log")) || (f.starts_with("snap-") && f.ends_with(".snap"))
            })
            .map(|f| format!("{dir}/{f}"))
            .filter_map(|p| {
                // The bytes written: a preallocated segment's zeros after its records are not
                // data, and a flip in its last batch would read as a torn tail.
                let written = handle.read(&p).ok()?.iter().rposition(|&x| x != 0)? + 1;
                (written > 256).then_some((p, written))
            })
            .collect();
        let Some((path, len)) = files.choose(rng).cloned() else {
            return format!("corrupt-disk: zraft-{} has nothing to damage", i + 1);
        };
        let offset = rng.gen_range(len / 3..2 * len / 3);
        self.disks[i].corrupt(&path, offset, rng.gen_range(0..8));
        self.kill(i);
        self.damaged.insert(i);
        format!("corrupt-disk: {path} at {offset} of {len}, kill zraft-{}", i + 1)
    }

    fn kill(&mut self, i: usize) {
        if !self.down.contains(&i) && !self.outside.contains(&i) {
            self.handle.kill(self.nodes[i].id());
            self.disks[i].crash();
            self.down.push(i);
        }
    }

    pub(super) async fn leader(&self) -> Option<usize> {
        for (i, _) in self.nodes.iter().enumerate() {
            if !self.down.contains(&i) && !self.paused.contains(&i) && is_leader(i as u64 + 1).await {
                return Some(i);
            }
        }
        None
    }

    /// Applies one fault; returns a line for the trace.
    pub async fn inject(&mut self, f: Fault, rng: &mut ChaCha8Rng) -> String {
        if f.state_aware() {
            return self.strike(f, rng).await;
        }
        let n = self.nodes.len();
        let mut any = || rng.gen_range(0..n);
        match f {
            Fault::Isolate | Fault::IsolateLeader => {
                let lone = if f == Fault::IsolateLeader {
                    self.leader().await.unwrap_or_else(&mut any)
                } else {
                    any()
                };
                let note = self.windows_note(lone);
                self.isolate(lone);
                format!("isolate zraft-{}{note}", lone + 1)
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
                let note = self.windows_note(i);
                self.kill(i);
                format!("kill zraft-{}{note}", i + 1)
            }
            Fault::KillAll => {
                for i in 0..n {
                    self.kill(i);
                }
                "kill all".into()
            }
            Fault::Pause => {
                let i = any();
                if !self.paused.contains(&i) && !self.down.contains(&i) && !self.outside.contains(&i) {
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
            Fault::CorruptDisk => self.corrupt_disk(rng).await,
            Fault::Reconfig => self.reconfig(None, rng).await,
            Fault::ReconfigAdd => self.reconfig(Some("add"), rng).await,
            Fault::ReconfigRemove => self.reconfig(Some("remove"), rng).await,
            Fault::ReconfigReplace => self.reconfig(Some("replace"), rng).await,
            Fault::ReconfigRemoveIsolated => self.reconfig(Some("remove-isolated"), rng).await,
            Fault::ReconfigRemoveThenSplit => self.reconfig(Some("remove-then-split"), rng).await,
            strike => unreachable!("{strike:?} is state-aware: handled above"),
        }
    }
}
