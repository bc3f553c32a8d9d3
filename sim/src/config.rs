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
    /// Each batch of disk writes and its fsync take between these many microseconds.
    pub disk_latency_us: [u64; 2],
    /// The servers' snapCount.
    pub snap_count: u64,
    /// Bytes of entries per Raft append (the servers' default: 1 MiB).
    pub max_append_bytes: usize,
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
        let clients = r.gen_range(s.clients[0]..=s.clients[1]);
        let max = s.nemesis.tick_drift_ppm as i64;
        let tick_drift_ppm = (0..s.nodes)
            .map(|_| if max > 0 { r.gen_range(-max..=max) } else { 0 })
            .collect();
        RunConfig {
            scenario: s.name.clone(),
            seed,
            nodes: s.nodes,
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
        }
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
}
