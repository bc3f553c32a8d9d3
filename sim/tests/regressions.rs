//! Seeds that once caught a bug, kept so it stays fixed. Each entry: scenario, seeds, and what
//! they found. Run by `cargo sim-test`. (A seed's run changes when the workload or nemesis
//! changes, so these keep the kind of run that found the bug, not necessarily the same run.)

#[cfg(madsim)]
mod sim {
    use zraft_sim::run::{run, RunConfig};
    use zraft_sim::scenario::Scenario;

    const REGRESSIONS: &[(&str, &[u64], &str)] = &[
        (
            "clock-skew",
            &[3, 4, 14, 28, 37, 45],
            // Server bug: a wall clock stepping back up to 60 s on the leader kept abandoned
            // sessions (and their ephemerals) alive, because session expiry used the wall
            // clock; it now uses the monotonic clock, as ZooKeeper does.
            "session expiry on the wall clock",
        ),
        (
            "swarm",
            &[86],
            // Harness bug: a watch event that came just after a read's reply was recorded before
            // the read, so a later read looked like it overtook a pending watch.
            "watch event recorded on the wrong side of a reply",
        ),
        (
            "disk-faults",
            &[20],
            // Harness bug: a server stopped by an I/O error was restarted in the same instant it
            // was killed, and could never bind its ports again.
            "supervisor restarted a stopped server before its sockets were freed",
        ),
        (
            "disk-faults",
            &[33],
            // Server bug (found at f7f84e3, the first build with pipelined clients): request ids
            // restarted at 1 with the server, so entries its previous incarnation proposed,
            // committing after the restart, answered the new incarnation's requests with the
            // same ids. Proposals now carry the incarnation (Origin::boot).
            "replies from a previous incarnation of the server",
        ),
        (
            "clock-skew",
            &[8],
            // Server bug (found once the harness reached snapshots): a lagging follower caught up
            // by installing a snapshot, which skips the transactions it covers, so it kept
            // serving a session expired meanwhile (and watches missed changes). It now closes
            // its client connections on a snapshot install, as a ZooKeeper follower does.
            "expired session still served after a snapshot install",
        ),
        (
            "flapping-partitions",
            &[51],
            "expired session still served after a snapshot install",
        ),
        (
            "minority-partition",
            &[1, 3, 6],
            // Server bug (found by the model checker at 9ba907e plus the checker): only
            // ephemeral creates checked the session, so a write in flight when its session
            // expired took effect after the expiry. Every write now checks it, as ZooKeeper's
            // PrepRequestProcessor does (variant writes-after-expiry keeps the old code).
            "writes of an expired session applied after its expiry",
        ),
        // Server bug (found by the model checker in the 10,005-seed sweep 40000..40667 at
        // e3300fc, 5 seeds in 5 scenarios): the leader chose containers to reap from its
        // applied tree and the reap deleted whatever the writes prepared meanwhile had made
        // of the path — a persistent node re-created there was deleted. A reap is now
        // refused unless the node is still reapable (variant reap-recreated keeps the old code).
        ("five-nodes", &[40015], REAP),
        ("leader-partition", &[40395], REAP),
        ("message-chaos", &[40329], REAP),
        ("seven-nodes", &[40623], REAP),
        ("small-appends", &[40482], REAP),
        (
            "membership",
            &[70216],
            // Storage bug (found by the 70000..70300 sweep at 649b955): installing a snapshot
            // that does not match the log removed every segment before the new one held the
            // hard state; an I/O error in between stopped the node, which came back with term
            // and vote 0 and forgot the vote it had sent. The new segment and the hard state
            // are now durable before the old segments go.
            "vote forgotten after an I/O error during a snapshot install",
        ),
        (
            "five-nodes",
            &[80110],
            // Harness bug (found by the 80000..80200 sweep at 319e4e2): a follower that
            // installed a snapshot and kept the entries after it reported only the first of
            // them, so the membership checker counted it out of a quorum (CommitWithoutQuorum).
            // What led there was a server inefficiency, fixed too: under message chaos a
            // replayed rejection made the leader drop followers' matches and, their entries
            // released, send them snapshots (the seed no longer takes that path).
            "a kept suffix after a snapshot install reported as one entry",
        ),
    ];

    const REAP: &str = "a reap deleted a node re-created after the reap was chosen";

    #[test]
    fn regression_seeds_pass() {
        for (name, seeds, what) in REGRESSIONS {
            let path = format!("{}/../scenarios/{name}.toml", env!("CARGO_MANIFEST_DIR"));
            let s = Scenario::load(&path).unwrap();
            for &seed in *seeds {
                let r = run(RunConfig::new(&s, seed));
                assert_eq!(
                    r.failure(),
                    None,
                    "{name} seed {seed} regressed ({what})\nreplay: cargo sim replay scenarios/{name}.toml --seed {seed} --trace"
                );
            }
        }
    }
}
