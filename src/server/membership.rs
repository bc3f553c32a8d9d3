//! The ensemble's dynamic configuration as ZooKeeper writes it in `/zookeeper/config`
//! (`server.N=host:quorumPort:electionPort:role;clientAddr` lines and `version=<hex zxid>`),
//! the parsing of a `reconfig` request, and the single-server steps that take one membership to
//! another. Pure: no Raft, no I/O.

use crate::jute::records::ReconfigRequest;
use crate::raft::ConfChange;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use thiserror::Error;

/// Why a server line or a reconfig request is refused (ZooKeeper answers BadArguments).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("wrong format of server string `{0}`")]
    Format(String),
    #[error("server `{0}` must give a quorum port, an election port and a client port")]
    MissingPorts(String),
    #[error("server {0} and server {1} use the same address {2}")]
    Duplicate(u64, u64, String),
    #[error("bad server id `{0}`")]
    BadId(String),
    #[error("the new configuration has no voter")]
    NoVoter,
    #[error("the new configuration must include at least 2 followers (standaloneEnabled)")]
    TooFewVoters,
}

/// One member: where its peers and its clients reach it, and whether it votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub host: String,
    pub quorum_port: u16,
    pub election_port: Option<u16>,
    pub observer: bool,
    /// `clientHost:clientPort` (ZooKeeper writes `0.0.0.0` for a bare port).
    pub client: Option<String>,
}

impl ServerSpec {
    /// Parses the right-hand side of `server.N=` (`host:port[:port][:role][;[host:]port]`).
    pub fn parse(s: &str) -> Result<ServerSpec, SpecError> {
        let s = s.trim();
        let (quorum, client) = match s.split_once(';') {
            Some((q, c)) => (q, Some(c.trim())),
            None => (s, None),
        };
        let parts: Vec<&str> = quorum.split(':').map(str::trim).collect();
        let bad = || SpecError::Format(s.to_string());
        if parts.len() < 2 || parts.len() > 4 || parts[0].is_empty() {
            return Err(bad());
        }
        let quorum_port = parts[1].parse::<u16>().map_err(|_| bad())?;
        let mut election_port = None;
        let mut observer = false;
        for p in &parts[2..] {
            match *p {
                "participant" => observer = false,
                "observer" => observer = true,
                port => election_port = Some(port.parse::<u16>().map_err(|_| bad())?),
            }
        }
        let client = match client {
            None | Some("") => None,
            Some(c) => Some(match c.rsplit_once(':') {
                Some((h, p)) => {
                    p.parse::<u16>().map_err(|_| bad())?;
                    format!("{}:{p}", if h.is_empty() { "0.0.0.0" } else { h })
                }
                None => format!("0.0.0.0:{}", c.parse::<u16>().map_err(|_| bad())?),
            }),
        };
        Ok(ServerSpec {
            host: parts[0].to_string(),
            quorum_port,
            election_port,
            observer,
            client,
        })
    }

    /// The Raft transport's address (the quorum port).
    pub fn peer_addr(&self) -> String {
        format!("{}:{}", self.host, self.quorum_port)
    }

    /// As ZooKeeper prints it.
    pub fn render(&self) -> String {
        let mut s = format!("{}:{}", self.host, self.quorum_port);
        if let Some(e) = self.election_port {
            let _ = write!(s, ":{e}");
        }
        s.push_str(if self.observer { ":observer" } else { ":participant" });
        if let Some(c) = &self.client {
            let _ = write!(s, ";{c}");
        }
        s
    }
}

/// A membership and its version (the zxid of the reconfig that made it; 0 for the static one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DynamicConfig {
    pub servers: BTreeMap<u64, ServerSpec>,
    pub version: i64,
}

impl DynamicConfig {
    /// Parses `/zookeeper/config` text; `None` if it holds no server line.
    pub fn parse(text: &str) -> Result<Option<DynamicConfig>, SpecError> {
        let mut c = DynamicConfig::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(v) = line.strip_prefix("version=") {
                c.version = i64::from_str_radix(v.trim(), 16).map_err(|_| SpecError::Format(line.into()))?;
            } else {
                let (id, spec) = server_line(line)?;
                c.servers.insert(id, spec);
            }
        }
        Ok((!c.servers.is_empty()).then_some(c))
    }

    /// The text ZooKeeper keeps in `/zookeeper/config` and prints for `config`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (id, spec) in &self.servers {
            let _ = writeln!(s, "server.{id}={}", spec.render());
        }
        let _ = write!(s, "version={:x}", self.version);
        s
    }

    /// Voting members.
    pub fn voters(&self) -> impl Iterator<Item = u64> + '_ {
        self.servers.iter().filter(|(_, s)| !s.observer).map(|(&id, _)| id)
    }

    /// Raft peer addresses of every member.
    pub fn peer_addrs(&self) -> BTreeMap<u64, String> {
        self.servers.iter().map(|(&id, s)| (id, s.peer_addr())).collect()
    }

    /// The membership a reconfig request asks for, from this one (ZooKeeper's
    /// PrepRequestProcessor: `newMembers` replaces, else `joiningServers` are added or
    /// updated and `leavingServers` removed). `standalone_enabled` demands two voters.
    pub fn target(&self, r: &ReconfigRequest, standalone_enabled: bool) -> Result<DynamicConfig, SpecError> {
        let mut next = DynamicConfig {
            servers: BTreeMap::new(),
            version: self.version,
        };
        let list = |s: &Option<String>| -> Vec<String> {
            s.as_deref()
                .unwrap_or("")
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        };
        let joining = |next: &mut DynamicConfig, lines: Vec<String>| -> Result<(), SpecError> {
            for l in lines {
                let (id, spec) = server_line(&l)?;
                if spec.election_port.is_none() || spec.client.is_none() {
                    return Err(SpecError::MissingPorts(l));
                }
                next.servers.insert(id, spec);
            }
            Ok(())
        };
        if r.new_members.is_some() {
            joining(&mut next, list(&r.new_members))?;
        } else {
            next.servers = self.servers.clone();
            joining(&mut next, list(&r.joining_servers))?;
            for l in list(&r.leaving_servers) {
                let id = l.parse::<u64>().map_err(|_| SpecError::BadId(l.clone()))?;
                next.servers.remove(&id);
            }
        }
        // No two members on one address (ZooKeeper's checkAddressDuplicate).
        let mut seen: BTreeMap<String, u64> = BTreeMap::new();
        for (&id, s) in &next.servers {
            let mut addrs = vec![s.peer_addr()];
            if let Some(e) = s.election_port {
                addrs.push(format!("{}:{e}", s.host));
            }
            for a in addrs {
                if let Some(&other) = seen.get(&a) {
                    return Err(SpecError::Duplicate(other, id, a));
                }
                seen.insert(a, id);
            }
        }
        let voters = next.voters().count();
        if standalone_enabled && voters < 2 {
            return Err(SpecError::TooFewVoters);
        }
        if voters == 0 {
            return Err(SpecError::NoVoter);
        }
        Ok(next)
    }
}

/// Parses one `server.N=spec` line.
pub fn server_line(line: &str) -> Result<(u64, ServerSpec), SpecError> {
    let (k, v) = line.split_once('=').ok_or_else(|| SpecError::Format(line.into()))?;
    let id = k
        .trim()
        .strip_prefix("server.")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| SpecError::BadId(k.trim().into()))?;
    Ok((id, ServerSpec::parse(v)?))
}

/// One single-server change on the way to a target membership, and the member it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A member new to the ensemble joins as a learner (it catches up before it may vote).
    Join(u64),
    /// A learner that has caught up becomes a voter.
    Promote(u64),
    /// A voter becomes an observer.
    Demote(u64),
    /// A member leaves.
    Leave(u64),
    /// Only the servers' addresses change (or nothing: a new version of the same membership).
    Rewrite(u64),
}

impl Step {
    /// The Raft change that makes this step.
    pub fn change(self, current: &DynamicConfig) -> ConfChange {
        match self {
            Step::Join(id) | Step::Demote(id) => ConfChange::AddLearner(id),
            Step::Promote(id) => ConfChange::AddVoter(id),
            Step::Leave(id) => ConfChange::Remove(id),
            Step::Rewrite(id) => match current.servers.get(&id) {
                Some(s) if s.observer => ConfChange::AddLearner(id),
                _ => ConfChange::AddVoter(id),
            },
        }
    }

    /// The member it is about.
    pub fn id(self) -> u64 {
        match self {
            Step::Join(id) | Step::Promote(id) | Step::Demote(id) | Step::Leave(id) | Step::Rewrite(id) => id,
        }
    }

    /// The membership after this step (the version is the caller's).
    pub fn apply(self, current: &DynamicConfig, target: &DynamicConfig) -> DynamicConfig {
        let mut next = current.clone();
        match self {
            Step::Join(id) => {
                let mut s = target.servers[&id].clone();
                s.observer = true;
                next.servers.insert(id, s);
            }
            Step::Promote(id) | Step::Demote(id) | Step::Rewrite(id) => {
                next.servers.insert(id, target.servers[&id].clone());
            }
            Step::Leave(id) => {
                next.servers.remove(&id);
            }
        }
        next
    }
}

/// The single-server steps from `current` to `target`, in a safe order: new members join as
/// learners first (nothing changes for the quorum while they catch up), then learners are
/// promoted, and only then voters are demoted or removed, `me` (the leader) last, so the
/// ensemble never has fewer voters than it needs on the way. Empty when nothing changes.
pub fn plan(current: &DynamicConfig, target: &DynamicConfig, me: u64) -> Vec<Step> {
    let mut steps = vec![];
    for (&id, _) in target
        .servers
        .iter()
        .filter(|(id, _)| !current.servers.contains_key(id))
    {
        steps.push(Step::Join(id));
    }
    let was_observer = |id: u64| current.servers.get(&id).is_none_or(|s| s.observer);
    let mut last = vec![];
    for (&id, _) in target.servers.iter().filter(|(&id, t)| !t.observer && was_observer(id)) {
        steps.push(Step::Promote(id));
    }
    for (&id, t) in &target.servers {
        let c = current.servers.get(&id);
        if !t.observer && was_observer(id) {
            continue;
        } else if t.observer && c.is_some_and(|c| !c.observer) {
            if id == me {
                last.push(Step::Demote(id));
            } else {
                steps.push(Step::Demote(id));
            }
        } else if c.is_some_and(|c| c != t) {
            steps.push(Step::Rewrite(id));
        }
    }
    for &id in current.servers.keys().filter(|id| !target.servers.contains_key(id)) {
        if id == me {
            last.push(Step::Leave(id));
        } else {
            steps.push(Step::Leave(id));
        }
    }
    steps.extend(last);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lines: &[&str]) -> DynamicConfig {
        DynamicConfig::parse(&lines.join("\n")).unwrap().unwrap()
    }

    fn req(joining: Option<&str>, leaving: Option<&str>, members: Option<&str>) -> ReconfigRequest {
        ReconfigRequest {
            joining_servers: joining.map(String::from),
            leaving_servers: leaving.map(String::from),
            new_members: members.map(String::from),
            cur_config_id: -1,
        }
    }

    const THREE: &[&str] = &[
        "server.1=127.0.0.1:2888:3888:participant;0.0.0.0:2181",
        "server.2=127.0.0.1:2889:3889:participant;0.0.0.0:2182",
        "server.3=127.0.0.1:2890:3890:participant;0.0.0.0:2183",
        "version=100000000",
    ];

    #[test]
    fn zookeepers_text_round_trips() {
        let c = cfg(THREE);
        assert_eq!(c.version, 0x1_0000_0000);
        assert_eq!(c.render(), THREE.join("\n"));
        assert_eq!(c.voters().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(DynamicConfig::parse("version=0\n").unwrap(), None);
    }

    #[test]
    fn server_specs_in_every_form_zookeeper_accepts() {
        for (input, rendered) in [
            ("h:1:2", "h:1:2:participant"),
            ("h:1:2:observer", "h:1:2:observer"),
            ("h:1:2:participant;3", "h:1:2:participant;0.0.0.0:3"),
            ("h:1:2;127.0.0.1:3", "h:1:2:participant;127.0.0.1:3"),
            (" h:1:2:observer ; :3 ", "h:1:2:observer;0.0.0.0:3"),
            ("h:1", "h:1:participant"),
        ] {
            assert_eq!(ServerSpec::parse(input).unwrap().render(), rendered, "{input}");
        }
        for bad in ["", "h", "h:x:2", "h:1:2:3:4:5", "h:1:2;x", ":1:2"] {
            assert!(ServerSpec::parse(bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["server.0=h:1:2", "server.x=h:1:2", "srv.1=h:1:2", "server.1"] {
            assert!(server_line(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn incremental_and_whole_targets() {
        let c = cfg(THREE);
        let t = c
            .target(&req(Some("server.4=127.0.0.1:2891:3891;2184"), Some("2"), None), true)
            .unwrap();
        assert_eq!(t.servers.keys().copied().collect::<Vec<_>>(), [1, 3, 4]);
        assert_eq!(t.servers[&4].render(), "127.0.0.1:2891:3891:participant;0.0.0.0:2184");
        let t = c
            .target(
                &req(
                    None,
                    None,
                    Some("server.1=127.0.0.1:2888:3888;2181,server.5=h5:1:2:observer;2185"),
                ),
                false,
            )
            .unwrap();
        assert_eq!(t.servers.keys().copied().collect::<Vec<_>>(), [1, 5]);
        // Table of refusals.
        for (r, sa, e) in [
            (
                req(Some("server.4=h:1"), None, None),
                true,
                SpecError::MissingPorts("server.4=h:1".into()),
            ),
            (
                req(Some("server.4=h:1:2"), None, None),
                true,
                SpecError::MissingPorts("server.4=h:1:2".into()),
            ),
            (req(None, Some("x"), None), true, SpecError::BadId("x".into())),
            (req(None, Some("1,2"), None), true, SpecError::TooFewVoters),
            (req(None, Some("1,2,3"), None), false, SpecError::NoVoter),
            (
                req(Some("server.4=127.0.0.1:2888:9999;2184"), None, None),
                true,
                SpecError::Duplicate(1, 4, "127.0.0.1:2888".into()),
            ),
        ] {
            assert_eq!(c.target(&r, sa), Err(e), "{r:?}");
        }
        // One voter is enough when standalone mode is off (standaloneEnabled=false).
        let one = c.target(&req(None, Some("1,2"), None), false).unwrap();
        assert_eq!(one.voters().collect::<Vec<_>>(), [3]);
    }

    /// Runs a plan step by step, checking that the voters never drop below what both the
    /// configuration before and after a step can live with.
    fn walk(from: &DynamicConfig, to: &DynamicConfig, me: u64) -> Vec<Step> {
        let steps = plan(from, to, me);
        let mut cur = from.clone();
        for s in &steps {
            let next = s.apply(&cur, to);
            let (a, b) = (cur.voters().count(), next.voters().count());
            assert!(a.abs_diff(b) <= 1, "one voter at a time: {s:?}");
            if let Step::Leave(id) | Step::Demote(id) = s {
                assert!(*id != me || s == steps.last().unwrap(), "the leader goes last");
            }
            cur = next;
        }
        assert_eq!(cur.servers, to.servers);
        steps
    }

    #[test]
    fn plans_add_before_they_remove_and_the_leader_goes_last() {
        let c = cfg(THREE);
        let to = cfg(&[
            "server.2=127.0.0.1:2889:3889;2182",
            "server.4=127.0.0.1:2891:3891;2184",
            "server.5=127.0.0.1:2892:3892:observer;2185",
            "server.3=127.0.0.1:2890:3890:observer;2183",
        ]);
        assert_eq!(
            walk(&c, &to, 1),
            [
                Step::Join(4),
                Step::Join(5),
                Step::Promote(4),
                Step::Demote(3),
                Step::Leave(1)
            ]
        );
        assert_eq!(walk(&c, &c, 1), []);
        let moved = cfg(&[THREE[0], THREE[1], "server.3=10.0.0.3:2890:3890;2183"]);
        assert_eq!(walk(&c, &moved, 1), [Step::Rewrite(3)]);
        // Rewrite keeps the member's role in Raft.
        assert_eq!(Step::Rewrite(3).change(&c), ConfChange::AddVoter(3));
    }
}
