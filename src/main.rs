//! The `zraft` command line: run a server from a zoo.cfg (or the built-in single-node
//! default), or a local ensemble for trying things out.

use clap::{Parser, Subcommand};
use std::process::Child;
use zraft::server::config::Config;

#[derive(Parser)]
#[command(
    name = "zraft",
    version,
    about = "A ZooKeeper-compatible coordination service replicated with Raft"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// A membership change of a running local ensemble (as the super user, ZRAFT_SUPER).
#[derive(Subcommand)]
enum Change {
    /// Start node ID with the current membership and add it by reconfig.
    Add { id: u64 },
    /// Remove node ID by reconfig, then stop it.
    Remove { id: u64 },
}

#[derive(Subcommand)]
enum Command {
    /// Run a server: single-node on port 2181 with data in ./zraft-data, or as zoo.cfg says.
    Serve {
        /// A ZooKeeper zoo.cfg (server.N lines make an ensemble; myid is read from dataDir).
        #[arg(long)]
        config: Option<String>,
    },
    /// Start a local ensemble on 127.0.0.1 (one process per node) and print its connect
    /// string; or add a node to the running one, or remove one, by reconfig.
    Ensemble {
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// First client port; node N listens on base + N - 1.
        #[arg(long, default_value_t = 2181)]
        base_port: u16,
        /// Where the nodes keep their data.
        #[arg(long, default_value = "./zraft-ensemble")]
        dir: String,
        #[command(subcommand)]
        change: Option<Change>,
    },
    /// Print the wire opcodes this build encodes and decodes.
    Opcodes,
    /// Load generator (for zraft or real ZooKeeper): throughput and latency percentiles.
    Bench {
        /// Servers, comma-separated host:port; sessions are spread over them.
        #[arg(long, default_value = "127.0.0.1:2181")]
        hosts: String,
        #[arg(long, default_value_t = 64)]
        sessions: usize,
        /// Requests each session keeps in flight (1: no pipelining).
        #[arg(long, default_value_t = 1)]
        depth: usize,
        #[arg(long, value_enum, default_value = "set")]
        load: zraft::bench::Load,
        /// Percentage of reads in the mixed load.
        #[arg(long, default_value_t = 90)]
        read_pct: u32,
        /// Bytes per value.
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        /// Measured seconds (after the warm-up).
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Parent of the keys this run creates and uses.
        #[arg(long, default_value = "/bench")]
        root: String,
        /// Append one CSV row (with this label) to this file.
        #[arg(long)]
        csv: Option<String>,
        #[arg(long, default_value = "")]
        label: String,
        /// Send this many requests in all and report the time they took (instead of --secs
        /// and --warmup).
        #[arg(long)]
        count: Option<u64>,
        /// Drive each session through the project's full client (writer, reader and pinger
        /// tasks, as an application uses it); by default each session's task owns its
        /// socket, so that the generator's own cost weighs less on the servers it measures.
        #[arg(long)]
        through_client: bool,
    },
}

fn load(config: Option<String>) -> Config {
    let Some(path) = config else { return Config::default() };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("zraft: cannot read {path}: {e}");
        std::process::exit(2)
    });
    let cfg =
        Config::parse(&path, &text, |dir| std::fs::read_to_string(format!("{dir}/myid")).ok()).unwrap_or_else(|e| {
            eprintln!("zraft: {e}");
            std::process::exit(2)
        });
    for k in &cfg.unknown_keys {
        tracing::warn!(file = %path, key = %k, "unknown configuration key ignored");
    }
    Config {
        file: Some(path),
        ..cfg
    }
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZRAFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn serve(mut cfg: Config) {
    cfg.super_digest = std::env::var("ZRAFT_SUPER_DIGEST").ok();
    if let Err(e) = std::fs::create_dir_all(&cfg.data_dir) {
        eprintln!("zraft: cannot create dataDir {}: {e}", cfg.data_dir);
        std::process::exit(2);
    }
    tracing::info!(
        server = cfg.my_id,
        clients = %cfg.client_addr(),
        members = cfg.peers.len().max(1),
        data = %cfg.data_dir,
        "zraft serving"
    );
    // Connections (framing, jute, replies) run on every core; the replica loop stays one task.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let seed = cfg.my_id ^ std::process::id() as u64;
    let result = rt.block_on(async move {
        tokio::select! {
            r = zraft::server::run(cfg, Box::new(zraft::storage::RealDisk::new()), seed) => r,
            // Every acknowledged write is already durable: shutting down needs no flush.
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted; shutting down");
                Ok(())
            }
        }
    });
    if let Err(e) = result {
        tracing::error!("{e}");
        std::process::exit(1);
    }
}

fn ensemble(nodes: u64, base_port: u16, dir: &str, change: Option<Change>) {
    let exe = std::env::current_exe().expect("own path");
    if let Some(change) = change {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let done = rt.block_on(async {
            match change {
                Change::Add { id } => zraft::ensemble::add(&exe, dir, base_port, id).await,
                Change::Remove { id } => zraft::ensemble::remove(dir, base_port, id).await,
            }
        });
        match done {
            Ok(config) => println!("{config}"),
            Err(e) => {
                eprintln!("zraft: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let members: Vec<String> = (1..=nodes)
        .map(|i| zraft::ensemble::server_line(i, base_port))
        .collect();
    let children: Vec<Child> = (1..=nodes)
        .map(|i| {
            zraft::ensemble::start_node(&exe, dir, i, base_port, &members).unwrap_or_else(|e| {
                eprintln!("zraft: cannot start node {i}: {e}");
                std::process::exit(2)
            })
        })
        .collect();
    let connect: Vec<String> = (1..=nodes)
        .map(|i| zraft::ensemble::client_addr(i, base_port))
        .collect();
    println!("{}", connect.join(","));
    eprintln!(
        "zraft: nodes log to {dir}/nodeN/log; `zraft ensemble --dir {dir} --base-port {base_port} add N` / `remove N` change the membership (super user {})",
        zraft::ensemble::super_user()
    );
    for mut c in children {
        let _ = c.wait();
    }
}

fn bench(s: zraft::bench::Settings, csv: Option<String>, label: String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let what = format!(
        "{:?} sessions={} depth={} value={}B keys={}",
        s.load, s.sessions, s.depth, s.value_size, s.keys
    );
    match rt.block_on(zraft::bench::run(s.clone())) {
        Ok(o) => {
            println!("{label} {what}: {}", o.summary());
            if let Some(path) = csv {
                use std::io::Write;
                let new = !std::path::Path::new(&path).exists();
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap_or_else(|e| {
                        eprintln!("zraft: cannot write {path}: {e}");
                        std::process::exit(2)
                    });
                if new {
                    let _ = writeln!(f, "{}", zraft::bench::CSV_HEADER);
                }
                let _ = writeln!(f, "{}", o.csv_row(&label, &s));
            }
        }
        Err(e) => {
            eprintln!("zraft bench: {e}");
            std::process::exit(1);
        }
    }
}

/// mimalloc for the binary only: the library, its tests and the simulation keep their own.
#[cfg(not(madsim))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the v3 option enum that libmimalloc-sys builds;
/// it names no constant for it). The test below checks the number against its neighbours'
/// documented defaults.
#[cfg(not(madsim))]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed pages stay before mimalloc returns them to the system (its default is a
/// second). 1M znodes of 100 B loaded at depth 16, resident right after: 379 MB with the
/// default, 301 MB at 100 ms; 268 MB at 100 ms without transparent huge pages (glibc: 273 MB).
/// MIMALLOC_PURGE_DELAY, if set, wins.
#[cfg(not(madsim))]
const PURGE_DELAY_MS: i64 = 100;

/// The binary's allocator settings, made before any thread starts. Transparent huge pages are
/// turned off for the process: mimalloc asks for them on its arenas, and a 2 MiB page that
/// is only partly used is resident whole (the same load: 348 MB with them at a one-second
/// purge delay, 268 MB without at 100 ms; throughput within the machine's spread).
/// MIMALLOC_ALLOW_THP, if set, leaves them as the system has them.
fn tune_allocator() {
    #[cfg(all(not(madsim), target_os = "linux"))]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; it takes no pointers.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
    #[cfg(not(madsim))]
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores an option value.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
    }
}

fn main() {
    tune_allocator();
    init_logs();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve { config }) => serve(load(config)),
        None => serve(Config::default()),
        Some(Command::Ensemble {
            nodes,
            base_port,
            dir,
            change,
        }) => ensemble(nodes, base_port, &dir, change),
        Some(Command::Bench {
            hosts,
            sessions,
            depth,
            load,
            read_pct,
            value_size,
            keys,
            secs,
            warmup,
            root,
            csv,
            label,
            count,
            through_client,
        }) => bench(
            zraft::bench::Settings {
                hosts: hosts.split(',').map(str::to_string).collect(),
                sessions,
                depth: depth.max(1),
                load,
                read_pct,
                value_size,
                keys: keys.max(1),
                duration: std::time::Duration::from_secs_f64(secs),
                warmup: std::time::Duration::from_secs_f64(warmup),
                root,
                count,
                through_client,
            },
            csv,
            label,
        ),
        Some(Command::Opcodes) => {
            for op in zraft::jute::OpCode::ALL {
                println!("{:>4} {:?}", op.code(), op);
            }
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use libmimalloc_sys::{mi_option_get, mi_option_set};

    /// The option number is mimalloc's purge delay: its neighbours and it hold their documented
    /// v3 defaults (eager_commit_delay 1, purge_delay 1000 ms, use_numa_nodes 0), and setting
    /// it sticks.
    #[test]
    fn option_15_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reading and setting options only touches mimalloc's option table.
        unsafe {
            assert_eq!(mi_option_get(super::MI_OPTION_PURGE_DELAY - 1), 1);
            assert_eq!(mi_option_get(super::MI_OPTION_PURGE_DELAY), 1000);
            assert_eq!(mi_option_get(super::MI_OPTION_PURGE_DELAY + 1), 0);
            mi_option_set(super::MI_OPTION_PURGE_DELAY, super::PURGE_DELAY_MS as _);
            assert_eq!(
                mi_option_get(super::MI_OPTION_PURGE_DELAY) as i64,
                super::PURGE_DELAY_MS
            );
        }
    }
}
