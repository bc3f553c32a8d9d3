//! The znode tree and its deterministic `apply`.

use super::acl::{open_acl, read_acl};
use super::path;
use super::txn::{Txn, TxnEntry, TxnResult, WatchTrigger};
use crate::jute::{Acl, ErrorCode, EventType, Stat};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// ephemeralOwner of container nodes.
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// High byte marking an extended ephemeralOwner (TTL nodes).
const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000u64 as i64;
/// Largest TTL in milliseconds ZooKeeper accepts.
pub const MAX_TTL: i64 = 0x0000_00ff_ffff_ffff;

/// What kind of node an ephemeralOwner value denotes (`EphemeralType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    /// 0: a plain persistent node.
    Void,
    /// A session id: an ephemeral node.
    Session,
    /// A container node.
    Container,
    /// A TTL node.
    Ttl,
}

/// Classifies an ephemeralOwner as `EphemeralType.get` does with extended types enabled.
pub fn owner_kind(owner: i64) -> OwnerKind {
    if owner & EXTENDED_MASK == EXTENDED_MASK {
        OwnerKind::Ttl
    } else if owner == CONTAINER_OWNER {
        OwnerKind::Container
    } else if owner == 0 {
        OwnerKind::Void
    } else {
        OwnerKind::Session
    }
}

/// The ephemeralOwner of a TTL node, or `None` if the TTL is out of range.
pub fn ttl_owner(ttl: i64) -> Option<i64> {
    (ttl > 0 && ttl <= MAX_TTL).then_some(EXTENDED_MASK | ttl)
}

/// The TTL encoded in a TTL node's ephemeralOwner.
pub fn ttl_of(owner: i64) -> i64 {
    owner & MAX_TTL
}

/// Whether the server reaps a node with this stat and number of children at `now_ms`: an
/// empty container that has had children, or an empty TTL node unchanged for longer than its
/// TTL (ZooKeeper's ContainerManager).
pub fn reapable(stat: &StatPersisted, children: usize, now_ms: i64) -> bool {
    children == 0
        && match owner_kind(stat.ephemeral_owner) {
            OwnerKind::Container => stat.cversion > 0,
            OwnerKind::Ttl => {
                let ttl = ttl_of(stat.ephemeral_owner);
                ttl != 0 && now_ms - stat.mtime > ttl
            }
            OwnerKind::Void | OwnerKind::Session => false,
        }
}

/// Node metadata as stored (`StatPersisted`): Stat without the derived fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatPersisted {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

/// One znode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(with = "serde_bytes")]
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub stat: StatPersisted,
    pub children: BTreeSet<String>,
}

impl Node {
    /// The client-visible Stat, translated as ZooKeeper's `DataNode.copyStat`: the stored
    /// cversion counts creates, clients see creates plus deletes (`2 × stored − children`), and
    /// container/TTL markers read as 0.
    pub fn stat(&self) -> Stat {
        let s = &self.stat;
        let num_children = self.children.len() as i32;
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(num_children),
            aversion: s.aversion,
            ephemeral_owner: if owner_kind(s.ephemeral_owner) == OwnerKind::Session {
                s.ephemeral_owner
            } else {
                0
            },
            data_length: self.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children,
            pzxid: s.pzxid,
        }
    }
}

/// The replicated state: znodes, the ephemerals index and the live sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataTree {
    pub(crate) nodes: BTreeMap<String, Node>,
    pub(crate) ephemerals: BTreeMap<i64, BTreeSet<String>>,
    pub(crate) sessions: BTreeMap<i64, i32>,
    pub(crate) last_zxid: i64,
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

impl DataTree {
    /// A fresh tree with ZooKeeper's system nodes (the config node's aversion is -1, as a
    /// fresh ZooKeeper 3.8 reports).
    pub fn new() -> Self {
        let node = |acl: Vec<Acl>, aversion: i32, children: &[&str]| Node {
            data: Some(vec![]),
            acl,
            stat: StatPersisted {
                aversion,
                ..Default::default()
            },
            children: children.iter().map(|c| c.to_string()).collect(),
        };
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_string(), node(open_acl(), 0, &["zookeeper"]));
        nodes.insert("/zookeeper".to_string(), node(open_acl(), 0, &["config", "quota"]));
        nodes.insert("/zookeeper/quota".to_string(), node(open_acl(), 0, &[]));
        nodes.insert("/zookeeper/config".to_string(), node(read_acl(), -1, &[]));
        DataTree {
            nodes,
            ephemerals: BTreeMap::new(),
            sessions: BTreeMap::new(),
            last_zxid: 0,
        }
    }

    /// The zxid of the last applied transaction.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// A node by path.
    pub fn node(&self, path: &str) -> Option<&Node> {
        // ZooKeeper's DataTree keeps the root under "" as well as "/": a read of the empty
        // path (length 0 on the wire) answers with the root. Writes reject "" before looking.
        self.nodes.get(if path.is_empty() { "/" } else { path })
    }

    /// Number of znodes, system nodes included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Live sessions and their negotiated timeouts.
    pub fn sessions(&self) -> &BTreeMap<i64, i32> {
        &self.sessions
    }

    /// The ephemerals a session owns, in path order.
    pub fn ephemerals_of(&self, session: i64) -> impl Iterator<Item = &String> {
        self.ephemerals.get(&session).into_iter().flatten()
    }

    /// getAllChildrenNumber: the count of all descendants of `path` (system nodes included).
    pub fn descendant_count(&self, path: &str) -> usize {
        if path == "/" {
            return self.nodes.len() - 1;
        }
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .count()
    }

    /// Applies one committed transaction. Never fails: a transaction that no longer fits the
    /// tree (which prepare rules out) yields an error result and changes nothing.
    pub fn apply(&mut self, e: &TxnEntry) -> (TxnResult, Vec<WatchTrigger>) {
        assert!(
            e.zxid > self.last_zxid,
            "zxid {} applied after {}",
            e.zxid,
            self.last_zxid
        );
        let mut triggers = Vec::new();
        let result = self.apply_txn(e, &e.txn, &mut triggers);
        self.last_zxid = e.zxid;
        (result, triggers)
    }

    fn apply_txn(&mut self, e: &TxnEntry, txn: &Txn, triggers: &mut Vec<WatchTrigger>) -> TxnResult {
        let zxid = e.zxid;
        match txn {
            Txn::Create {
                op,
                path,
                data,
                acl,
                ephemeral_owner,
                parent_cversion,
            } => {
                let Some(parent_path) = path::parent(path).map(str::to_string) else {
                    return TxnResult::Error(ErrorCode::BadArguments);
                };
                if self.nodes.contains_key(path) {
                    return TxnResult::Error(ErrorCode::NodeExists);
                }
                let Some(parent) = self.nodes.get_mut(&parent_path) else {
                    return TxnResult::Error(ErrorCode::NoNode);
                };
                parent.children.insert(path::name(path).to_string());
                let cv = if *parent_cversion == -1 {
                    parent.stat.cversion + 1
                } else {
                    *parent_cversion
                };
                if cv > parent.stat.cversion {
                    parent.stat.cversion = cv;
                    parent.stat.pzxid = zxid;
                }
                let stat = StatPersisted {
                    czxid: zxid,
                    mzxid: zxid,
                    ctime: e.time,
                    mtime: e.time,
                    ephemeral_owner: *ephemeral_owner,
                    pzxid: zxid,
                    ..Default::default()
                };
                let node = Node {
                    data: data.clone(),
                    acl: acl.clone(),
                    stat,
                    children: BTreeSet::new(),
                };
                let stat = node.stat();
                self.nodes.insert(path.clone(), node);
                let parent_acl = self.nodes.get(&parent_path).map(|n| n.acl.clone()).unwrap_or_default();
                if owner_kind(*ephemeral_owner) == OwnerKind::Session {
                    self.ephemerals
                        .entry(*ephemeral_owner)
                        .or_default()
                        .insert(path.clone());
                }
                triggers.push(WatchTrigger {
                    event: EventType::NodeCreated,
                    path: path.clone(),
                    acl: acl.clone(),
                });
                triggers.push(WatchTrigger {
                    event: EventType::NodeChildrenChanged,
                    path: parent_path,
                    acl: parent_acl,
                });
                TxnResult::Created {
                    op: *op,
                    path: path.clone(),
                    stat,
                }
            }
            Txn::Delete { path } => self.delete(path, zxid, triggers),
            Txn::SetData { path, data, version } => {
                let Some(n) = self.nodes.get_mut(path) else {
                    return TxnResult::Error(ErrorCode::NoNode);
                };
                n.data = data.clone();
                n.stat.version = *version;
                n.stat.mzxid = zxid;
                n.stat.mtime = e.time;
                triggers.push(WatchTrigger {
                    event: EventType::NodeDataChanged,
                    path: path.clone(),
                    acl: n.acl.clone(),
                });
                TxnResult::DataSet(n.stat())
            }
            Txn::SetAcl { path, acl, version } => {
                let Some(n) = self.nodes.get_mut(path) else {
                    return TxnResult::Error(ErrorCode::NoNode);
                };
                n.acl = acl.clone();
                n.stat.aversion = *version;
                TxnResult::AclSet(n.stat())
            }
            Txn::Check { .. } => TxnResult::Checked,
            Txn::Multi(txns) => {
                // Prepare emits either all real ops or all error entries.
                assert!(
                    txns.iter().all(|t| matches!(t, Txn::Error(_))) || !txns.iter().any(|t| matches!(t, Txn::Error(_))),
                    "multi mixes errors and ops"
                );
                TxnResult::Multi(txns.iter().map(|t| self.apply_txn(e, t, triggers)).collect())
            }
            Txn::Error(code) => TxnResult::Error(*code),
            Txn::CreateSession { timeout } => {
                self.sessions.insert(e.session_id, *timeout);
                TxnResult::SessionCreated
            }
            Txn::CloseSession { ephemerals } => {
                for p in ephemerals {
                    if self
                        .nodes
                        .get(p)
                        .is_some_and(|n| n.stat.ephemeral_owner == e.session_id)
                    {
                        self.delete(p, zxid, triggers);
                    }
                }
                // Anything created after prepare listed the ephemerals dies with the session too.
                let rest: Vec<String> = self.ephemerals_of(e.session_id).cloned().collect();
                for p in rest {
                    self.delete(&p, zxid, triggers);
                }
                self.sessions.remove(&e.session_id);
                TxnResult::SessionClosed
            }
        }
    }

    fn delete(&mut self, path: &str, zxid: i64, triggers: &mut Vec<WatchTrigger>) -> TxnResult {
        let Some(parent_path) = path::parent(path).map(str::to_string) else {
            return TxnResult::Error(ErrorCode::BadArguments);
        };
        match self.nodes.get(path) {
            None => return TxnResult::Error(ErrorCode::NoNode),
            Some(n) if !n.children.is_empty() => return TxnResult::Error(ErrorCode::NotEmpty),
            Some(_) => {}
        }
        let Some(parent) = self.nodes.get_mut(&parent_path) else {
            return TxnResult::Error(ErrorCode::NoNode);
        };
        parent.children.remove(path::name(path));
        let parent_acl = parent.acl.clone();
        // Deletes move pzxid but not the stored cversion, which counts creates only. Broken
        // on purpose under "delete-keeps-pzxid": the parent's pzxid stays where it was.
        if zxid > parent.stat.pzxid && !crate::bug("delete-keeps-pzxid") {
            parent.stat.pzxid = zxid;
        }
        let node = self.nodes.remove(path).expect("checked above");
        let owner = node.stat.ephemeral_owner;
        if owner_kind(owner) == OwnerKind::Session {
            if let Some(set) = self.ephemerals.get_mut(&owner) {
                set.remove(path);
                if set.is_empty() {
                    self.ephemerals.remove(&owner);
                }
            }
        }
        triggers.push(WatchTrigger {
            event: EventType::NodeDeleted,
            path: path.to_string(),
            acl: node.acl,
        });
        triggers.push(WatchTrigger {
            event: EventType::NodeChildrenChanged,
            path: parent_path,
            acl: parent_acl,
        });
        TxnResult::Deleted
    }

    /// Nodes ZooKeeper's ContainerManager would delete now: empty containers that have had a
    /// child (stored cversion > 0), and empty TTL nodes not modified for longer than their TTL.
    pub fn reap_candidates(&self, now_ms: i64) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| reapable(&n.stat, n.children.len(), now_ms))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Checks the structural invariants; used by tests and debug builds after apply.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (p, n) in &self.nodes {
            for c in &n.children {
                let cp = path::join(p, c);
                match self.nodes.get(&cp) {
                    None => return Err(format!("{p} lists missing child {c}")),
                    // Every child creation moved the parent's pzxid to at least its czxid.
                    Some(child) if child.stat.czxid > n.stat.pzxid => {
                        return Err(format!(
                            "{p} has pzxid {} below child {c}'s czxid {}",
                            n.stat.pzxid, child.stat.czxid
                        ))
                    }
                    Some(_) => {}
                }
            }
            if p != "/" {
                let parent = path::parent(p).ok_or_else(|| format!("{p} has no parent"))?;
                match self.nodes.get(parent) {
                    Some(pn) if pn.children.contains(path::name(p)) => {}
                    _ => return Err(format!("{p} is not listed by its parent")),
                }
                if n.stat.czxid > n.stat.mzxid || n.stat.czxid > n.stat.pzxid {
                    return Err(format!("{p} has czxid after mzxid/pzxid"));
                }
            }
            if n.stat.mzxid > self.last_zxid || n.stat.pzxid > self.last_zxid {
                return Err(format!("{p} has a zxid from the future"));
            }
            let owner = n.stat.ephemeral_owner;
            if owner_kind(owner) == OwnerKind::Session {
                if !n.children.is_empty() {
                    return Err(format!("ephemeral {p} has children"));
                }
                if !self.ephemerals.get(&owner).is_some_and(|s| s.contains(p)) {
                    return Err(format!("ephemeral {p} missing from its session's index"));
                }
            }
        }
        for (s, paths) in &self.ephemerals {
            for p in paths {
                if self.nodes.get(p).map(|n| n.stat.ephemeral_owner) != Some(*s) {
                    return Err(format!(
                        "index lists {p} for session {s:#x}, but it is not its ephemeral"
                    ));
                }
            }
        }
        Ok(())
    }
}
