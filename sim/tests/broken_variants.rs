//! The harness proves it can fail: deliberately broken server variants (compiled only under
//! `--cfg madsim`, chosen by ZRAFT_BUG) must be caught by the checkers within a few seeds.
//! A separate test binary, because the variant is chosen by a process-wide variable.

#[cfg(madsim)]
mod sim {
    use zraft_sim::run::{run, RunConfig};
    use zraft_sim::scenario::Scenario;

    #[test]
    fn broken_variants_are_caught() {
        let s = Scenario::load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scenarios/minority-partition.toml"
        ))
        .unwrap();
        // Each variant, and the words the checker that must catch it reports.
        let variants = [
            ("stale-sync", "not linearizable"),
            ("early-ack", "not linearizable"),
            ("lost-watch-events", "watch event"),
            ("no-expiry", "ephemeral"),
            ("stale-reconnect", "session guarantee"),
            // A read answered ahead of its session's pending write (zraft before FIFO order).
            ("read-ahead", "session guarantee"),
        ];
        for (bug, checker) in variants {
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
            let (seed, what) =
                caught.unwrap_or_else(|| panic!("variant {bug} passed 50 seeds: the checkers are too weak"));
            eprintln!("variant {bug}: caught at seed {seed}: {}", &what[..what.len().min(160)]);
            assert!(
                what.contains(checker),
                "variant {bug} caught by the wrong checker: {what}"
            );
        }
    }
}
