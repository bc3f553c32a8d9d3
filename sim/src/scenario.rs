//! Scenario files (`scenarios/*.toml`): cluster size, clients, workload mix, duration, nemesis
//! (timed events and/or random rates) and seed range. Unknown or mistyped fields are errors
//! that name the file, line and field.

use serde::Deserialize;
use std::ops::Range;

/// The scenario files shipped in the repository's `scenarios/`, sorted by name.
pub fn shipped() -> Vec<std::path::PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("the scenarios directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// A fault the nemesis can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Cut one random server off from the others (both directions).
    Isolate,
    /// Cut the current leader off.
    IsolateLeader,
    /// Split the servers into two random halves.
    Halves,
    /// Drop traffic from one random server to another, one way only.
    OneWay,
    /// Each server talks only to its ring neighbours.
    Ring,
    /// Two halves joined by a single bridge server.
    Bridge,
    /// Kill a random server (its disk loses unsynced writes) and restart it later.
    Kill,
    /// Kill the leader.
    KillLeader,
    /// Kill every server at once, then restart them.
    KillAll,
    /// Stop-the-world pause of a random server, resumed later.
    Pause,
    /// Raise network latency (and jitter: reordering).
    Delay,
    /// Drop a share of packets.
    Loss,
    /// Skew and drift one server's wall clock.
    ClockSkew,
    /// Tear and garble unsynced writes on the next crash of a server, and flip bits on read.
    DiskFaults,
    /// Single Raft messages between servers dropped, duplicated, held back behind later ones,
    /// or an old one sent again as from a stale connection (until the next heal).
    MessageChaos,
    /// State-aware: kill or cut off the leader the moment its newest entry is held by fewer
    /// servers than a quorum (only itself, or it and a minority of followers).
    StrikeMinorityAppend,
    /// State-aware: kill a server the moment it has voted for another (before the vote can
    /// be durable).
    StrikeAfterVote,
    /// State-aware: split the servers the moment a candidate appears.
    StrikeElection,
    /// State-aware: kill or cut off a leader the moment it is elected, before its first entry
    /// commits.
    StrikeNewLeader,
    /// State-aware: kill a server right after it took or installed a snapshot; it restarts
    /// from it while the others go ahead.
    StrikeSnapshot,
    /// State-aware: cut off each newly elected leader at once, several times in a row.
    LeaderChurn,
    /// State-aware: the moment a leader is elected while its log has uncommitted entries of
    /// earlier terms, its disk slows down (50-300 ms per write) until the next heal, so that
    /// followers acknowledge its first entry before it is durable on the leader itself.
    StrikeSlowLeaderDisk,
    /// State-aware: cut the leader off from the other servers (its clients still reach it, so
    /// it holds entries no one else has) until the new leader's latest snapshot falls inside
    /// that uncommitted tail, then let it rejoin: it catches up by installing a snapshot
    /// whose last entry conflicts with its own entry there, and must drop its whole tail.
    StrikeStaleSuffix,
    /// State-aware: cut the leader off from the other servers (its clients still reach it)
    /// with its timers lagging twentyfold, until they have elected a new leader and gone on
    /// writing: its check-quorum round comes late, so it believes it leads while its clients
    /// sync and read there. A leader that answers read index without a quorum round serves
    /// them stale reads.
    StrikeDeposedLeader,
    /// Flip a bit in the middle of a random member's log segment or snapshot (synced data:
    /// damage on the platter) and kill it; it restarts, finds the damage, moves its files
    /// aside and rebuilds itself from the others (replica repair).
    CorruptDisk,
    /// Change the membership with a reconfig request (as the super user, to a random member):
    /// any of the `reconfig-*` kinds possible now; never below three members.
    Reconfig,
    /// Add a server from outside the ensemble (a spare, started for it).
    ReconfigAdd,
    /// Remove a random member (the leader too).
    ReconfigRemove,
    /// Replace a random member by a server from outside (one whole new membership).
    ReconfigReplace,
    /// Cut a follower off, then remove it.
    ReconfigRemoveIsolated,
    /// Remove a follower, then split the leader and it from the rest: the removed member must
    /// no longer count towards the leader's quorum.
    ReconfigRemoveThenSplit,
}

impl Fault {
    /// The name scenario files use (`kill-leader`).
    pub fn name(self) -> String {
        let mut s = String::new();
        for (i, c) in format!("{self:?}").chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                s.push('-');
            }
            s.push(c.to_ascii_lowercase());
        }
        s
    }

    /// Whether the nemesis times this fault on the protocol's state.
    pub fn state_aware(self) -> bool {
        matches!(
            self,
            Fault::StrikeMinorityAppend
                | Fault::StrikeAfterVote
                | Fault::StrikeElection
                | Fault::StrikeNewLeader
                | Fault::StrikeSnapshot
                | Fault::LeaderChurn
                | Fault::StrikeSlowLeaderDisk
                | Fault::StrikeStaleSuffix
                | Fault::StrikeDeposedLeader
        )
    }
}

/// A nemesis action at a fixed simulated time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimedEvent {
    /// Milliseconds after the workload starts.
    pub at_ms: u64,
    pub fault: Option<Fault>,
    /// `true` to heal everything (network, paused and killed servers) at this time.
    #[serde(default)]
    pub heal: bool,
}

/// The nemesis section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nemesis {
    /// Faults drawn at random, one every `interval_ms` (a range).
    #[serde(default)]
    pub faults: Vec<Fault>,
    #[serde(default = "default_interval")]
    pub interval_ms: [u64; 2],
    /// Each seed picks a random subset of `faults` and its own interval (swarm testing).
    #[serde(default)]
    pub swarm: bool,
    #[serde(default)]
    pub events: Vec<TimedEvent>,
    /// Each node's timers (Raft ticks, session timeouts) run up to this many ppm fast or slow,
    /// drawn per node and seed.
    #[serde(default)]
    pub tick_drift_ppm: u32,
    /// Pinned scenarios: each node's timer drift in ppm (one value per node).
    #[serde(default)]
    pub tick_drift_ppm_nodes: Vec<i64>,
    /// Bounds, in microseconds, of the disks' latency: each seed draws a range inside them,
    /// and every batch of writes with its fsync then takes a time from that range (simulated),
    /// during which a crash loses the batch.
    #[serde(default = "default_disk_latency")]
    pub disk_latency_us: [u64; 2],
}

fn default_disk_latency() -> [u64; 2] {
    [0, 10_000]
}

impl Default for Nemesis {
    fn default() -> Self {
        Nemesis {
            faults: vec![],
            interval_ms: default_interval(),
            swarm: false,
            events: vec![],
            tick_drift_ppm: 0,
            tick_drift_ppm_nodes: vec![],
            disk_latency_us: default_disk_latency(),
        }
    }
}

fn default_interval() -> [u64; 2] {
    [1000, 4000]
}

/// The workload section: weights of register operations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    #[serde(default = "one")]
    pub read: u32,
    #[serde(default = "one")]
    pub write: u32,
    #[serde(default = "one")]
    pub cas: u32,
    /// Sequential creates under /seq.
    #[serde(default = "one")]
    pub seq: u32,
    /// Number of registers (keys).
    #[serde(default = "two")]
    pub keys: u32,
    /// Clients running the lock recipe, besides the register clients.
    #[serde(default = "two")]
    pub lock_clients: u32,
    /// Weight of pipelined batches (compare-and-sets, syncs and reads of one key sent without
    /// waiting, as kazoo's async calls do).
    #[serde(default = "one")]
    pub pipeline: u32,
    /// Range the batch depth (requests in flight) is drawn from, once per seed.
    #[serde(default = "default_pipeline_depth")]
    pub pipeline_depth: [u32; 2],
    /// Weight of the every-opcode workload (pipelined batches of any request on `/t`,
    /// checked by the model checker).
    #[serde(default = "one")]
    pub ops: u32,
}

fn default_pipeline_depth() -> [u32; 2] {
    [2, 16]
}

fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            read: 1,
            write: 1,
            cas: 1,
            seq: 1,
            keys: 2,
            lock_clients: 2,
            pipeline: 1,
            pipeline_depth: default_pipeline_depth(),
            ops: 1,
        }
    }
}

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    #[serde(default = "three")]
    pub nodes: u64,
    /// Servers outside the initial ensemble that `reconfig` faults may add (ids after
    /// `nodes`; each is started the first time it is added, with a zoo.cfg listing the
    /// initial ensemble and itself).
    #[serde(default)]
    pub spare_nodes: u64,
    /// The last this many of the `nodes` are observers (`server.N=...:observer`: Raft
    /// learners that receive the log, serve reads and forward writes).
    #[serde(default)]
    pub observers: u64,
    /// Clients, as a range each seed draws from.
    #[serde(default = "clients")]
    pub clients: [u32; 2],
    #[serde(default = "secs")]
    pub seconds: u64,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default)]
    pub nemesis: Nemesis,
    /// Seeds `cargo sim-test` runs (`"0..3"`); the CLI's --seeds overrides.
    #[serde(default = "seeds")]
    pub seeds: String,
    /// Simulated seconds after healing within which operations must succeed again.
    #[serde(default = "liveness")]
    pub liveness_secs: u64,
    /// The servers' `snapCount` (entries between snapshots), as a range each seed draws from:
    /// small, so that every run compacts its log and restarted nodes install snapshots.
    #[serde(default = "snap_count")]
    pub snap_count: [u64; 2],
    /// Bytes of entries per Raft append: small values make a leader send its log in many
    /// short appends, each a separate message to lose, delay or reorder.
    #[serde(default = "max_append_bytes")]
    pub max_append_bytes: usize,
    /// How often the leader looks for containers and TTL nodes to reap
    /// (`znode.container.checkIntervalMs`; ZooKeeper's default is a minute, the harness's 1 s).
    #[serde(default = "container_check_ms")]
    pub container_check_ms: u64,
    /// One seed's exact choices (what `zraft-sim shrink` writes): every range is taken as is
    /// instead of drawn from (`clients`, `snap_count`, `pipeline_depth`: their first value;
    /// `disk_latency_us` and `interval_ms`: the range itself; timer drift from
    /// `tick_drift_ppm_nodes`), and `faults` are not subset even with `swarm`.
    #[serde(default)]
    pub pinned: bool,
}

fn container_check_ms() -> u64 {
    1000
}

fn max_append_bytes() -> usize {
    1 << 20
}

fn snap_count() -> [u64; 2] {
    [200, 2000]
}

fn three() -> u64 {
    3
}
fn clients() -> [u32; 2] {
    [2, 5]
}
fn secs() -> u64 {
    20
}
fn seeds() -> String {
    "0..3".into()
}
fn liveness() -> u64 {
    15
}

/// A scenario that cannot be used.
#[derive(Debug)]
pub struct ScenarioError(pub String);

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses "a..b" (or a single number).
pub fn parse_seeds(s: &str) -> Option<Range<u64>> {
    match s.split_once("..") {
        Some((a, b)) => Some(a.trim().parse().ok()?..b.trim().parse().ok()?),
        None => {
            let n: u64 = s.trim().parse().ok()?;
            Some(n..n + 1)
        }
    }
}

impl Scenario {
    /// Parses scenario text; errors name the file, line and field.
    pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|sp| text[..sp.start].lines().count().max(1));
            ScenarioError(format!(
                "{file}:{}: {}",
                line.map_or("?".into(), |l| l.to_string()),
                e.message()
            ))
        })?;
        s.name = std::path::Path::new(file)
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or(file)
            .to_string();
        if s.nodes == 0 || s.nodes > 9 {
            return Err(ScenarioError(format!(
                "{file}: `nodes`: must be 1..=9, got {}",
                s.nodes
            )));
        }
        if s.pinned
            && !s.nemesis.tick_drift_ppm_nodes.is_empty()
            && s.nemesis.tick_drift_ppm_nodes.len() as u64 != s.nodes
        {
            return Err(ScenarioError(format!(
                "{file}: `nemesis.tick_drift_ppm_nodes`: one value per node ({}), got {}",
                s.nodes,
                s.nemesis.tick_drift_ppm_nodes.len()
            )));
        }
        if s.clients[0] == 0 || s.clients[0] > s.clients[1] {
            return Err(ScenarioError(format!(
                "{file}: `clients`: need 1 <= min <= max, got {:?}",
                s.clients
            )));
        }
        if s.nemesis.interval_ms[0] == 0 || s.nemesis.interval_ms[0] > s.nemesis.interval_ms[1] {
            return Err(ScenarioError(format!(
                "{file}: `nemesis.interval_ms`: need 0 < min <= max"
            )));
        }
        if s.nemesis.tick_drift_ppm >= 500_000 {
            return Err(ScenarioError(format!(
                "{file}: `nemesis.tick_drift_ppm`: must be below 500000 (50%), got {}",
                s.nemesis.tick_drift_ppm
            )));
        }
        if parse_seeds(&s.seeds).is_none() {
            return Err(ScenarioError(format!(
                "{file}: `seeds`: expected \"a..b\", got {:?}",
                s.seeds
            )));
        }
        if s.workload.read + s.workload.write + s.workload.cas + s.workload.seq == 0 || s.workload.keys == 0 {
            return Err(ScenarioError(format!(
                "{file}: `workload`: needs a non-zero weight and at least one key"
            )));
        }
        Ok(s)
    }

    /// Loads a scenario file.
    pub fn load(path: &str) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError(format!("{path}: {e}")))?;
        Self::parse(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_line_and_field() {
        let e = Scenario::parse("x.toml", "description = \"d\"\nnodes = \"three\"\n").unwrap_err();
        assert!(e.0.starts_with("x.toml:2:") && e.0.contains("invalid type"), "{e}");
        let e = Scenario::parse("x.toml", "description = \"d\"\n[nemesis]\nfaults = [\"meteor\"]\n").unwrap_err();
        assert!(e.0.starts_with("x.toml:3:") && e.0.contains("meteor"), "{e}");
        let e = Scenario::parse("x.toml", "description = \"d\"\nnodez = 3\n").unwrap_err();
        assert!(e.0.contains("nodez"), "{e}");
        let e = Scenario::parse("x.toml", "description = \"d\"\nclients = [3, 1]\n").unwrap_err();
        assert!(e.0.contains("clients"), "{e}");
        let e = Scenario::parse("x.toml", "description = \"d\"\nseeds = \"a..b\"\n").unwrap_err();
        assert!(e.0.contains("seeds"), "{e}");
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Scenario::load(p.to_str().unwrap()).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 8, "expected at least 8 scenarios, found {n}");
    }
}
