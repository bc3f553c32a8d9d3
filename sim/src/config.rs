//! What one seed of a scenario chose: the run's configuration, expanded from the scenario and
//! the seed alone (so a seed replays bit for bit). Apart from `run`, `nemesis` and `workload`,
//! which read it, and free of madsim: it builds anywhere.

use crate::scenario::{Fault, Scenario};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a seed chose, printed at the start of every run and written into its report.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub scenario: String,
    pub seed: u64,
    pub nodes: u64,
    /// Servers outside the initial ensemble that reconfig faults may add.
    pub spare_nodes: u64,
    /// The last this many of `nodes` are observers.
    pub observers: u64,
    /// Register clients (reads with watches, writes, CAS, sequential and ephemeral creates).
    pub clients: u32,
    /// Clients running the lock recipe.
    pub lock_clients: u32,
    pub keys: u32,
    pub secs: u64,
    pub weights: [u32; 4],
    pub faults: Vec<Fault>,
    pub interval_ms: [u64; 2],
    pub events: Vec<(u64, Option<Fault>, bool)>,
    /// Each node's timer rate against true time (Raft ticks, session timeouts), in ppm.
    pub tick_drift_ppm: Vec<i64>,
    pub liveness_secs: u64,
    /// Weight of pipelined batches among the register clients' operations.
    pub pipeline_weight: u32,
    /// Requests a pipelined batch sends before waiting for the first reply.
    pub pipeline_depth: u32,
    /// Weight of the every-opcode workload's batches among the register clients' steps.
    pub ops_weight: u32,
    /// Each batch of disk writes and its fsync take between these many microseconds.
    pub disk_latency_us: [u64; 2],
    /// The servers' snapCount.
    pub snap_count: u64,
    /// Bytes of entries per Raft append (the servers' default: 1 MiB).
    pub max_append_bytes: usize,
    /// The servers' znode.container.checkIntervalMs.
    pub container_check_ms: u64,
}

impl RunConfig {
    /// Expands a seed of a scenario into every option it chooses.
    pub fn new(s: &Scenario, seed: u64) -> Self {
        if s.pinned {
            return Self::pinned(s, seed);
        }
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
        let clients = r.gen_range(s.clients[0]..=s.clients[1]);
        let max = s.nemesis.tick_drift_ppm as i64;
        let tick_drift_ppm = (0..s.nodes)
            .map(|_| if max > 0 { r.gen_range(-max..=max) } else { 0 })
            .collect();
        RunConfig {
            scenario: s.name.clone(),
            seed,
            nodes: s.nodes,
            spare_nodes: s.spare_nodes,
            observers: s.observers.min(s.nodes.saturating_sub(1)),
            clients,
            lock_clients: s.workload.lock_clients,
            keys: s.workload.keys,
            secs: s.seconds,
            weights: [s.workload.read, s.workload.write, s.workload.cas, s.workload.seq],
            faults,
            interval_ms,
            events: s.nemesis.events.iter().map(|e| (e.at_ms, e.fault, e.heal)).collect(),
            tick_drift_ppm,
            liveness_secs: s.liveness_secs,
            pipeline_weight: s.workload.pipeline,
            ops_weight: s.workload.ops,
            pipeline_depth: r.gen_range(
                s.workload.pipeline_depth[0]..=s.workload.pipeline_depth[1].max(s.workload.pipeline_depth[0]),
            ),
            disk_latency_us: {
                let [lo, hi] = s.nemesis.disk_latency_us;
                let a = r.gen_range(lo..=hi.max(lo));
                [a, r.gen_range(a..=hi.max(a))]
            },
            max_append_bytes: s.max_append_bytes,
            snap_count: r.gen_range(s.snap_count[0]..=s.snap_count[1].max(s.snap_count[0])),
            container_check_ms: s.container_check_ms,
        }
    }
}

impl RunConfig {
    /// The initial voters (the observers are the last of the nodes).
    pub fn voters(&self) -> std::collections::BTreeSet<u64> {
        (1..=self.nodes - self.observers).collect()
    }

    /// Every server a run may start: the initial ensemble and the spares.
    pub fn servers(&self) -> u64 {
        self.nodes + self.spare_nodes
    }

    /// A pinned scenario's choices, taken as written (no draws).
    fn pinned(s: &Scenario, seed: u64) -> Self {
        let mut drift = s.nemesis.tick_drift_ppm_nodes.clone();
        drift.resize(s.nodes as usize, 0);
        RunConfig {
            scenario: s.name.clone(),
            seed,
            nodes: s.nodes,
            spare_nodes: s.spare_nodes,
            observers: s.observers.min(s.nodes.saturating_sub(1)),
            clients: s.clients[0],
            lock_clients: s.workload.lock_clients,
            keys: s.workload.keys,
            secs: s.seconds,
            weights: [s.workload.read, s.workload.write, s.workload.cas, s.workload.seq],
            faults: s.nemesis.faults.clone(),
            interval_ms: s.nemesis.interval_ms,
            events: s.nemesis.events.iter().map(|e| (e.at_ms, e.fault, e.heal)).collect(),
            tick_drift_ppm: drift,
            liveness_secs: s.liveness_secs,
            pipeline_weight: s.workload.pipeline,
            ops_weight: s.workload.ops,
            pipeline_depth: s.workload.pipeline_depth[0],
            disk_latency_us: s.nemesis.disk_latency_us,
            snap_count: s.snap_count[0],
            max_append_bytes: s.max_append_bytes,
            container_check_ms: s.container_check_ms,
        }
    }

    /// This configuration as a pinned scenario file that reproduces it exactly with its seed.
    pub fn to_pinned_toml(&self, description: &str) -> String {
        let q = |s: &str| format!("{s:?}");
        let names = |fs: &[Fault]| fs.iter().map(|f| q(&f.name())).collect::<Vec<_>>().join(", ");
        let mut t = format!(
            "description = {}\npinned = true\nnodes = {}\nseconds = {}\nclients = [{c}, {c}]\nseeds = \"{}..{}\"\nliveness_secs = {}\nsnap_count = [{s}, {s}]\nmax_append_bytes = {}\ncontainer_check_ms = {}\n\n",
            q(description),
            self.nodes,
            self.secs,
            self.seed,
            self.seed + 1,
            self.liveness_secs,
            self.max_append_bytes,
            self.container_check_ms,
            c = self.clients,
            s = self.snap_count,
        );
        if self.observers > 0 {
            t = t.replacen(
                "\nseconds = ",
                &format!("\nobservers = {}\nseconds = ", self.observers),
                1,
            );
        }
        if self.spare_nodes > 0 {
            t = t.replacen(
                "\nseconds = ",
                &format!("\nspare_nodes = {}\nseconds = ", self.spare_nodes),
                1,
            );
        }
        t += &format!(
            "[workload]\nread = {}\nwrite = {}\ncas = {}\nseq = {}\nkeys = {}\nlock_clients = {}\npipeline = {}\nops = {}\npipeline_depth = [{d}, {d}]\n\n",
            self.weights[0],
            self.weights[1],
            self.weights[2],
            self.weights[3],
            self.keys,
            self.lock_clients,
            self.pipeline_weight,
            self.ops_weight,
            d = self.pipeline_depth,
        );
        t += &format!(
            "[nemesis]\nfaults = [{}]\ninterval_ms = [{}, {}]\ntick_drift_ppm_nodes = {:?}\ndisk_latency_us = [{}, {}]\n",
            names(&self.faults),
            self.interval_ms[0],
            self.interval_ms[1],
            self.tick_drift_ppm,
            self.disk_latency_us[0],
            self.disk_latency_us[1],
        );
        for (at, fault, heal) in &self.events {
            t += &format!("\n[[nemesis.events]]\nat_ms = {at}\nheal = {heal}\n");
            if let Some(f) = fault {
                t += &format!("fault = {}\n", q(&f.name()));
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped scenario: a seed expands the same way twice, and within the file's bounds.
    #[test]
    fn seeds_expand_deterministically_within_the_scenario() {
        let files = crate::scenario::shipped();
        assert!(files.len() >= 12, "scenarios found: {files:?}");
        for f in files {
            let s = Scenario::load(f.to_str().unwrap()).unwrap();
            for seed in 0..50 {
                let c = RunConfig::new(&s, seed);
                assert_eq!(
                    format!("{c:?}"),
                    format!("{:?}", RunConfig::new(&s, seed)),
                    "{} {seed}",
                    s.name
                );
                assert!(
                    c.faults.iter().all(|f| s.nemesis.faults.contains(f)),
                    "{} {seed}",
                    s.name
                );
                assert!(s.nemesis.interval_ms[0] <= c.interval_ms[0] && c.interval_ms[0] <= c.interval_ms[1]);
                assert!(c.interval_ms[1] <= s.nemesis.interval_ms[1]);
                assert!((s.clients[0]..=s.clients[1]).contains(&c.clients));
                assert_eq!(c.tick_drift_ppm.len() as u64, s.nodes);
                assert!(c.disk_latency_us[0] <= c.disk_latency_us[1]);
            }
        }
    }

    /// A seed's choices written as a pinned scenario expand back to exactly those choices.
    #[test]
    fn pinned_scenarios_reproduce_a_seeds_choices() {
        for f in crate::scenario::shipped() {
            let s = Scenario::load(f.to_str().unwrap()).unwrap();
            for seed in [0, 7, 123] {
                let c = RunConfig::new(&s, seed);
                let text = c.to_pinned_toml("shrunk \"quoted\"");
                let p = Scenario::parse(&format!("{}.toml", s.name), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
                assert!(p.pinned);
                assert_eq!(format!("{:?}", RunConfig::new(&p, seed)), format!("{c:?}"), "{text}");
            }
        }
    }
}
