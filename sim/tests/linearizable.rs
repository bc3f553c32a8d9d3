//! Every scenario in scenarios/ runs its sample of seeds (each file's `seeds`, or the first
//! ZRAFT_SIM_SEEDS seeds): histories must be linearizable, keep the session guarantees and
//! recover after healing; the first seed of every scenario is run twice and must produce the
//! same trace. A failure prints the replay command. Run with `cargo sim-test`.

#[cfg(madsim)]
mod sim {
    use zraft_sim::run::{run, RunConfig};
    use zraft_sim::scenario::{parse_seeds, Scenario};

    #[test]
    fn scenarios_hold_and_are_deterministic() {
        let files = zraft_sim::scenario::shipped();
        let extra: Option<u64> = std::env::var("ZRAFT_SIM_SEEDS").ok().and_then(|v| v.parse().ok());
        let wall = std::time::Instant::now();
        let (mut seeds_run, mut sim_secs, mut ops, mut undecided) = (0u64, 0u64, 0usize, 0u64);
        // (watches, ephemeral presences, fenced lock writes, pipelined ops) checked: none may
        // stay vacuous.
        let mut checked = (0usize, 0usize, 0usize, 0usize);
        // Snapshots taken for compaction and installed from a leader.
        let mut snapshots = (0usize, 0usize);
        // What the sample reached, summed over every scenario (the sweep's coverage).
        let mut coverage = std::collections::BTreeMap::<String, u64>::new();
        for f in files {
            let path = f.to_str().unwrap().to_string();
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let range = match extra {
                Some(n) => 0..n,
                None => parse_seeds(&s.seeds).unwrap(),
            };
            for seed in range.clone() {
                let cfg = RunConfig::new(&s, seed);
                let r = run(cfg.clone());
                let replay = format!("cargo sim replay scenarios/{}.toml --seed {seed} --trace", s.name);
                if let Some(why) = r.failure() {
                    panic!(
                        "{} seed {seed}: {why}\noptions: {cfg:?}\nnemesis: {:?}\nreplay: {replay}",
                        s.name, r.nemesis_events
                    );
                }
                if r.undecided() {
                    undecided += 1;
                }
                if seed == range.start {
                    let again = run(cfg);
                    assert_eq!(
                        again.trace_hash, r.trace_hash,
                        "{} seed {seed}: same seed, different trace\nreplay: {replay}",
                        s.name
                    );
                }
                seeds_run += 1;
                sim_secs += r.cfg.secs;
                ops += r.ops();
                checked.0 += r.watch.as_ref().copied().unwrap_or(0);
                checked.1 += r.ephemeral.as_ref().copied().unwrap_or(0);
                checked.2 += r.lock.as_ref().copied().unwrap_or(0);
                checked.3 += r.pipelined();
                snapshots.0 += r.snapshots.0;
                snapshots.1 += r.snapshots.1;
                for (k, n) in &r.coverage {
                    *coverage.entry(k.clone()).or_default() += n;
                }
                eprintln!(
                    "{} seed {seed}: {}+{} clients, {} ops ({} pipelined at depth {}, {:?} sequential creates, {:?} watches, {:?} ephemeral presences, {:?} fenced lock writes), raft (terms, applied compared) {:?}, {} nemesis events, recovered {:?} ms after heal, trace {:016x}",
                    s.name,
                    r.cfg.clients,
                    r.cfg.lock_clients,
                    r.ops(),
                    r.pipelined(),
                    r.cfg.pipeline_depth,
                    r.sequential.as_ref().ok(),
                    r.watch.as_ref().ok(),
                    r.ephemeral.as_ref().ok(),
                    r.lock.as_ref().ok(),
                    r.raft.as_ref().ok(),
                    r.nemesis_events.len(),
                    r.recovery_ms,
                    r.trace_hash
                );
            }
        }
        eprintln!(
            "sim: {seeds_run} seeds, {sim_secs} simulated s, {ops} ops checked ({} watches, {} ephemeral presences, {} fenced lock writes, {} pipelined), snapshots {} taken / {} installed, {undecided} undecided, wall {:.1} s",
            checked.0,
            checked.1,
            checked.2,
            checked.3,
            snapshots.0,
            snapshots.1,
            wall.elapsed().as_secs_f64()
        );
        assert!(
            checked.0 > 0 && checked.1 > 0 && checked.2 > 0 && checked.3 > 0,
            "a checker saw nothing to check: {checked:?}"
        );
        assert!(
            snapshots.0 > 0 && snapshots.1 > 0,
            "no snapshot was taken or installed: {snapshots:?}"
        );
        assert!(undecided * 20 <= seeds_run, "too many undecided seeds: {undecided}");
        eprintln!("sim: coverage {coverage:?}");
        // The sample must reach what the checkers exist for; an item at zero means the harness
        // stopped exploring it (or stopped counting it).
        let must = [
            "elections won",
            "leader changes",
            "votes granted",
            "pre-vote-rejected",
            "snapshots installed",
            "session-expiry",
            "torn-tail-recovered",
            "set-watches",
            "server starts from disk",
            "pipelined ops",
            "unknown outcomes",
            "watch events",
            "chaos replayed",
            "fault kill",
            "fault message-chaos",
            "strike minority-append",
            "strike after-vote",
            "strike stale-suffix",
        ];
        let missing: Vec<&str> = must
            .into_iter()
            .filter(|k| coverage.get(*k).is_none_or(|&n| n == 0))
            .collect();
        assert!(missing.is_empty(), "the sample never reached: {missing:?}");
    }
}
