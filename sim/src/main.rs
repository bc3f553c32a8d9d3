//! `zraft-sim`: run scenario seeds under simulation, or replay one bit for bit.
//! Build and run through `cargo sim …` (see .cargo/config.toml), which sets --cfg madsim.

#[cfg(not(madsim))]
fn main() {
    eprintln!("zraft-sim must be built with --cfg madsim: use `cargo sim run scenarios/<name>.toml`");
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    cli::main()
}

#[cfg(madsim)]
mod cli {
    use clap::{Parser, Subcommand};
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use zraft_sim::run::{run, RunConfig, RunReport};
    use zraft_sim::scenario::{parse_seeds, Scenario};

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

    fn build() -> String {
        option_env!("ZRAFT_BUILD")
            .unwrap_or(env!("CARGO_PKG_VERSION"))
            .to_string()
    }

    fn git_commit() -> String {
        std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(build)
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
            } => {
                let s = Scenario::load(&scenario).unwrap_or_else(|e| {
                    eprintln!("{e}");
                    std::process::exit(2)
                });
                let range = parse_seeds(seeds.as_deref().unwrap_or(&s.seeds)).unwrap_or_else(|| {
                    eprintln!("--seeds: expected a..b");
                    std::process::exit(2)
                });
                let total = range.end - range.start;
                println!(
                    "{}: seeds {}..{} on {jobs} job(s), build {}",
                    s.name,
                    range.start,
                    range.end,
                    git_commit()
                );
                let bar = indicatif::ProgressBar::new(total);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {msg}").expect("template"),
                );
                let next = Arc::new(AtomicU64::new(range.start));
                let stats = Arc::new(Mutex::new((0u64, 0u64, 0u64, 0u64, Vec::<(u64, String)>::new())));
                let messages = Arc::new(Mutex::new([0u64; 4]));
                let done = Arc::new(AtomicU64::new(0));
                let reach = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
                let wall = std::time::Instant::now();
                std::thread::scope(|sc| {
                    for _ in 0..jobs.max(1) {
                        let done = done.clone();
                        let reach = reach.clone();
                        let (next, stats, bar, s, path, messages) = (
                            next.clone(),
                            stats.clone(),
                            bar.clone(),
                            s.clone(),
                            scenario.clone(),
                            messages.clone(),
                        );
                        sc.spawn(move || loop {
                            let seed = next.fetch_add(1, Ordering::Relaxed);
                            if seed >= range.end || (first && stats.lock().unwrap().2 > 0) {
                                return;
                            }
                            let r = run(RunConfig::new(&s, seed));
                            done.fetch_add(1, Ordering::Relaxed);
                            {
                                let mut reach = reach.lock().unwrap();
                                for (k, n) in zraft_sim::nemesis::reach(&r.nemesis_events) {
                                    *reach.entry(k).or_default() += n;
                                }
                            }
                            for (m, x) in messages.lock().unwrap().iter_mut().zip(r.messages) {
                                *m += x;
                            }
                            let mut st = stats.lock().unwrap();
                            st.0 += r.cfg.secs;
                            st.1 += r.ops() as u64;
                            if r.undecided() {
                                st.3 += 1;
                            }
                            if let Some(why) = r.failure() {
                                st.2 += 1;
                                let dir = write_report(&s, &path, &r, &why);
                                let msg = format!(
                                    "seed {seed} FAILED: {why}\n  report: {dir}\n  replay: {}",
                                    replay_cmd(&path, seed)
                                );
                                // A hidden bar (stderr not a terminal, as in CI) prints nothing.
                                if bar.is_hidden() {
                                    eprintln!("{msg}");
                                } else {
                                    bar.println(msg);
                                }
                                st.4.push((seed, why));
                            }
                            bar.set_message(format!("{} failed", st.2));
                            bar.inc(1);
                        });
                    }
                });
                bar.finish();
                let st = stats.lock().unwrap();
                let secs = wall.elapsed().as_secs_f64();
                println!(
                    "{}: {} seeds, {} simulated s, {} ops checked, {} failed, {} undecided, wall {secs:.1} s, {:.0} simulated s per wall s",
                    s.name,
                    done.load(Ordering::Relaxed),
                    st.0,
                    st.1,
                    st.2,
                    st.3,
                    st.0 as f64 / secs.max(1e-9)
                );
                let reach = reach.lock().unwrap();
                if !reach.is_empty() {
                    let line: Vec<String> = reach.iter().map(|(k, n)| format!("{k} {n}")).collect();
                    println!("{}: faults reached: {}", s.name, line.join(", "));
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
                    match st.4.iter().min_by_key(|(seed, _)| *seed) {
                        Some((seed, why)) => println!("first failure: seed {seed}: {why}"),
                        None => println!("first failure: none"),
                    }
                }
                let m = *messages.lock().unwrap();
                if m.iter().any(|&x| x > 0) {
                    println!(
                        "{}: Raft messages under message chaos: {} dropped, {} duplicated, {} delayed, {} replayed",
                        s.name, m[0], m[1], m[2], m[3]
                    );
                }
                if st.2 > 0 {
                    std::process::exit(1);
                }
            }
            Cmd::Replay { scenario, seed, trace } => {
                let s = Scenario::load(&scenario).unwrap_or_else(|e| {
                    eprintln!("{e}");
                    std::process::exit(2)
                });
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
