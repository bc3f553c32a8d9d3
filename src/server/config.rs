//! Server configuration: ZooKeeper's `zoo.cfg` keys, parsed with errors that name the key.

use super::membership::{DynamicConfig, ServerSpec};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use thiserror::Error;

/// A bad configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("{file}: line {line}: expected key=value")]
    Syntax { file: String, line: usize },
    #[error("{file}: `{key}`: {msg}")]
    Invalid { file: String, key: String, msg: String },
    #[error("{file}: missing `{key}`")]
    Missing { file: String, key: String },
    #[error("cannot read {file}: {msg}")]
    Read { file: String, msg: String },
}

/// One ensemble member (`server.N=host:peerPort:electionPort[:role];clientAddr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    /// Where it is reached and whether it votes.
    pub spec: ServerSpec,
}

/// Whether TLS clients must present a certificate (`ssl.clientAuth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate signed by the trust store is required (ZooKeeper's default).
    Need,
    /// A certificate is verified if the client presents one.
    Want,
    /// No certificate is asked for.
    None,
}

/// TLS on the client port: `secureClientPort` and the `ssl.*` keys, PEM files only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub port: u16,
    pub address: String,
    /// `ssl.keyStore.location`: the server's certificate chain and private key (PEM).
    pub key_store: String,
    /// `ssl.trustStore.location`: the CA certificates client certificates are checked against.
    pub trust_store: Option<String>,
    pub client_auth: ClientAuth,
}

impl TlsConfig {
    /// The address TLS clients connect to.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }
}

/// The settings zraft uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub tick_time_ms: u64,
    pub init_limit: u32,
    pub sync_limit: u32,
    pub data_dir: String,
    pub data_log_dir: Option<String>,
    pub client_port: u16,
    pub client_port_address: String,
    /// Whether the plaintext client port is open: `clientPort` was given, or no
    /// `secureClientPort` (ZooKeeper opens only the secure one when only it is configured).
    pub plain_client_port: bool,
    /// TLS on `secureClientPort`, if configured.
    pub tls: Option<TlsConfig>,
    /// `readonlymode.enabled`: a member cut off from the leader serves read-only sessions.
    pub read_only_enabled: bool,
    /// `reconfigEnabled`: whether clients may change the membership (ZooKeeper's default: no).
    pub reconfig_enabled: bool,
    /// `standaloneEnabled`: a single server runs standalone (no reconfig) and a reconfig must
    /// leave at least two voters (ZooKeeper's default: true).
    pub standalone_enabled: bool,
    pub my_id: u64,
    pub peers: Vec<Peer>,
    pub max_client_cnxns: u32,
    pub four_letter_words: Vec<String>,
    pub max_buffer: u32,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub autopurge_snap_retain_count: u32,
    pub autopurge_purge_interval_h: u32,
    /// How often the leader deletes empty containers and expired TTL nodes
    /// (`znode.container.checkIntervalMs`, ZooKeeper's default one minute).
    pub container_check_ms: u64,
    /// Applied entries between snapshots (zoo.cfg `snapCount`, ZooKeeper's default 100,000),
    /// or an eighth of the tree's node count if that is more. With `snap_size_limit` it bounds
    /// the log a restart replays.
    pub snap_count: u64,
    /// The length of each log segment, written as zeros ahead of use so that a write's fsync
    /// never has to make a new file length durable (zoo.cfg `preAllocSize`, in KiB there, as
    /// ZooKeeper's; its default 64 MiB). 0: segments of 64 MiB grow as written.
    pub prealloc_bytes: u64,
    /// Log bytes since the last snapshot that call for a new one whatever `snap_count` says
    /// (zoo.cfg `snapSizeLimitInKb`, in bytes here). ZooKeeper's default is 4 GiB, but its log
    /// lives on disk only; Raft followers keep the entries since the snapshot in memory (a
    /// leader releases what every member holds), so zraft's default is 128 MiB, which bounds
    /// that memory. The limit grows to a quarter of the latest snapshot's size when that is
    /// larger, so that a big tree is not written out again for every few MiB of log (one-KiB
    /// creates into a 300k-node tree halved the create rate), and a smaller floor makes a
    /// growing tree of one-KiB values be written out again every few tens of thousands of
    /// entries.
    pub snap_size_limit: u64,
    /// The super user's digest (`super:<base64 sha1>`), as ZooKeeper's
    /// `DigestAuthenticationProvider.superDigest` system property; `zraft` reads it from
    /// ZRAFT_SUPER_DIGEST.
    pub super_digest: Option<String>,
    /// Raft tick in milliseconds (not a ZooKeeper key: derived as tickTime / 10, ≥ 10 ms).
    pub raft_tick_ms: u64,
    /// Bytes of entries per Raft append (not a ZooKeeper key; 1 MiB). The simulator makes it
    /// small so that appends carry a few entries each, as under large values.
    pub raft_max_append_bytes: usize,
    /// Keys the file had that zraft does not use (warned about).
    pub unknown_keys: Vec<String>,
    /// The Prometheus endpoint (`metricsProvider.httpHost`:`metricsProvider.httpPort`; the
    /// port defaults to ZooKeeper's 7000 when `metricsProvider.className` names its Prometheus
    /// provider). None: no endpoint.
    pub metrics_addr: Option<String>,
    /// Where the file was read from: each membership a reconfig sets is written beside it
    /// as `<file>.dynamic.<version>`, as ZooKeeper does (None: not written).
    pub file: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tick_time_ms: 2000,
            init_limit: 10,
            sync_limit: 5,
            data_dir: "./zraft-data".into(),
            data_log_dir: None,
            client_port: 2181,
            client_port_address: "0.0.0.0".into(),
            plain_client_port: true,
            tls: None,
            read_only_enabled: false,
            reconfig_enabled: false,
            standalone_enabled: true,
            my_id: 1,
            peers: vec![],
            max_client_cnxns: 60,
            four_letter_words: vec!["srvr".into()],
            max_buffer: crate::jute::DEFAULT_MAX_BUFFER,
            min_session_timeout_ms: 4000,
            max_session_timeout_ms: 40000,
            autopurge_snap_retain_count: 3,
            autopurge_purge_interval_h: 0,
            raft_tick_ms: 200,
            raft_max_append_bytes: 1 << 20,
            container_check_ms: 60_000,
            snap_count: 100_000,
            prealloc_bytes: 64 << 20,
            snap_size_limit: 128 << 20,
            super_digest: None,
            unknown_keys: vec![],
            file: None,
            metrics_addr: None,
        }
    }
}

fn invalid(file: &str, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.into(),
        key: key.into(),
        msg: msg.into(),
    }
}

fn boolean(file: &str, key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(file, key, "expected true or false")),
    }
}

fn num<T: std::str::FromStr>(file: &str, key: &str, v: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(file, key, format!("`{v}` is not a valid number")))
}

impl Config {
    /// Parses `zoo.cfg` text; `read_myid` reads `<dataDir>/myid` when an ensemble is given.
    pub fn parse(file: &str, text: &str, read_myid: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut kv = BTreeMap::new();
        let (mut metrics_port, mut metrics_host): (Option<u16>, Option<String>) = (None, None);
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or(ConfigError::Syntax {
                file: file.into(),
                line: i + 1,
            })?;
            kv.insert(k.trim().to_string(), v.trim().to_string());
        }
        let mut min_set = None;
        let mut max_set = None;
        let mut secure_port = None;
        let mut secure_address = None;
        let mut key_store = None;
        let mut trust_store = None;
        let mut client_auth = ClientAuth::Need;
        for (k, v) in &kv {
            match k.as_str() {
                "tickTime" => c.tick_time_ms = num(file, k, v)?,
                "initLimit" => c.init_limit = num(file, k, v)?,
                "syncLimit" => c.sync_limit = num(file, k, v)?,
                "dataDir" => c.data_dir = v.clone(),
                "dataLogDir" => c.data_log_dir = Some(v.clone()),
                "clientPort" => c.client_port = num(file, k, v)?,
                "clientPortAddress" => c.client_port_address = v.clone(),
                "maxClientCnxns" => c.max_client_cnxns = num(file, k, v)?,
                "4lw.commands.whitelist" => {
                    c.four_letter_words = v
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                }
                "jute.maxbuffer" => c.max_buffer = num(file, k, v)?,
                "minSessionTimeout" => min_set = Some(num::<i32>(file, k, v)?),
                "maxSessionTimeout" => max_set = Some(num::<i32>(file, k, v)?),
                "autopurge.snapRetainCount" => c.autopurge_snap_retain_count = num(file, k, v)?,
                "autopurge.purgeInterval" => c.autopurge_purge_interval_h = num(file, k, v)?,
                "znode.container.checkIntervalMs" => c.container_check_ms = num(file, k, v)?,
                "snapCount" => c.snap_count = num::<u64>(file, k, v)?.max(1),
                // A segment's header states its preallocated length in 32 bits.
                "preAllocSize" => {
                    c.prealloc_bytes = num::<u64>(file, k, v)?.saturating_mul(1024).min(u64::from(u32::MAX))
                }
                "snapSizeLimitInKb" => c.snap_size_limit = num::<u64>(file, k, v)?.max(1).saturating_mul(1024),
                "readonlymode.enabled" => c.read_only_enabled = boolean(file, k, v)?,
                "reconfigEnabled" => c.reconfig_enabled = boolean(file, k, v)?,
                "standaloneEnabled" => c.standalone_enabled = boolean(file, k, v)?,
                "secureClientPort" => secure_port = Some(num::<u16>(file, k, v)?),
                "secureClientPortAddress" => secure_address = Some(v.clone()),
                "ssl.keyStore.location" => key_store = Some(v.clone()),
                "ssl.trustStore.location" => trust_store = Some(v.clone()),
                "ssl.keyStore.type" | "ssl.trustStore.type" => pem_only(file, k, v)?,
                // An encrypted PEM key would need its password; zraft reads unencrypted keys.
                "ssl.keyStore.password" if !v.is_empty() => {
                    return Err(invalid(
                        file,
                        k,
                        "encrypted private keys are not supported: give an unencrypted PEM key",
                    ))
                }
                // A PEM trust store holds only certificates: its password protects nothing.
                "ssl.keyStore.password" | "ssl.trustStore.password" => {}
                "ssl.clientAuth" => {
                    client_auth = match v.to_ascii_lowercase().as_str() {
                        "need" => ClientAuth::Need,
                        "want" => ClientAuth::Want,
                        "none" => ClientAuth::None,
                        _ => return Err(invalid(file, k, "expected need, want or none")),
                    }
                }
                // TLS needs the Netty factory in ZooKeeper; zraft has one connection layer.
                "serverCnxnFactory" => {}
                "admin.enableServer" | "maxSessionTimeoutMs" | "metricsProvider.exportJvmInfo" => {}
                // The role comes from the server lines (as ZooKeeper, which warns when they differ).
                "peerType" if matches!(v.as_str(), "participant" | "observer") => {}
                "metricsProvider.className" => {
                    if v.ends_with("PrometheusMetricsProvider") {
                        metrics_port = metrics_port.or(Some(7000));
                    } else {
                        return Err(invalid(
                            file,
                            k,
                            "only ZooKeeper's PrometheusMetricsProvider is supported",
                        ));
                    }
                }
                "metricsProvider.httpPort" => metrics_port = Some(num::<u16>(file, k, v)?),
                "metricsProvider.httpHost" => metrics_host = Some(v.clone()),
                key if key.starts_with("server.") => {
                    let id: u64 = num(file, k, &key["server.".len()..])?;
                    let spec = ServerSpec::parse(v).map_err(|_| {
                        invalid(
                            file,
                            k,
                            "expected host:peerPort[:electionPort][:participant|observer][;[clientHost:]clientPort]",
                        )
                    })?;
                    c.peers.push(Peer { id, spec });
                }
                other => c.unknown_keys.push(other.to_string()),
            }
        }
        if c.tick_time_ms == 0 {
            return Err(invalid(file, "tickTime", "must be positive"));
        }
        c.min_session_timeout_ms = min_set.unwrap_or(2 * c.tick_time_ms as i32);
        c.max_session_timeout_ms = max_set.unwrap_or(20 * c.tick_time_ms as i32);
        if c.min_session_timeout_ms > c.max_session_timeout_ms {
            return Err(invalid(file, "minSessionTimeout", "is larger than maxSessionTimeout"));
        }
        c.raft_tick_ms = (c.tick_time_ms / 10).max(10);
        if let Some(port) = metrics_port {
            let addr = format!("{}:{port}", metrics_host.as_deref().unwrap_or("0.0.0.0"));
            if socket_addr(&addr).is_none() {
                return Err(invalid(file, "metricsProvider.httpHost", "not an IP address"));
            }
            c.metrics_addr = Some(addr);
        }
        if !c.peers.is_empty() {
            let myid = read_myid(&c.data_dir).ok_or_else(|| ConfigError::Missing {
                file: format!("{}/myid", c.data_dir),
                key: "myid".into(),
            })?;
            c.my_id = num(&format!("{}/myid", c.data_dir), "myid", &myid)?;
            if !c.peers.iter().any(|p| p.id == c.my_id) {
                return Err(invalid(
                    file,
                    "myid",
                    format!("no server.{} line for this server's id", c.my_id),
                ));
            }
        }
        if c.client_port_address.parse::<std::net::IpAddr>().is_err() && c.client_port_address != "localhost" {
            return Err(invalid(file, "clientPortAddress", "not an IP address"));
        }
        if let Some(port) = secure_port {
            let key_store = key_store.ok_or_else(|| ConfigError::Missing {
                file: file.into(),
                key: "ssl.keyStore.location".into(),
            })?;
            if client_auth != ClientAuth::None && trust_store.is_none() {
                return Err(invalid(
                    file,
                    "ssl.clientAuth",
                    "need and want (need is the default) check client certificates against \
                     ssl.trustStore.location, which is missing; set ssl.clientAuth=none to ask for none",
                ));
            }
            let address = secure_address.unwrap_or_else(|| c.client_port_address.clone());
            if socket_addr(&format!("{address}:{port}")).is_none() {
                return Err(invalid(file, "secureClientPortAddress", "not an IP address"));
            }
            c.plain_client_port = kv.contains_key("clientPort");
            c.tls = Some(TlsConfig {
                port,
                address,
                key_store,
                trust_store,
                client_auth,
            });
        }
        Ok(c)
    }

    /// The address clients connect to.
    pub fn client_addr(&self) -> String {
        format!("{}:{}", self.client_port_address, self.client_port)
    }

    /// Where the Raft log and snapshots live.
    pub fn log_dir(&self) -> String {
        self.data_log_dir
            .clone()
            .unwrap_or_else(|| format!("{}/raft", self.data_dir))
    }

    /// Peers as socket addresses (resolved from literal IPs or localhost).
    pub fn peer_addrs(&self) -> BTreeMap<u64, String> {
        self.peers.iter().map(|p| (p.id, p.spec.peer_addr())).collect()
    }

    /// The membership this file describes (ZooKeeper's static configuration, version 0).
    pub fn initial_membership(&self) -> DynamicConfig {
        DynamicConfig {
            servers: self.peers.iter().map(|p| (p.id, p.spec.clone())).collect(),
            version: 0,
        }
    }

    /// Whether this server answers four-letter word `w`.
    pub fn allows_4lw(&self, w: &str) -> bool {
        self.four_letter_words.iter().any(|x| x == "*" || x == w)
    }
}

/// zraft reads PEM key and trust stores only (ZooKeeper's `PEM` type; JKS and PKCS12 files can
/// be converted with keytool and openssl).
fn pem_only(file: &str, key: &str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty() || v.eq_ignore_ascii_case("pem") {
        Ok(())
    } else {
        Err(invalid(
            file,
            key,
            format!("`{v}` stores are not supported: zraft reads PEM files (type PEM)"),
        ))
    }
}

/// Parses "host:port" for a listener, mapping `localhost` to 127.0.0.1.
pub fn socket_addr(s: &str) -> Option<SocketAddr> {
    s.replace("localhost", "127.0.0.1").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_zoo_cfg() {
        let text = "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=/tmp/zk\nclientPort=2181\n\
                    server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889\nserver.3=127.0.0.1:2890:3890;2183\n\
                    4lw.commands.whitelist=ruok, srvr\nautopurge.purgeInterval=1\nfoo.bar=1\nreconfigEnabled=true\n";
        let c = Config::parse("zoo.cfg", text, |_| Some("2\n".into())).unwrap();
        assert_eq!(c.my_id, 2);
        assert_eq!(c.peers.len(), 3);
        assert_eq!(c.peers[2].spec.peer_addr(), "127.0.0.1:2890");
        assert_eq!(
            c.initial_membership().render(),
            "server.1=127.0.0.1:2888:3888:participant\nserver.2=127.0.0.1:2889:3889:participant\n\
             server.3=127.0.0.1:2890:3890:participant;0.0.0.0:2183\nversion=0"
        );
        assert!(c.reconfig_enabled && c.standalone_enabled);
        assert_eq!(c.min_session_timeout_ms, 4000);
        assert_eq!(c.max_session_timeout_ms, 40000);
        assert!(c.allows_4lw("ruok") && !c.allows_4lw("stat"));
        assert_eq!(c.unknown_keys, vec!["foo.bar"]);
    }

    #[test]
    fn prometheus_endpoint_as_zookeeper_configures_it() {
        let prom = "metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n";
        for (text, want) in [
            ("tickTime=2000\n", None),
            (prom, Some("0.0.0.0:7000")),
            (
                &format!("{prom}metricsProvider.httpPort=7100\nmetricsProvider.httpHost=127.0.0.1\n"),
                Some("127.0.0.1:7100"),
            ),
            ("metricsProvider.httpPort=7200\n", Some("0.0.0.0:7200")),
        ] {
            let c = Config::parse("z.cfg", text, |_| None).unwrap();
            assert_eq!(c.metrics_addr.as_deref(), want, "{text}");
        }
        for bad in [
            "metricsProvider.className=org.example.Other\n",
            "metricsProvider.httpPort=x\n",
            "metricsProvider.httpPort=7000\nmetricsProvider.httpHost=not-an-ip\n",
        ] {
            assert!(Config::parse("z.cfg", bad, |_| None).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("z.cfg", "tickTime=abc\n", |_| None).unwrap_err();
        assert!(e.to_string().contains("tickTime"), "{e}");
        let e = Config::parse("z.cfg", "clientPort=99999\n", |_| None).unwrap_err();
        assert!(e.to_string().contains("clientPort"), "{e}");
        let e = Config::parse("z.cfg", "garbage line\n", |_| None).unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 1, .. }));
        let e = Config::parse("z.cfg", "server.1=nohost\n", |_| Some("1".into())).unwrap_err();
        assert!(e.to_string().contains("server.1"), "{e}");
        let e = Config::parse("z.cfg", "server.1=127.0.0.1:2888:3888\n", |_| None).unwrap_err();
        assert!(e.to_string().contains("myid"), "{e}");
    }

    /// Each row: the TLS lines of a zoo.cfg, and the key an error must name (None: valid).
    #[test]
    fn tls_keys() {
        let rows: [(&str, Option<&str>); 9] = [
            ("secureClientPort=2281\nssl.keyStore.location=/k.pem\nssl.trustStore.location=/ca.pem\n", None),
            ("secureClientPort=2281\nssl.keyStore.location=/k.pem\nssl.clientAuth=none\n", None),
            ("secureClientPort=2281\nssl.trustStore.location=/ca.pem\n", Some("ssl.keyStore.location")),
            ("secureClientPort=2281\nssl.keyStore.location=/k.pem\n", Some("ssl.clientAuth")),
            ("secureClientPort=2281\nssl.keyStore.location=/k.jks\nssl.keyStore.type=JKS\nssl.clientAuth=none\n", Some("ssl.keyStore.type")),
            ("secureClientPort=2281\nssl.keyStore.location=/k.pem\nssl.keyStore.password=x\nssl.clientAuth=none\n", Some("ssl.keyStore.password")),
            ("secureClientPort=2281\nssl.keyStore.location=/k.pem\nssl.clientAuth=maybe\n", Some("ssl.clientAuth")),
            ("secureClientPort=99999\n", Some("secureClientPort")),
            ("secureClientPort=2281\nsecureClientPortAddress=nohost\nssl.keyStore.location=/k.pem\nssl.clientAuth=none\n", Some("secureClientPortAddress")),
        ];
        for (text, want) in rows {
            match (Config::parse("z.cfg", text, |_| None), want) {
                (Ok(c), None) => {
                    let t = c.tls.expect("secureClientPort configures TLS");
                    assert_eq!(t.addr(), "0.0.0.0:2281");
                    assert!(!c.plain_client_port, "only the secure port was asked for");
                }
                (Err(e), Some(key)) => assert!(e.to_string().contains(key), "{text}: {e}"),
                (r, _) => panic!("{text}: {r:?}"),
            }
        }
        let both = "clientPort=2181\nsecureClientPort=2281\nssl.keyStore.location=/k.pem\nssl.clientAuth=want\nssl.trustStore.location=/ca.pem\n";
        let c = Config::parse("z.cfg", both, |_| None).unwrap();
        assert!(c.plain_client_port);
        assert_eq!(c.tls.unwrap().client_auth, ClientAuth::Want);
        assert!(
            Config::parse("z.cfg", "clientPort=2181\n", |_| None)
                .unwrap()
                .plain_client_port
        );
    }
}
