//! The harness proves it can fail: deliberately broken server variants (compiled only under
//! `--cfg madsim`, chosen by ZRAFT_BUG) must be caught by the checkers within a few seeds.
//! A separate test binary, because the variant is chosen by a process-wide variable.

#[cfg(madsim)]
mod sim {
    use zraft_sim::run::{run, RunConfig};
    use zraft_sim::scenario::Scenario;

    #[test]
    fn broken_variants_are_caught() {
        let load =
            |name: &str| Scenario::load(&format!("{}/../scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        // Each variant, the scenario that exposes it, and the words of the checkers that may
        // catch it (a lost write shows as a Raft divergence or as a linearizability failure).
        let variants: [(&str, &str, &[&str]); 7] = [
            ("stale-sync", "minority-partition", &["not linearizable"]),
            ("early-ack", "minority-partition", &["not linearizable"]),
            ("lost-watch-events", "minority-partition", &["watch event"]),
            ("no-expiry", "minority-partition", &["ephemeral"]),
            ("stale-reconnect", "minority-partition", &["session guarantee"]),
            // A read answered ahead of its session's pending write (zraft before FIFO order).
            ("read-ahead", "minority-partition", &["session guarantee"]),
            // A follower acknowledges appends before they are durable; the simulated disk's
            // latency leaves a window in which a crash loses what was acknowledged. Restarts
            // expose it best (200 seeds: rolling-restarts 6 caught, swarm 2, kill-cluster 4).
            (
                "ack-before-fsync",
                "rolling-restarts",
                &[
                    "Raft invariant",
                    "not linearizable",
                    "session guarantee",
                    "sequential names",
                ],
            ),
        ];
        for (bug, scenario, checkers) in variants {
            let s = load(scenario);
            std::env::set_var("ZRAFT_BUG", bug);
            let mut caught = None;
            for seed in 0..50 {
                let r = run(RunConfig::new(&s, seed));
                if let Some(why) = r.failure() {
                    caught = Some((seed, why));
                    break;
                }
            }
            std::env::remove_var("ZRAFT_BUG");
            let (seed, what) = caught
                .unwrap_or_else(|| panic!("variant {bug} passed 50 seeds of {scenario}: the checkers are too weak"));
            eprintln!(
                "variant {bug}: caught in {scenario} at seed {seed}: {}",
                &what[..what.len().min(160)]
            );
            assert!(
                checkers.iter().any(|c| what.contains(c)),
                "variant {bug} caught by the wrong checker: {what}"
            );
        }
    }
}
