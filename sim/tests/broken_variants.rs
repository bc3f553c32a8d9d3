//! The harness proves it can fail: deliberately broken server variants (cargo feature
//! `bug-injection`, chosen by ZRAFT_BUG) must be caught by the checkers within a few seeds.
//! A separate test binary, because the variant is chosen by a process-wide variable.

#[cfg(madsim)]
mod sim {
    use zraft_sim::run::{run, RunConfig};

    #[test]
    fn broken_variants_are_caught() {
        for bug in ["stale-sync", "early-ack"] {
            std::env::set_var("ZRAFT_BUG", bug);
            let mut caught = None;
            for seed in 0..20 {
                let r = run(RunConfig::from_seed(seed, 20));
                if r.linear.violation.is_some() || r.session.is_err() {
                    caught = Some((
                        seed,
                        r.linear
                            .violation
                            .map(|v| format!("{} stuck at {:?}", v.key, v.stuck_at.op)),
                    ));
                    break;
                }
            }
            std::env::remove_var("ZRAFT_BUG");
            let (seed, what) =
                caught.unwrap_or_else(|| panic!("variant {bug} passed 20 seeds: the checkers are too weak"));
            eprintln!("variant {bug}: caught at seed {seed}: {what:?}");
        }
    }
}
