//! The harness proves it can fail: deliberately broken server variants (compiled only under
//! `--cfg madsim`, chosen by ZRAFT_BUG) must be caught by the checkers within a few seeds.
//! A separate test binary, because the variant is chosen by a process-wide variable.

#[cfg(madsim)]
mod sim {
    use zraft_sim::run::{run, RunConfig};
    use zraft_sim::scenario::Scenario;

    /// What a broken Raft shows as: divergent replicas, lost or reordered writes, sessions
    /// or ephemerals that outlive their end.
    const RAFT_CHECKERS: &[&str] = &[
        "Raft invariant",
        "not linearizable",
        "session guarantee",
        "sequential names",
        "ephemeral",
        "watch event",
        "lock",
    ];

    fn caught_within(bug: &str, scenario: &str, seeds: u64) -> Option<(u64, String)> {
        let s = Scenario::load(&format!("{}/../scenarios/{scenario}.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        std::env::set_var("ZRAFT_BUG", bug);
        let caught = (0..seeds).find_map(|seed| run(RunConfig::new(&s, seed)).failure().map(|why| (seed, why)));
        std::env::remove_var("ZRAFT_BUG");
        caught
    }

    /// Raft bugs that need a fault timed on the protocol's state (a leader crashing right after
    /// a minority took its entries; a stale append arriving after the commit index passed a
    /// divergent tail): 50 seeds of message-chaos and five-nodes and 100 of seven-nodes and
    /// swarm do not catch them yet. Run with
    /// `cargo sim-test -- --ignored`; it fails until the state-aware nemesis exists.
    #[test]
    #[ignore = "issue 13: needs the state-aware nemesis"]
    fn raft_variants_not_caught_yet() {
        for bug in ["raft-commit-old-term", "raft-commit-unmatched"] {
            let caught = ["five-nodes", "seven-nodes", "message-chaos"]
                .iter()
                .find_map(|sc| caught_within(bug, sc, 200).map(|c| (sc, c)));
            let (scenario, (seed, why)) = caught.unwrap_or_else(|| panic!("variant {bug} not caught"));
            eprintln!("variant {bug}: caught in {scenario} at seed {seed}: {why}");
        }
    }

    #[test]
    fn broken_variants_are_caught() {
        // Each variant, the scenario that exposes it, and the words of the checkers that may
        // catch it (a lost write shows as a Raft divergence or as a linearizability failure).
        let variants: [(&str, &str, &[&str]); 9] = [
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
            // Textbook Raft bugs in the core, exposed by single messages dropped, doubled,
            // delayed and replayed (message chaos): a follower that cuts its log on every
            // append loses acknowledged entries to a stale one; a vote granted without the log
            // check elects a leader that lacks committed entries.
            ("raft-truncate-on-append", "message-chaos", RAFT_CHECKERS),
            ("raft-vote-ignores-log", "message-chaos", RAFT_CHECKERS),
        ];
        for (bug, scenario, checkers) in variants {
            let caught = caught_within(bug, scenario, 50);
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
