//! Shrinking a failing seed (madsim only): greedy passes over the seed's own choices — fault
//! kinds and timed events dropped, fewer simulated seconds, fewer clients and keys, workload
//! kinds switched off, no timer drift or disk latency, fewer servers — keeping each change only
//! if the same checker still fails with the same seed. The result is a pinned scenario file
//! (`RunConfig::to_pinned_toml`) that replays the smaller failure bit for bit.

use crate::run::{run, RunConfig, RunReport};

/// The checker a failure came from, with the kind of violation where it names one
/// (`Raft invariant broken: LogMismatch`, `not linearizable`, `liveness`).
pub fn failure_kind(why: &str) -> String {
    let Some((head, rest)) = why.split_once(':') else {
        return why.to_string();
    };
    // "not linearizable on /k0" names the key, not the kind.
    let head = head.split(" on ").next().unwrap_or(head).to_string();
    let rest = rest.trim_start();
    let ident: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    let named = !ident.is_empty()
        && ident.starts_with(|c: char| c.is_ascii_uppercase())
        && rest[ident.len()..].starts_with([' ', '(', '{', ':']);
    if named {
        format!("{head}: {ident}")
    } else {
        head
    }
}

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Faults injected (trace lines other than heals and restarts).
    pub faults: usize,
    /// Register and lock clients.
    pub clients: u32,
    pub ops: usize,
    pub simulated_secs: u64,
    pub servers: u64,
}

impl Size {
    /// The size of a run.
    pub fn of(r: &RunReport) -> Size {
        let faults = r
            .nemesis_events
            .iter()
            .filter(|l| {
                let what = l.split_once(' ').map_or("", |(_, w)| w);
                !what.starts_with("heal") && !what.contains(" restarted")
            })
            .count();
        Size {
            faults,
            clients: r.cfg.clients + r.cfg.lock_clients,
            ops: r.ops(),
            simulated_secs: r.cfg.secs,
            servers: r.cfg.nodes,
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} faults, {} clients, {} ops, {} simulated s, {} servers",
            self.faults, self.clients, self.ops, self.simulated_secs, self.servers
        )
    }
}

/// What shrinking found.
pub struct Shrunk {
    pub kind: String,
    pub before: Size,
    pub after: Size,
    pub cfg: RunConfig,
    pub why: String,
    /// Runs tried.
    pub tries: usize,
}

/// Smaller variants of `c` to try, most promising first.
fn candidates(c: &RunConfig) -> Vec<(String, RunConfig)> {
    let mut out = vec![];
    let mut push = |what: String, f: &dyn Fn(&mut RunConfig)| {
        let mut n = c.clone();
        f(&mut n);
        if format!("{n:?}") != format!("{c:?}") {
            out.push((what, n));
        }
    };
    // The nemesis stops 4 s before the end: 6 s leaves it 2 s; without faults, 2 s will do.
    let min = if c.faults.is_empty() && c.events.is_empty() {
        2
    } else {
        6
    };
    for secs in [min, c.secs / 4, c.secs / 2, c.secs * 3 / 4] {
        if (min..c.secs).contains(&secs) {
            push(format!("{secs} simulated s"), &|n| n.secs = secs);
        }
    }
    for i in 0..c.faults.len() {
        push(format!("without fault {}", c.faults[i].name()), &|n| {
            n.faults.remove(i);
        });
    }
    for i in 0..c.events.len() {
        push(format!("without timed event {i}"), &|n| {
            n.events.remove(i);
        });
    }
    for k in [1, c.clients / 2, c.clients.saturating_sub(1)] {
        if (1..c.clients).contains(&k) {
            push(format!("{k} register clients"), &|n| n.clients = k);
        }
    }
    for k in [0, c.lock_clients / 2, c.lock_clients.saturating_sub(1)] {
        if k < c.lock_clients {
            push(format!("{k} lock clients"), &|n| n.lock_clients = k);
        }
    }
    if c.keys > 1 {
        push("1 key".into(), &|n| n.keys = 1);
    }
    for (i, name) in ["reads", "writes", "compare-and-sets", "sequential creates"]
        .iter()
        .enumerate()
    {
        if c.weights[i] > 0 && c.weights.iter().filter(|&&w| w > 0).count() > 1 {
            push(format!("no {name}"), &|n| n.weights[i] = 0);
        }
    }
    if c.pipeline_weight > 0 {
        push("no pipelining".into(), &|n| n.pipeline_weight = 0);
    }
    push("no timer drift".into(), &|n| {
        n.tick_drift_ppm.iter_mut().for_each(|d| *d = 0)
    });
    push("no disk latency".into(), &|n| n.disk_latency_us = [0, 0]);
    for nodes in [3, 5] {
        if nodes < c.nodes {
            push(format!("{nodes} servers"), &|n| {
                n.nodes = nodes;
                n.tick_drift_ppm.truncate(nodes as usize);
            });
        }
    }
    out
}

/// Shrinks `cfg`, which must fail; `log` hears each step. Stops after `max_tries` runs.
pub fn shrink(cfg: RunConfig, max_tries: usize, log: &mut dyn FnMut(&str)) -> Result<Shrunk, String> {
    let first = run(cfg.clone());
    let why = first.failure().ok_or("the seed does not fail: nothing to shrink")?;
    let kind = failure_kind(&why);
    log(&format!("fails with {kind}: {}", Size::of(&first)));
    let before = Size::of(&first);
    let (mut best, mut best_report, mut best_why) = (cfg, first, why);
    let mut tries = 1;
    'passes: loop {
        let mut changed = false;
        for (what, cand) in candidates(&best) {
            if tries >= max_tries {
                log(&format!("stopping after {tries} runs"));
                break 'passes;
            }
            tries += 1;
            let r = run(cand.clone());
            match r.failure() {
                Some(w) if failure_kind(&w) == kind => {
                    log(&format!("kept: {what} ({})", Size::of(&r)));
                    (best, best_report, best_why) = (cand, r, w);
                    changed = true;
                    // The candidates depend on the configuration: list them again.
                    break;
                }
                _ => {}
            }
        }
        if !changed {
            break;
        }
    }
    Ok(Shrunk {
        kind,
        before,
        after: Size::of(&best_report),
        cfg: best,
        why: best_why,
        tries,
    })
}

#[cfg(test)]
mod tests {
    use super::failure_kind;

    #[test]
    fn failure_kinds_name_the_checker_and_the_violation() {
        let cases = [
            (
                "not linearizable on /k0: cannot place Op { client: 0 }",
                "not linearizable",
            ),
            (
                "Raft invariant broken: LogMismatch { node: 3, index: 234 }",
                "Raft invariant broken: LogMismatch",
            ),
            (
                "session guarantee broken: ZxidWentBack { session: 1 }",
                "session guarantee broken: ZxidWentBack",
            ),
            (
                "ephemeral guarantee broken: Outlived { names: [] }",
                "ephemeral guarantee broken: Outlived",
            ),
            ("liveness: no write succeeded within 15 s after healing", "liveness"),
            (
                "watch event arrived after newer data: WatchViolation { set_by: x }",
                "watch event arrived after newer data: WatchViolation",
            ),
        ];
        for (why, kind) in cases {
            assert_eq!(failure_kind(why), kind, "{why}");
        }
    }
}
