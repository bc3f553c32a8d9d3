//! Seeds that once caught a bug, kept so it stays fixed. Each entry: scenario, seed, and what
//! the seed found. Run by `cargo sim-test`.

#[cfg(madsim)]
mod sim {
    use zraft_sim::run::{run, RunConfig};
    use zraft_sim::scenario::Scenario;

    /// A wall clock stepping back up to 60 s on the leader kept abandoned sessions (and their
    /// ephemerals) alive, because session expiry used the wall clock; it now uses the
    /// monotonic clock, as ZooKeeper does (found by clock-skew's ephemeral check).
    const CLOCK_SKEW_SESSION_EXPIRY: &[u64] = &[3, 4, 14, 28, 37, 45];

    #[test]
    fn regression_seeds_pass() {
        let s = Scenario::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/clock-skew.toml")).unwrap();
        for &seed in CLOCK_SKEW_SESSION_EXPIRY {
            let r = run(RunConfig::new(&s, seed));
            assert_eq!(r.failure(), None, "clock-skew seed {seed} regressed\nreplay: cargo sim replay scenarios/clock-skew.toml --seed {seed} --trace");
        }
    }
}
