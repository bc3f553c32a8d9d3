//! Four-letter words (`ruok`, `srvr`, `stat`, `mntr`, `conf`, `envi`, `cons`, `wchs`, `dump`)
//! and the counters they report.

use super::*;

/// Counters for four-letter words.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    pub applied: u64,
    /// Requests answered through the queue, and their latency from arrival to reply.
    pub answered: u64,
    pub latency_total_ms: f64,
    pub latency_min_ms: f64,
    pub latency_max_ms: f64,
}

impl Stats {
    /// Counts one request answered `d` after it arrived.
    pub(super) fn latency(&mut self, d: std::time::Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        self.latency_min_ms = if self.answered == 0 {
            ms
        } else {
            self.latency_min_ms.min(ms)
        };
        self.latency_max_ms = self.latency_max_ms.max(ms);
        self.latency_total_ms += ms;
        self.answered += 1;
    }

    /// min/avg/max in milliseconds, as ZooKeeper prints them.
    pub(super) fn latency_line(&self) -> (f64, f64, f64) {
        let avg = if self.answered == 0 {
            0.0
        } else {
            self.latency_total_ms / self.answered as f64
        };
        (self.latency_min_ms, avg, self.latency_max_ms)
    }
}

/// The version four-letter words report: the ZooKeeper release whose protocol and semantics
/// zraft implements first (clients parse it, e.g. kazoo's server_version()), then zraft's own.
pub const VERSION: &str = concat!("3.8.0-zraft-", env!("CARGO_PKG_VERSION"));

impl Node {
    pub(super) fn mode(&self) -> &'static str {
        if self.read_only {
            "read-only"
        } else if self.cfg.peers.is_empty() {
            "standalone"
        } else if self.role == Role::Leader {
            "leader"
        } else if self.raft.conf().learners.contains(&self.id) {
            "observer"
        } else {
            "follower"
        }
    }

    /// Requests of all connections waiting for their replies.
    pub(super) fn outstanding(&self) -> usize {
        self.conns.values().map(|c| c.queue.len()).sum()
    }

    /// The `srvr` lines after the version (also the end of `stat`).
    pub(super) fn server_summary(&self) -> String {
        let (min, avg, max) = self.stats.latency_line();
        format!(
            "Latency min/avg/max: {}/{:.4}/{}\nReceived: {}\nSent: {}\nConnections: {}\nOutstanding: {}\nZxid: 0x{:x}\nMode: {}\nNode count: {}\n",
            min as u64,
            avg,
            max as u64,
            self.stats.received,
            self.stats.sent,
            self.conns.len(),
            self.outstanding(),
            self.tree.last_zxid(),
            self.mode(),
            self.tree.node_count()
        )
    }

    /// One `cons`/`stat` line per connection, in ZooKeeper's format.
    pub(super) fn client_lines(&self) -> String {
        self.conns
            .iter()
            .map(|(id, c)| {
                format!(
                    " /{}[{}](queued={},recved={},sent={},sid=0x{:x})\n",
                    c.ip,
                    id,
                    c.queue.len(),
                    c.received,
                    c.sent,
                    c.session
                )
            })
            .collect()
    }

    /// mntr's figures, in its order (ZooKeeper's names).
    pub(super) fn mntr(&self) -> Vec<(&'static str, String)> {
        let (min, avg, max) = self.stats.latency_line();
        let mut m: Vec<(&'static str, String)> = vec![
            ("zk_version", VERSION.to_string()),
            ("zk_server_state", self.mode().to_string()),
            ("zk_avg_latency", format!("{avg:.4}")),
            ("zk_max_latency", format!("{}", max as u64)),
            ("zk_min_latency", format!("{}", min as u64)),
            ("zk_packets_received", self.stats.received.to_string()),
            ("zk_packets_sent", self.stats.sent.to_string()),
            ("zk_num_alive_connections", self.conns.len().to_string()),
            ("zk_outstanding_requests", self.outstanding().to_string()),
            ("zk_znode_count", self.tree.node_count().to_string()),
            ("zk_watch_count", self.watches.count().to_string()),
            (
                "zk_ephemerals_count",
                self.tree
                    .sessions()
                    .keys()
                    .map(|s| self.tree.ephemerals_of(*s).count())
                    .sum::<usize>()
                    .to_string(),
            ),
            ("zk_global_sessions", self.tree.sessions().len().to_string()),
            ("zk_uptime", self.mono_start.elapsed().as_millis().to_string()),
        ];
        // ZooKeeper reports these on Unix; dashboards plot them against each other.
        #[cfg(all(not(madsim), target_os = "linux"))]
        {
            if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
                m.push(("zk_open_file_descriptor_count", fds.count().to_string()));
            }
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes only the struct it is given.
            if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
                m.push(("zk_max_file_descriptor_count", lim.rlim_cur.to_string()));
            }
        }
        if self.role == Role::Leader && !self.cfg.peers.is_empty() {
            let conf = self.raft.conf();
            let followers = conf.voters.len().saturating_sub(1);
            m.push(("zk_followers", (followers + conf.learners.len()).to_string()));
            m.push(("zk_synced_followers", followers.to_string()));
            m.push(("zk_synced_observers", conf.learners.len().to_string()));
        }
        m.extend([
            ("zk_raft_term", self.raft.term().to_string()),
            ("zk_raft_commit_index", self.raft.committed().to_string()),
            ("zk_raft_applied_index", self.raft.applied().to_string()),
        ]);
        m
    }

    /// The Prometheus scrape: mntr's numeric figures under ZooKeeper's Prometheus names, Raft's
    /// state, and what the WAL stage recorded.
    fn prometheus(&self) -> String {
        use super::super::metrics::gauge;
        let mut out = String::new();
        // Raft's figures follow with their own help (a name must appear once).
        for (k, v) in self.mntr().into_iter().filter(|(k, _)| !k.starts_with("zk_raft_")) {
            if let Ok(x) = v.parse::<f64>() {
                let name = k.strip_prefix("zk_").unwrap_or(k);
                gauge(&mut out, name, &format!("mntr {k}"), x);
            }
        }
        let state = |s: &str| if self.mode() == s { 1.0 } else { 0.0 };
        for s in ["leader", "follower", "observer", "standalone", "read-only"] {
            gauge(
                &mut out,
                &format!("server_state_{}", s.replace('-', "_")),
                "1 in this server state",
                state(s),
            );
        }
        let conf = self.raft.conf();
        for (name, help, v) in [
            ("raft_term", "Current Raft term.", self.raft.term()),
            (
                "raft_commit_index",
                "Highest log index known committed.",
                self.raft.committed(),
            ),
            (
                "raft_applied_index",
                "Highest log index applied to the tree.",
                self.raft.applied(),
            ),
            ("raft_last_index", "Last index in the log.", self.raft.last_index()),
            (
                "raft_snapshot_index",
                "Index of the latest snapshot.",
                self.raft.snapshot_meta().index,
            ),
            (
                "raft_voters",
                "Voters in the membership in force.",
                conf.voters.len() as u64,
            ),
            (
                "raft_learners",
                "Learners (observers) in the membership in force.",
                conf.learners.len() as u64,
            ),
            (
                "config_version",
                "Version of the dynamic configuration (zxid of the last reconfig).",
                self.members.version as u64,
            ),
        ] {
            gauge(&mut out, name, help, v as f64);
        }
        self.metrics.render(&mut out);
        out
    }

    pub(super) fn four_letter(&self, cmd: &str) -> String {
        if !self.serving() && matches!(cmd, "srvr" | "stat" | "mntr" | "cons" | "wchs" | "dump") {
            // As a ZooKeeper server that left the ensemble by reconfig, or one still syncing.
            return "This ZooKeeper instance is not currently serving requests\n".into();
        }
        match cmd {
            "ruok" => "imok".into(),
            "isro" => if self.read_only { "ro" } else { "rw" }.into(),
            "srvr" => format!("Zookeeper version: {VERSION}\n{}", self.server_summary()),
            "stat" => format!(
                "Zookeeper version: {VERSION}\nClients:\n{}\n{}",
                self.client_lines(),
                self.server_summary()
            ),
            "mntr" => self.mntr().iter().map(|(k, v)| format!("{k}\t{v}\n")).collect(),
            super::super::metrics::SCRAPE => self.prometheus(),
            "conf" => {
                let me = self.members.servers.get(&self.id);
                format!(
                "clientPort={}\n{}dataDir={}\ndataLogDir={}\ntickTime={}\nmaxClientCnxns={}\nminSessionTimeout={}\nmaxSessionTimeout={}\nserverId={}\n{}",
                self.cfg.client_port,
                self.cfg
                    .tls
                    .as_ref()
                    .map(|t| format!("secureClientPort={}\n", t.port))
                    .unwrap_or_default(),
                self.cfg.data_dir,
                self.cfg.log_dir(),
                self.cfg.tick_time_ms,
                self.cfg.max_client_cnxns,
                self.cfg.min_session_timeout_ms,
                self.cfg.max_session_timeout_ms,
                self.id,
                // In quorum mode ZooKeeper adds its limits and the membership it runs with.
                if self.cfg.peers.is_empty() {
                    String::new()
                } else {
                    format!(
                        "initLimit={}\nsyncLimit={}\nelectionAlg=3\nelectionPort={}\nquorumPort={}\npeerType={}\nmembership: \n{}\n",
                        self.cfg.init_limit,
                        self.cfg.sync_limit,
                        me.and_then(|s| s.election_port).map_or(-1, i32::from),
                        me.map_or(-1, |s| i32::from(s.quorum_port)),
                        if self.raft.conf().learners.contains(&self.id) { 1 } else { 0 },
                        self.members.render()
                    )
                }
            )
            }
            "envi" => format!(
                "Environment:\nzookeeper.version={VERSION}\nzraft.version={}\nos.name={}\nos.arch={}\n",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
            "cons" => self.client_lines(),
            "wchs" => format!(
                "{} connections watching paths\nTotal watches:{}\n",
                self.session_conn.len(),
                self.watches.count()
            ),
            "dump" => {
                let mut s = String::from("Sessions with Ephemerals:\n");
                for sess in self.tree.sessions().keys() {
                    let es: Vec<&String> = self.tree.ephemerals_of(*sess).collect();
                    if !es.is_empty() {
                        s.push_str(&format!("0x{sess:x}:\n"));
                        for e in es {
                            s.push_str(&format!("\t{e}\n"));
                        }
                    }
                }
                s
            }
            _ => String::new(),
        }
    }
}
