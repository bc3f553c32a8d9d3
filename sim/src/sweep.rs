//! A sweep's summary: what a range (or one shard) of seeds of one scenario did — seeds, checked
//! operations, failures with their replay commands, and the coverage of the search — saved as
//! JSON so that shards run on different machines merge into one report (text, and a
//! self-contained HTML page).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A failed seed and how to replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub seed: u64,
    pub why: String,
    pub replay: String,
}

/// How often something was reached: in total, and in how many seeds at least once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reached {
    pub total: u64,
    pub seeds: u64,
}

/// What a sweep (or one shard of it) of one scenario did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    /// Builds (git commits) that ran it; more than one after merging mixed shards.
    pub builds: Vec<String>,
    /// The seed sets run: `a..b`, or `a..b shard i/n`, one per merged part.
    pub parts: Vec<String>,
    pub seeds: u64,
    pub simulated_secs: u64,
    pub ops: u64,
    pub failures: Vec<Failure>,
    /// Seeds whose linearizability search ran out of budget.
    pub undecided: Vec<u64>,
    /// Wall seconds, summed over the parts (machines work in parallel).
    pub wall_secs: f64,
    /// CPU seconds (user + system) the runs took, summed over jobs and parts: simulated
    /// seconds per CPU second is the speed of one core however many jobs ran (per wall second
    /// counts every core the jobs used). 0 in summaries written before it was recorded.
    #[serde(default)]
    pub cpu_secs: f64,
    pub coverage: BTreeMap<String, Reached>,
    /// Coverage items this scenario should reach (its fault kinds and the protocol's key
    /// events); one reached by no seed is called out.
    pub expected: Vec<String>,
}

/// The coverage items every scenario is expected to reach.
pub const EXPECTED_ALWAYS: &[&str] = &["elections won", "ops", "client connections", "watch events"];

/// Coverage items worth calling out when a sweep never reached them, though not every scenario
/// must (no snapshot installs without lagging servers, no expiries without vanishing clients).
pub const NOTABLE: &[&str] = &[
    "leader changes",
    "pre-vote-rejected",
    "snapshots installed",
    "session-expiry",
    "torn-tail-recovered",
    "segment-preallocated",
    "set-watches",
    "pipelined ops",
    "unknown outcomes",
];

impl Summary {
    /// An empty summary of `scenario`'s seeds `part`, expecting `faults` (scenario names).
    pub fn new(scenario: &str, build: &str, part: &str, faults: &[String]) -> Summary {
        let mut expected: Vec<String> = EXPECTED_ALWAYS.iter().map(|s| s.to_string()).collect();
        expected.extend(faults.iter().map(|f| format!("fault {f}")));
        expected.sort();
        expected.dedup();
        Summary {
            scenario: scenario.into(),
            builds: vec![build.into()],
            parts: vec![part.into()],
            expected,
            ..Summary::default()
        }
    }

    /// Adds one seed's result.
    pub fn record(
        &mut self,
        simulated_secs: u64,
        coverage: &BTreeMap<String, u64>,
        failure: Option<Failure>,
        undecided: Option<u64>,
    ) {
        self.seeds += 1;
        self.simulated_secs += simulated_secs;
        self.ops += coverage.get("ops").copied().unwrap_or(0);
        for (k, &n) in coverage {
            let r = self.coverage.entry(k.clone()).or_default();
            r.total += n;
            r.seeds += u64::from(n > 0);
        }
        self.failures.extend(failure);
        self.undecided.extend(undecided);
    }

    /// Folds another part of the same scenario into this one.
    pub fn absorb(&mut self, other: Summary) {
        assert_eq!(self.scenario, other.scenario, "merging different scenarios");
        for b in other.builds {
            if !self.builds.contains(&b) {
                self.builds.push(b);
            }
        }
        self.parts.extend(other.parts);
        self.seeds += other.seeds;
        self.simulated_secs += other.simulated_secs;
        self.ops += other.ops;
        self.failures.extend(other.failures);
        self.failures.sort_by_key(|f| f.seed);
        self.undecided.extend(other.undecided);
        self.undecided.sort();
        self.wall_secs += other.wall_secs;
        self.cpu_secs += other.cpu_secs;
        for (k, r) in other.coverage {
            let e = self.coverage.entry(k).or_default();
            e.total += r.total;
            e.seeds += r.seeds;
        }
        self.expected.extend(other.expected);
        self.expected.sort();
        self.expected.dedup();
    }

    /// Expected items no seed reached.
    pub fn unreached(&self) -> Vec<&str> {
        self.expected
            .iter()
            .filter(|k| self.coverage.get(*k).is_none_or(|r| r.total == 0))
            .map(|k| k.as_str())
            .collect()
    }

    /// The notable items no seed reached.
    pub fn notable_unreached(&self) -> Vec<&str> {
        NOTABLE
            .iter()
            .copied()
            .filter(|k| self.coverage.get(*k).is_none_or(|r| r.total == 0))
            .collect()
    }

    /// The summary as text lines (what `run` prints at the end and `merge` prints per scenario).
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{}: {} seeds ({}), {} simulated s, {} ops checked, {} failed, {} undecided, wall {:.1} s, cpu {:.1} s",
            self.scenario,
            self.seeds,
            self.parts.join(" + "),
            self.simulated_secs,
            self.ops,
            self.failures.len(),
            self.undecided.len(),
            self.wall_secs,
            self.cpu_secs
        );
        for f in &self.failures {
            let _ = writeln!(t, "  seed {} FAILED: {}\n    replay: {}", f.seed, f.why, f.replay);
        }
        if !self.undecided.is_empty() {
            let _ = writeln!(
                t,
                "  undecided (the linearizability search ran out of budget): seeds {:?}",
                self.undecided
            );
        }
        let cov: Vec<String> = self
            .coverage
            .iter()
            .filter(|(_, r)| r.total > 0)
            .map(|(k, r)| format!("{k} {} ({}%)", r.total, percent(r.seeds, self.seeds)))
            .collect();
        let _ = writeln!(
            t,
            "{}: coverage (total, share of seeds): {}",
            self.scenario,
            cov.join(", ")
        );
        let missing = self.unreached();
        if !missing.is_empty() {
            let _ = writeln!(t, "{}: NOT REACHED by any seed: {}", self.scenario, missing.join(", "));
        }
        let quiet = self.notable_unreached();
        if !quiet.is_empty() {
            let _ = writeln!(t, "{}: never happened: {}", self.scenario, quiet.join(", "));
        }
        t
    }
}

fn percent(part: u64, whole: u64) -> u64 {
    (part * 100).checked_div(whole).unwrap_or(0)
}

/// Merges parts (any order, any scenarios) into one summary per scenario, sorted by name.
pub fn merge(parts: Vec<Summary>) -> Vec<Summary> {
    let mut by: BTreeMap<String, Summary> = BTreeMap::new();
    for p in parts {
        match by.get_mut(&p.scenario) {
            Some(s) => s.absorb(p),
            None => {
                by.insert(p.scenario.clone(), p);
            }
        }
    }
    by.into_values().collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained HTML page (no scripts, no network) for merged summaries: totals, a row per
/// scenario, every failure with its replay command, and each scenario's coverage table with the
/// items no seed reached marked.
pub fn html(summaries: &[Summary]) -> String {
    let total = |f: fn(&Summary) -> u64| summaries.iter().map(f).sum::<u64>();
    let failed: usize = summaries.iter().map(|s| s.failures.len()).sum();
    let undecided: usize = summaries.iter().map(|s| s.undecided.len()).sum();
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>zraft sweep</title><style>\
         body{font:14px sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
         td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}\
         .bad{background:#fdd}.ok{background:#dfd}.miss{color:#b00;font-weight:bold}.zero{color:#999}code{font-size:12px}\
         </style></head><body>",
    );
    let _ = write!(
        h,
        "<h1>zraft sweep</h1><p id=\"totals\" class=\"{}\">{} scenarios, {} seeds, {} simulated s, {} operations checked, <b>{failed} failed</b>, {undecided} undecided</p>",
        if failed == 0 { "ok" } else { "bad" },
        summaries.len(),
        total(|s| s.seeds),
        total(|s| s.simulated_secs),
        total(|s| s.ops),
    );
    h.push_str("<table id=\"scenarios\"><tr><th>scenario</th><th>seeds</th><th>parts</th><th>ops</th><th>failed</th><th>undecided</th><th>not reached</th><th>builds</th></tr>");
    for s in summaries {
        let name = esc(&s.scenario);
        let _ = write!(
            h,
            "<tr class=\"{}\"><td><a href=\"#s-{name}\">{name}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"miss\">{}</td><td>{}</td></tr>",
            if s.failures.is_empty() { "ok" } else { "bad" },
            s.seeds,
            esc(&s.parts.join(" + ")),
            s.ops,
            s.failures.len(),
            s.undecided.len(),
            esc(&s.unreached().join(", ")),
            esc(&s.builds.join(", ")),
        );
    }
    h.push_str("</table>");
    for s in summaries {
        let _ = write!(h, "<h2 id=\"s-{0}\">{0}</h2>", esc(&s.scenario));
        for f in &s.failures {
            let _ = write!(
                h,
                "<p class=\"bad\">seed {} failed: {}<br><code>{}</code></p>",
                f.seed,
                esc(&f.why),
                esc(&f.replay)
            );
        }
        h.push_str("<table class=\"coverage\"><tr><th>reached</th><th>total</th><th>seeds</th></tr>");
        let mut keys: Vec<&String> = s.coverage.keys().chain(s.expected.iter()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let r = s.coverage.get(k).copied().unwrap_or_default();
            // Red: expected and never reached; grey: counted but zero (not expected here).
            let class = match (r.total, s.expected.contains(k)) {
                (0, true) => " class=\"miss\"",
                (0, false) => " class=\"zero\"",
                _ => "",
            };
            let _ = write!(
                h,
                "<tr><td{}>{}</td><td>{}</td><td>{} ({}%)</td></tr>",
                class,
                esc(k),
                r.total,
                r.seeds,
                percent(r.seeds, s.seeds)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cov(items: &[(&str, u64)]) -> BTreeMap<String, u64> {
        items.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    /// A seed of a part: its number, coverage and whether it failed.
    type Seed<'a> = (u64, &'a [(&'a str, u64)], bool);

    fn part(name: &str, range: &str, seeds: &[Seed]) -> Summary {
        let mut s = Summary::new(name, "abc1234", range, &["kill".into(), "halves".into()]);
        for (seed, c, fail) in seeds {
            let failure = fail.then(|| Failure {
                seed: *seed,
                why: "not linearizable <x>".into(),
                replay: format!("cargo sim replay scenarios/{name}.toml --seed {seed}"),
            });
            s.record(20, &cov(c), failure, None);
        }
        s.wall_secs = 1.5;
        s.cpu_secs = 1.25;
        s
    }

    #[test]
    fn shards_merge_into_one_summary_per_scenario() {
        let a = part(
            "swarm",
            "0..4 shard 1/2",
            &[(0, &[("ops", 10), ("fault kill", 2)], false), (2, &[("ops", 5)], true)],
        );
        let b = part(
            "swarm",
            "0..4 shard 2/2",
            &[(1, &[("ops", 7), ("fault kill", 1), ("elections won", 3)], false)],
        );
        let c = part("kill-cluster", "0..1", &[(0, &[("ops", 1)], false)]);
        let merged = merge(vec![b, c, a]);
        assert_eq!(merged.len(), 2);
        let s = &merged[1];
        assert_eq!(s.scenario, "swarm");
        assert_eq!((s.seeds, s.ops, s.simulated_secs), (3, 22, 60));
        assert_eq!(s.coverage["fault kill"], Reached { total: 3, seeds: 2 });
        assert_eq!(s.failures.len(), 1);
        assert_eq!(s.failures[0].seed, 2);
        assert_eq!(s.parts, vec!["0..4 shard 2/2", "0..4 shard 1/2"]);
        assert_eq!(s.wall_secs, 3.0);
        assert_eq!(s.cpu_secs, 2.5);
        // Halves was possible but never injected; no watch event, no connection either.
        assert_eq!(
            s.unreached(),
            vec!["client connections", "fault halves", "watch events"]
        );
        let text = s.text();
        assert!(text.contains("swarm: 3 seeds"), "{text}");
        assert!(text.contains("NOT REACHED by any seed: client connections, fault halves, watch events"));
        assert!(text.contains("fault kill 3 (66%)"), "{text}");
        assert!(text.contains("seed 2 FAILED"));
    }

    #[test]
    fn summaries_round_trip_through_json_and_render() {
        let s = part("swarm", "0..1", &[(0, &[("ops", 1), ("elections won", 1)], true)]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
        let page = html(&[s]);
        assert!(page.contains("<b>1 failed</b>"));
        assert!(page.contains("not linearizable &lt;x&gt;"), "escaped");
        assert!(page.contains("cargo sim replay scenarios/swarm.toml --seed 0"));
        assert!(page.contains("class=\"miss\">fault halves"));
        let mut quiet = part("swarm", "0..1", &[(0, &[("chaos dropped", 0)], false)]);
        quiet.expected.clear();
        assert!(
            html(&[quiet]).contains("class=\"zero\">chaos dropped"),
            "zero but not expected: grey"
        );
        assert!(!page.contains("http"), "self-contained");
    }

    #[test]
    #[should_panic(expected = "merging different scenarios")]
    fn absorbing_another_scenario_is_a_bug() {
        let mut a = part("swarm", "0..1", &[]);
        a.absorb(part("kill-cluster", "0..1", &[]));
    }
}
