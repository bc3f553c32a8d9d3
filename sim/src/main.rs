//! `zraft-sim`: run scenario seeds under simulation, or replay one bit for bit.
//! Build and run through `cargo sim …` (see .cargo/config.toml), which sets --cfg madsim.

#[cfg(not(madsim))]
fn main() {
    eprintln!("zraft-sim must be built with --cfg madsim: use `cargo sim run scenarios/<name>.toml`");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    keep_freed_pages();
    cli::main()
}

/// Tells mimalloc never to return freed pages to the system (unless MIMALLOC_PURGE_DELAY says
/// otherwise). Its default returns them a second after they are freed: a seed takes about
/// that long, so every seed faulted back in (and the kernel zeroed) the pages the last one
/// freed, 2,600 faults a seed and a tenth of the wall time of a ten-seed swarm run. Peak
/// resident memory grows by about 15% instead (190 to 218 MB there), and stays flat.
#[cfg(madsim)]
fn keep_freed_pages() {
    /// mimalloc's `mi_option_purge_delay` (v3 numbering; the server's binary tests that
    /// option 15 is it, against the same library).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores an option value.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

#[cfg(madsim)]
mod cli {
    use clap::{Parser, Subcommand};
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use zraft_sim::run::{run, RunConfig, RunReport};
    use zraft_sim::scenario::{parse_seeds, Scenario};
    use zraft_sim::sweep::{Failure, Summary};

    /// The scenario file, or its error printed and exit code 2.
    fn load_or_exit(path: &str) -> Scenario {
        Scenario::load(path).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        })
    }

    /// `i/n` with 1 <= i <= n.
    fn parse_shard(s: &str) -> Option<(u64, u64)> {
        let (i, n) = s.split_once('/')?;
        let (i, n) = (i.trim().parse().ok()?, n.trim().parse().ok()?);
        (1 <= i && i <= n).then_some((i, n))
    }

    #[derive(Parser)]
    #[command(name = "zraft-sim", about = "Deterministic simulation of zraft under a nemesis")]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Subcommand)]
    enum Cmd {
        /// Run a range of seeds of a scenario.
        Run {
            scenario: String,
            /// Seeds as a..b (default: the scenario's own range).
            #[arg(long)]
            seeds: Option<String>,
            /// Seeds run in parallel.
            #[arg(long, default_value_t = 1)]
            jobs: usize,
            /// Stop at the first failing seed (the lowest: seeds below it all finish) and print
            /// `first failure: seed S: …` (for the planted-bug table).
            #[arg(long)]
            first: bool,
            /// Run only shard i of n (`--shard 2/4`: every 4th seed from the 2nd on), so that a
            /// seed range splits across machines.
            #[arg(long)]
            shard: Option<String>,
            /// Write the sweep's summary (seeds, failures, coverage) as JSON, for `merge`.
            #[arg(long)]
            summary: Option<String>,
        },
        /// Merge sweep summaries (shards, or several scenarios) into one report.
        Merge {
            /// Summary files written by `run --summary`.
            #[arg(required = true)]
            summaries: Vec<String>,
            /// Also write a self-contained HTML page.
            #[arg(long)]
            html: Option<String>,
        },
        /// Shrink a failing seed: fewer faults, seconds, clients, keys, workload kinds and
        /// servers while the same checker still fails; writes a pinned scenario file that
        /// replays the smaller failure.
        Shrink {
            scenario: String,
            #[arg(long)]
            seed: u64,
            /// Where to write the scenario (default: reports/<scenario>/<seed>/shrunk.toml).
            #[arg(long)]
            out: Option<String>,
            /// Runs to try at most.
            #[arg(long, default_value_t = 150)]
            max_tries: usize,
        },
        /// Re-run one seed exactly, optionally printing its event trace.
        Replay {
            scenario: String,
            #[arg(long)]
            seed: u64,
            #[arg(long)]
            trace: bool,
        },
    }

    /// CPU seconds (user + system) this process has used, all threads (0 if unknown).
    fn cpu_secs() -> f64 {
        // SAFETY: rusage is plain data, zeroed is a valid value; getrusage only writes into it.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a rusage this function owns.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
            return 0.0;
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(u.ru_utime) + secs(u.ru_stime)
    }

    /// The commit this binary was built from (stamped by build.rs).
    fn git_commit() -> String {
        env!("ZRAFT_BUILD").to_string()
    }

    fn replay_cmd(path: &str, seed: u64) -> String {
        format!(
            "cargo sim replay {path} --seed {seed} --trace   # build {}",
            git_commit()
        )
    }

    fn write_report(s: &Scenario, path: &str, r: &RunReport, why: &str) -> String {
        let dir = format!("reports/{}/{}", s.name, r.cfg.seed);
        let _ = std::fs::create_dir_all(&dir);
        let mut h = std::fs::File::create(format!("{dir}/history.jsonl")).expect("report file");
        for o in &r.history {
            let _ = writeln!(h, "{}", serde_json::to_string(o).expect("ops serialize"));
        }
        let _ = std::fs::write(format!("{dir}/trace.txt"), r.nemesis_events.join("\n") + "\n");
        let verdict = format!(
            "scenario: {}\nseed: {}\nbuild: {}\noptions: {:?}\nverdict: {why}\n{}replay: {}\n",
            s.name,
            r.cfg.seed,
            git_commit(),
            r.cfg,
            r.verdicts(),
            replay_cmd(path, r.cfg.seed)
        );
        let _ = std::fs::write(format!("{dir}/verdict.txt"), verdict);
        let page = zraft_sim::page::Page {
            scenario: &s.name,
            seed: r.cfg.seed,
            nodes: r.cfg.nodes,
            build: &git_commit(),
            verdict: why,
            verdicts: &r.verdicts(),
            replay: &replay_cmd(path, r.cfg.seed),
            history: &r.history,
            trace: &r.nemesis_events,
            servers: &r.servers,
        };
        let _ = std::fs::write(format!("{dir}/index.html"), page.html());
        dir
    }

    pub fn main() {
        let cli = Cli::parse();
        match cli.cmd {
            Cmd::Run {
                scenario,
                seeds,
                jobs,
                first,
                shard,
                summary,
            } => {
                let s = load_or_exit(&scenario);
                let seeds_arg = seeds.as_deref().unwrap_or(&s.seeds).to_string();
                let range = parse_seeds(&seeds_arg).unwrap_or_else(|| {
                    eprintln!("--seeds: expected a..b");
                    std::process::exit(2)
                });
                let (shard_i, shard_n) = match shard.as_deref().map(parse_shard) {
                    None => (1, 1),
                    Some(Some(p)) => p,
                    Some(None) => {
                        eprintln!("--shard: expected i/n with 1 <= i <= n");
                        std::process::exit(2)
                    }
                };
                // Shard i of n takes every n-th seed from the i-th on: slices of equal work.
                let mine: Vec<u64> = range
                    .clone()
                    .skip(shard_i as usize - 1)
                    .step_by(shard_n as usize)
                    .collect();
                let part = if shard_n > 1 {
                    format!("{seeds_arg} shard {shard_i}/{shard_n}")
                } else {
                    seeds_arg.clone()
                };
                println!("{}: seeds {part} on {jobs} job(s), build {}", s.name, git_commit());
                let mut faults: Vec<String> = s.nemesis.faults.iter().map(|f| f.name()).collect();
                faults.extend(s.nemesis.events.iter().filter_map(|e| e.fault).map(|f| f.name()));
                let sum = Arc::new(Mutex::new(Summary::new(&s.name, &git_commit(), &part, &faults)));
                let bar = indicatif::ProgressBar::new(mine.len() as u64);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {msg}").expect("template"),
                );
                let next = Arc::new(AtomicU64::new(0));
                let wall = std::time::Instant::now();
                let cpu = cpu_secs();
                std::thread::scope(|sc| {
                    for _ in 0..jobs.max(1) {
                        let (next, sum, bar, s, path, mine) = (
                            next.clone(),
                            sum.clone(),
                            bar.clone(),
                            s.clone(),
                            scenario.clone(),
                            &mine,
                        );
                        sc.spawn(move || loop {
                            let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                            if k >= mine.len() || (first && !sum.lock().unwrap().failures.is_empty()) {
                                return;
                            }
                            let seed = mine[k];
                            let r = run(RunConfig::new(&s, seed));
                            let failure = r.failure().map(|why| {
                                let dir = write_report(&s, &path, &r, &why);
                                let replay = replay_cmd(&path, seed);
                                let msg = format!("seed {seed} FAILED: {why}\n  report: {dir}\n  replay: {replay}");
                                // A hidden bar (stderr not a terminal, as in CI) prints nothing.
                                if bar.is_hidden() {
                                    eprintln!("{msg}");
                                } else {
                                    bar.println(msg);
                                }
                                Failure { seed, why, replay }
                            });
                            let mut sum = sum.lock().unwrap();
                            sum.record(r.cfg.secs, &r.coverage, failure, r.undecided().then_some(seed));
                            bar.set_message(format!("{} failed", sum.failures.len()));
                            bar.inc(1);
                        });
                    }
                });
                bar.finish();
                let mut sum = sum.lock().unwrap().clone();
                sum.wall_secs = wall.elapsed().as_secs_f64();
                sum.cpu_secs = cpu_secs() - cpu;
                sum.failures.sort_by_key(|f| f.seed);
                sum.undecided.sort();
                println!(
                    "{}: {} seeds, {} simulated s, {} ops checked, {} failed, {} undecided, wall {:.1} s, {:.0} simulated s per wall s, {:.0} per CPU s",
                    s.name,
                    sum.seeds,
                    sum.simulated_secs,
                    sum.ops,
                    sum.failures.len(),
                    sum.undecided.len(),
                    sum.wall_secs,
                    sum.simulated_secs as f64 / sum.wall_secs.max(1e-9),
                    sum.simulated_secs as f64 / sum.cpu_secs.max(1e-9)
                );
                let total = |k: &str| sum.coverage.get(k).map_or(0, |r| r.total);
                let checked = total("model: replies checked") + total("model: transactions replayed");
                if checked > 0 {
                    let us = total("model: checker us");
                    println!(
                        "{}: model checker: {checked} replies and transactions in {:.2} s, {:.1} ms per 100k",
                        s.name,
                        us as f64 / 1e6,
                        us as f64 / 1e3 / (checked as f64 / 1e5)
                    );
                }
                let reach: Vec<String> = sum
                    .coverage
                    .iter()
                    .filter(|(k, _)| k.starts_with("strike ") || k.starts_with("random "))
                    .map(|(k, r)| format!("{k} {}", r.total))
                    .collect();
                if !reach.is_empty() {
                    println!("{}: faults reached: {}", s.name, reach.join(", "));
                }
                let chaos = |k: &str| sum.coverage.get(k).map_or(0, |r| r.total);
                if chaos("chaos dropped") + chaos("chaos duplicated") + chaos("chaos delayed") + chaos("chaos replayed")
                    > 0
                {
                    println!(
                        "{}: Raft messages under message chaos: {} dropped, {} duplicated, {} delayed, {} replayed",
                        s.name,
                        chaos("chaos dropped"),
                        chaos("chaos duplicated"),
                        chaos("chaos delayed"),
                        chaos("chaos replayed")
                    );
                }
                // The coverage lines (and NOT REACHED, if the seeds explored too little).
                for line in sum.text().lines().skip(1).filter(|l| !l.starts_with("  ")) {
                    println!("{line}");
                }
                if let Some(bug) = std::env::var("ZRAFT_BUG")
                    .ok()
                    .filter(|b| zraft::COUNTED_BUGS.contains(&b.as_str()))
                {
                    println!(
                        "{}: planted bug {bug}: its branch diverged from the correct code {} times",
                        s.name,
                        zraft::bug_branch_taken()
                    );
                }
                if first {
                    match sum.failures.first() {
                        Some(f) => println!("first failure: seed {}: {}", f.seed, f.why),
                        None => println!("first failure: none"),
                    }
                }
                if let Some(path) = summary {
                    let json = serde_json::to_string_pretty(&sum).expect("summary serializes");
                    if let Err(e) = std::fs::write(&path, json) {
                        eprintln!("--summary {path}: {e}");
                        std::process::exit(2);
                    }
                    println!("summary: {path}");
                }
                if !sum.failures.is_empty() {
                    std::process::exit(1);
                }
            }
            Cmd::Shrink {
                scenario,
                seed,
                out,
                max_tries,
            } => {
                let s = load_or_exit(&scenario);
                let wall = std::time::Instant::now();
                let shrunk = zraft_sim::shrink::shrink(RunConfig::new(&s, seed), max_tries, &mut |l| {
                    println!("shrink {} seed {seed}: {l}", s.name)
                })
                .unwrap_or_else(|e| {
                    eprintln!("{}: seed {seed}: {e}", s.name);
                    std::process::exit(2)
                });
                let path = out.unwrap_or_else(|| format!("reports/{}/{seed}/shrunk.toml", s.name));
                if let Some(dir) = std::path::Path::new(&path).parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let bug = std::env::var("ZRAFT_BUG").ok();
                let under = bug
                    .as_ref()
                    .map(|b| format!(" under ZRAFT_BUG={b}"))
                    .unwrap_or_default();
                let description = format!(
                    "Shrunk by `zraft-sim shrink` from {} seed {seed}{under} (build {}): {}. Before: {}. After: {}.",
                    s.name,
                    git_commit(),
                    shrunk.kind,
                    shrunk.before,
                    shrunk.after
                );
                let text = shrunk.cfg.to_pinned_toml(&description);
                if let Err(e) = std::fs::write(&path, &text) {
                    eprintln!("{path}: {e}");
                    std::process::exit(2);
                }
                // The file must replay the shrunk failure: same choices, same checker.
                let again = load_or_exit(&path);
                let r = run(RunConfig::new(&again, seed));
                let same = r.failure().map(|w| zraft_sim::shrink::failure_kind(&w)) == Some(shrunk.kind.clone());
                println!("before: {}", shrunk.before);
                println!("after:  {}", shrunk.after);
                println!(
                    "{} runs, wall {:.1} s; failure: {}",
                    shrunk.tries,
                    wall.elapsed().as_secs_f64(),
                    shrunk.why
                );
                let env = bug.map(|b| format!("ZRAFT_BUG={b} ")).unwrap_or_default();
                println!("wrote {path}; replay: {env}cargo sim replay {path} --seed {seed} --trace");
                if !same {
                    eprintln!("the written scenario does not reproduce the failure: {:?}", r.failure());
                    std::process::exit(1);
                }
            }
            Cmd::Merge { summaries, html } => {
                let mut parts = vec![];
                for path in &summaries {
                    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
                        eprintln!("{path}: {e}");
                        std::process::exit(2)
                    });
                    parts.push(serde_json::from_str::<Summary>(&text).unwrap_or_else(|e| {
                        eprintln!("{path}: not a sweep summary: {e}");
                        std::process::exit(2)
                    }));
                }
                let merged = zraft_sim::sweep::merge(parts);
                for m in &merged {
                    print!("{}", m.text());
                }
                let failed: usize = merged.iter().map(|m| m.failures.len()).sum();
                println!(
                    "all: {} scenarios, {} seeds, {} simulated s, {} ops checked, {failed} failed, {} undecided",
                    merged.len(),
                    merged.iter().map(|m| m.seeds).sum::<u64>(),
                    merged.iter().map(|m| m.simulated_secs).sum::<u64>(),
                    merged.iter().map(|m| m.ops).sum::<u64>(),
                    merged.iter().map(|m| m.undecided.len()).sum::<usize>()
                );
                if let Some(path) = html {
                    if let Some(dir) = std::path::Path::new(&path).parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    if let Err(e) = std::fs::write(&path, zraft_sim::sweep::html(&merged)) {
                        eprintln!("--html {path}: {e}");
                        std::process::exit(2);
                    }
                    println!("page: {path}");
                }
                if failed > 0 {
                    std::process::exit(1);
                }
            }
            Cmd::Replay { scenario, seed, trace } => {
                let s = load_or_exit(&scenario);
                let cfg = RunConfig::new(&s, seed);
                println!("replaying {} seed {seed} (build {}): {cfg:?}", s.name, git_commit());
                let r = run(cfg);
                if trace {
                    let mut lines: Vec<(u64, String)> = r
                        .history
                        .iter()
                        .map(|o| {
                            (
                                o.invoke,
                                format!(
                                    "{:>10.3}ms client {} {} {:?} -> {:?} (done {:?})",
                                    o.invoke as f64 / 1e6,
                                    o.client,
                                    o.key,
                                    o.op,
                                    o.outcome,
                                    o.complete.map(|c| c as f64 / 1e6)
                                ),
                            )
                        })
                        .collect();
                    lines.sort();
                    for (_, l) in lines {
                        println!("{l}");
                    }
                    for e in &r.nemesis_events {
                        println!("nemesis {e}");
                    }
                }
                println!(
                    "trace hash {:016x}; {} ops; verdict: {}",
                    r.trace_hash,
                    r.ops(),
                    r.failure().unwrap_or_else(|| "ok".into())
                );
                if r.failure().is_some() {
                    write_report(&s, &scenario, &r, &r.failure().unwrap_or_default());
                    std::process::exit(1);
                }
            }
        }
    }
}
