//! The nemesis (madsim only): injects the scenario's faults — explicit events at simulated
//! times and/or random faults drawn at the seed's rate (in swarm mode from the seed's own
//! subset of fault kinds) — until shortly before the workload ends, then heals everything.

pub mod clock;
pub mod cluster;
pub mod membership;
pub mod strike;

pub use clock::SkewClock;
pub use cluster::{Cluster, Exit};

use crate::config::RunConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;
use zraft::storage::Faults;

/// Runs the fault schedule from `t0` until four seconds before the workload ends, then heals
/// every fault; returns the trace lines ("<ms> <what>") and how often each kind of fault was
/// injected (by its scenario name).
pub async fn run(
    c: &mut Cluster,
    cfg: &RunConfig,
    t0: madsim::time::Instant,
) -> (Vec<String>, std::collections::BTreeMap<String, u64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xdead_beef);
    let mut events = vec![];
    let mut injected = std::collections::BTreeMap::new();
    let stop_faults = Duration::from_secs(cfg.secs.saturating_sub(4));
    let mut timed = cfg.events.clone();
    timed.sort_by_key(|e| e.0);
    let mut timed = timed.into_iter().peekable();
    let gap = |rng: &mut ChaCha8Rng| Duration::from_millis(rng.gen_range(cfg.interval_ms[0]..=cfg.interval_ms[1]));
    let mut next_random = t0.elapsed() + gap(&mut rng);
    while t0.elapsed() < stop_faults {
        let next_timed = timed.peek().map(|e| Duration::from_millis(e.0));
        let wake = next_timed.map_or(next_random, |t| t.min(next_random)).min(stop_faults);
        // Look for servers that stopped at least every SUPERVISE.
        let wake = wake.min(t0.elapsed() + SUPERVISE);
        madsim::time::sleep(wake.saturating_sub(t0.elapsed())).await;
        let at = t0.elapsed().as_millis();
        for line in c.restart_exited() {
            events.push(format!("{at}ms {line}"));
        }
        if t0.elapsed() >= stop_faults {
            break;
        }
        let due = |t: Duration| t <= t0.elapsed();
        if !next_timed.is_some_and(due) && !due(next_random) {
            continue;
        }
        if next_timed.is_some_and(due) {
            let (_, fault, heal) = timed.next().expect("peeked");
            if heal {
                c.heal();
                events.push(format!("{at}ms heal (scheduled)"));
            }
            if let Some(f) = fault {
                *injected.entry(f.name()).or_default() += 1;
                let line = c.inject(f, &mut rng).await;
                events.push(format!("{at}ms {line} (scheduled)"));
            }
            continue;
        }
        next_random = t0.elapsed() + gap(&mut rng);
        if cfg.faults.is_empty() {
            continue;
        }
        // Half of the time heal first, so faults come and go.
        if rng.gen_bool(0.5) {
            c.heal();
            events.push(format!("{at}ms heal"));
        } else {
            let f = cfg.faults[rng.gen_range(0..cfg.faults.len())];
            *injected.entry(f.name()).or_default() += 1;
            let line = c.inject(f, &mut rng).await;
            events.push(format!("{at}ms {line}"));
        }
    }
    for d in &c.disks {
        d.set_faults(Faults {
            torn: true,
            ..Faults::default()
        });
    }
    c.heal();
    // Servers that stopped are killed on one look and started on the next.
    for _ in 0..2 {
        let at = t0.elapsed().as_millis();
        for line in c.restart_exited() {
            events.push(format!("{at}ms {line}"));
        }
        madsim::time::sleep(SUPERVISE).await;
    }
    events.push(format!("{}ms heal all", t0.elapsed().as_millis()));
    (events, injected)
}

/// What a run's faults reached, from its trace: each state-aware strike's window reached or
/// not (`strike minority-append`, `strike minority-append: not reached`), random kills and
/// isolations (`random kill/isolate`) and the windows they happened to hit
/// (`random hit minority-append`), so that a sweep shows what the state-aware nemesis reaches
/// that random faults do not.
pub fn reach(trace: &[String]) -> std::collections::BTreeMap<String, u64> {
    let mut m = std::collections::BTreeMap::new();
    for line in trace {
        let what = line.split_once(' ').map_or("", |(_, w)| w);
        if let Some(rest) = what.strip_prefix("strike ") {
            // "strike [kill leader zraft-2, then ]after-vote: kill zraft-4"
            let rest = rest.rsplit_once(", then ").map_or(rest, |(_, r)| r);
            let kind = rest.split(':').next().unwrap_or(rest);
            let key = if rest.contains("window not reached") || rest.contains("cut off 0 ") {
                format!("strike {kind}: not reached")
            } else {
                format!("strike {kind}")
            };
            *m.entry(key).or_default() += 1;
        } else if what.starts_with("kill zraft-") || what.starts_with("isolate zraft-") {
            *m.entry("random kill/isolate".to_string()).or_default() += 1;
            if let Some((_, w)) = what.split_once("(window: ") {
                // "(window: a, b)" possibly followed by " (scheduled)".
                let w = w.split(')').next().unwrap_or(w);
                for win in w.split(", ") {
                    *m.entry(format!("random hit {win}")).or_default() += 1;
                }
            }
        }
    }
    m
}

/// How often the nemesis looks for servers that stopped on their own.
const SUPERVISE: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    #[test]
    fn reach_counts_strikes_and_the_windows_random_faults_hit() {
        let trace: Vec<String> = [
            "100ms strike kill leader zraft-2, then after-vote: kill zraft-4, restarted after 5ms",
            "200ms strike minority-append: window not reached",
            "300ms strike minority-append: isolate leader zraft-1",
            "400ms kill zraft-3 (window: minority-append, uncommitted-leader) (scheduled)",
            "500ms isolate zraft-1",
            "600ms strike leader-churn: cut off 0 new leaders in turn []",
            "700ms heal",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let m = super::reach(&trace);
        let get = |k: &str| m.get(k).copied().unwrap_or(0);
        assert_eq!(get("strike after-vote"), 1);
        assert_eq!(get("strike minority-append"), 1);
        assert_eq!(get("strike minority-append: not reached"), 1);
        assert_eq!(get("strike leader-churn: not reached"), 1);
        assert_eq!(get("random kill/isolate"), 2);
        assert_eq!(get("random hit minority-append"), 1);
        assert_eq!(get("random hit uncommitted-leader"), 1);
        assert_eq!(m.len(), 7);
    }
}
