//! The znode tree and its deterministic `apply`.
//!
//! Laid out for a million znodes (ZooKeeper 3.8 needs about 1.1 KiB a node): nodes live in
//! one arena indexed by `NodeId`, a parent maps its children's names to their ids (so no path
//! is stored whole and every name once), identical ACL lists are one shared `AclRef`
//! (ZooKeeper's ReferenceCountedACLCache), and data is an exact-size boxed slice. Nothing of
//! the layout is observable: reads, stats, child order (by name) and snapshots are those of
//! the tree's contents alone.

use super::acl::{open_acl, read_acl};
use super::digest;
use super::name::Name;
use super::path;
use super::slots::Slots;
use super::txn::{Txn, TxnEntry, TxnResult, WatchTrigger};
use crate::jute::{Acl, ErrorCode, EventType, Stat};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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

/// A shared, immutable ACL list: nodes with equal ACLs hold the same one.
pub type AclRef = Arc<Vec<Acl>>;

/// A node's slot in the arena.
/// Where ZooKeeper keeps the ensemble's dynamic configuration.
pub const CONFIG_NODE: &str = "/zookeeper/config";

type NodeId = u32;

/// The root's slot; it is never freed.
const ROOT: NodeId = 0;

/// A node's children, by name (byte order, which is the order getChildren answers in).
type Children = BTreeMap<Name, NodeId>;

/// A znode's data: immutable, shared between the tree and its snapshot copies. The header is
/// the bytes' hash for the digest, made once with them: a change then hashes only the new
/// value, not the old one again (that second hash was 1.5% of a server under one-KiB setData),
/// and it costs no memory at common sizes (it fits the allocator's size class: 100-byte values
/// take 128 bytes either way).
pub type Data = triomphe::ThinArc<u64, u8>;

/// Data holding these bytes.
pub fn data_of(bytes: &[u8]) -> Data {
    triomphe::ThinArc::from_header_and_slice(digest::data_hash(bytes), bytes)
}

/// One znode.
#[derive(Debug)]
pub struct Node {
    data: Option<Data>,
    acl: AclRef,
    pub stat: StatPersisted,
    /// None rather than an empty map: most nodes are leaves.
    children: Option<Box<Children>>,
}

/// A copy (made when the loop changes a node a snapshot still shares): its children map is
/// built anew from the sorted names, which fills every B-tree node, where a clone would keep
/// the half-full nodes that names arriving in ascending order leave (std's BTreeMap splits in
/// the middle). Loading a million znodes under one parent: 282 → 267 MB resident.
impl Clone for Node {
    fn clone(&self) -> Self {
        Node {
            data: self.data.clone(),
            acl: self.acl.clone(),
            stat: self.stat,
            children: self
                .children
                .as_ref()
                .map(|c| Box::new(c.iter().map(|(k, &v)| (k.clone(), v)).collect())),
        }
    }
}

impl Node {
    /// The data; None is a node created with null data (as distinct from empty).
    pub fn data(&self) -> Option<&[u8]> {
        self.data.as_ref().map(|d| &d.slice)
    }

    /// The data's hash for the digest, as made with the data (`digest::data_hash`).
    pub fn data_hash(&self) -> Option<u64> {
        self.data.as_ref().map(|d| d.header.header)
    }

    /// The ACL.
    pub fn acl(&self) -> &AclRef {
        &self.acl
    }

    /// Number of children.
    pub fn child_count(&self) -> usize {
        self.children.as_ref().map_or(0, |c| c.len())
    }

    /// The children's names in byte order.
    pub fn children(&self) -> impl Iterator<Item = &str> {
        self.children.iter().flat_map(|c| c.keys().map(Name::as_str))
    }

    fn child(&self, name: &str) -> Option<NodeId> {
        self.children.as_ref()?.get(name.as_bytes()).copied()
    }

    /// The client-visible Stat, translated as ZooKeeper's `DataNode.copyStat`: the stored
    /// cversion counts creates, clients see creates plus deletes (`2 × stored − children`), and
    /// container/TTL markers read as 0.
    pub fn stat(&self) -> Stat {
        let s = &self.stat;
        let num_children = self.child_count() as i32;
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
            data_length: self.data.as_ref().map_or(0, |d| d.slice.len() as i32),
            num_children,
            pzxid: s.pzxid,
        }
    }
}

/// The replicated state: znodes, the ephemerals index and the live sessions.
#[derive(Debug, Clone)]
pub struct DataTree {
    /// The arena; a freed slot is None until reused (lowest-numbered last freed first).
    slots: Slots<Option<Node>>,
    free: Vec<NodeId>,
    /// Every distinct ACL list in use (and, until the next sweep, some no longer in use).
    acls: BTreeSet<AclRef>,
    /// Size of `acls` at which unused lists are swept out.
    acl_sweep_at: usize,
    /// Paths of container and TTL nodes: all the reaper has to look at (ZooKeeper's
    /// `DataTree.containers` and `ttls`), rather than every node.
    special: BTreeSet<String>,
    ephemerals: BTreeMap<i64, BTreeSet<String>>,
    sessions: BTreeMap<i64, i32>,
    last_zxid: i64,
    /// Live nodes, the root included.
    count: usize,
    /// The wrapping sum of every node's and session's share of the digest (`digest`).
    sum: u64,
    /// The last ACL list whose part of a share was hashed, and that part.
    acl_share: Option<(AclRef, u64)>,
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

/// Trees are equal when their contents are: the arena's layout does not count.
impl PartialEq for DataTree {
    fn eq(&self, other: &Self) -> bool {
        self.last_zxid == other.last_zxid
            && self.count == other.count
            && self.sessions == other.sessions
            && self.ephemerals == other.ephemerals
            && self.special == other.special
            && self.same_nodes(ROOT, other, ROOT)
    }
}

impl Eq for DataTree {}

impl DataTree {
    /// A fresh tree with ZooKeeper's system nodes (the config node's aversion is -1, as a
    /// fresh ZooKeeper 3.8 reports).
    pub fn new() -> Self {
        let mut t = DataTree::empty(0, BTreeMap::new());
        let add = |t: &mut DataTree, parent: Option<(NodeId, &str)>, acl: Vec<Acl>, aversion: i32| {
            let acl = t.intern(&acl);
            let node = Node {
                data: Some(data_of(&[])),
                acl,
                stat: StatPersisted {
                    aversion,
                    ..Default::default()
                },
                children: None,
            };
            let id = t.alloc(node);
            if let Some((p, name)) = parent {
                t.link(p, name, id);
            }
            id
        };
        let root = add(&mut t, None, open_acl(), 0);
        assert_eq!(root, ROOT);
        let zk = add(&mut t, Some((ROOT, "zookeeper")), open_acl(), 0);
        add(&mut t, Some((zk, "config")), read_acl(), -1);
        add(&mut t, Some((zk, "quota")), open_acl(), 0);
        t.sum = t.full_sum();
        t
    }

    /// A fresh tree whose `/zookeeper/config` holds an ensemble's static configuration, as
    /// ZooKeeper in quorum mode shows it before any reconfig (version 0, zxid 0).
    pub fn with_config(config: &[u8]) -> Self {
        let mut t = DataTree::new();
        let id = t.lookup(CONFIG_NODE).expect("a fresh tree has the config node");
        t.get_mut(id).data = Some(data_of(config));
        t.sum = t.full_sum();
        t
    }

    /// No nodes at all, not even the root (which must come first).
    fn empty(last_zxid: i64, sessions: BTreeMap<i64, i32>) -> Self {
        DataTree {
            slots: Slots::default(),
            free: vec![],
            acls: BTreeSet::new(),
            acl_sweep_at: 64,
            special: BTreeSet::new(),
            ephemerals: BTreeMap::new(),
            sum: digest::sessions(&sessions),
            acl_share: None,
            sessions,
            last_zxid,
            count: 0,
        }
    }

    /// A digest of the whole replicated state (nodes, ACLs, stats, sessions, last zxid): equal
    /// on replicas that applied the same entries. Kept as the tree changes, so it costs
    /// nothing to read.
    pub fn digest(&self) -> u64 {
        digest::finish(self.sum, self.count, self.last_zxid)
    }

    /// The sum of the digest's shares, recomputed from every node and session.
    fn full_sum(&self) -> u64 {
        let mut sum = digest::sessions(&self.sessions);
        let mut stack = vec![(digest::ROOT_KEY, ROOT)];
        while let Some((key, id)) = stack.pop() {
            let n = self.get(id);
            sum = sum.wrapping_add(digest::node(key, n));
            for (name, &c) in n.children.iter().flat_map(|c| c.iter()) {
                stack.push((digest::child_key(key, name.as_str()), c));
            }
        }
        sum
    }

    /// Checks that the digest kept through every change is the one the tree's contents give
    /// (a change that forgot to update it would hide divergence between replicas).
    pub fn check_digest(&self) -> Result<(), String> {
        let full = self.full_sum();
        if full != self.sum {
            return Err(format!(
                "digest kept as {:#018x}, the contents give {:#018x}",
                self.sum, full
            ));
        }
        Ok(())
    }

    /// A node's share of the digest.
    fn share(&mut self, key: u64, id: NodeId) -> u64 {
        let n = self.slots[id as usize].as_ref().expect("a live node's id");
        let (acl, _) = acl_part(&mut self.acl_share, &n.acl);
        digest::node_with_acl(key, n, acl)
    }

    /// The zxid of the last applied transaction.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// A node by path.
    pub fn node(&self, path: &str) -> Option<&Node> {
        self.lookup(path).map(|id| self.get(id))
    }

    /// Number of znodes, system nodes included.
    pub fn node_count(&self) -> usize {
        self.count
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
        let Some(id) = self.lookup(path) else {
            return 0;
        };
        if id == ROOT {
            return self.count - 1;
        }
        let mut stack = vec![id];
        let mut n = 0;
        while let Some(id) = stack.pop() {
            let kids = self.get(id).children.iter().flat_map(|c| c.values());
            for &k in kids {
                n += 1;
                stack.push(k);
            }
        }
        n
    }

    /// The slot of the node at `path`. ZooKeeper's DataTree keeps the root under "" as well
    /// as "/": a read of the empty path (length 0 on the wire) answers with the root. Writes
    /// reject "" before looking. An empty component ("//", a trailing "/") names no node.
    fn lookup(&self, path: &str) -> Option<NodeId> {
        if path.is_empty() || path == "/" {
            return Some(ROOT);
        }
        let rest = path.strip_prefix('/')?;
        let mut id = ROOT;
        for name in rest.split('/') {
            id = self.get(id).child(name)?;
        }
        Some(id)
    }

    fn get(&self, id: NodeId) -> &Node {
        self.slots[id as usize].as_ref().expect("a live node's id")
    }

    fn get_mut(&mut self, id: NodeId) -> &mut Node {
        self.slots.get_mut(id as usize).as_mut().expect("a live node's id")
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        self.count += 1;
        match self.free.pop() {
            Some(id) => {
                debug_assert!(self.slots[id as usize].is_none(), "free slot {id} in use");
                *self.slots.get_mut(id as usize) = Some(node);
                id
            }
            None => {
                let id = NodeId::try_from(self.slots.len()).expect("fewer than 2^32 znodes");
                self.slots.push(Some(node));
                id
            }
        }
    }

    fn link(&mut self, parent: NodeId, name: &str, child: NodeId) {
        let kids = self.get_mut(parent).children.get_or_insert_with(Default::default);
        let old = kids.insert(name.into(), child);
        assert!(old.is_none(), "{name} linked twice");
    }

    /// The shared copy of an ACL list.
    fn intern(&mut self, acl: &Vec<Acl>) -> AclRef {
        if let Some(a) = self.acls.get(acl) {
            return a.clone();
        }
        if self.acls.len() >= self.acl_sweep_at {
            // Lists no node holds any more (nor a copy of the tree, which holds them too).
            self.acls.retain(|a| Arc::strong_count(a) > 1);
            self.acl_sweep_at = (self.acls.len() * 2).max(64);
        }
        let a = Arc::new(acl.clone());
        self.acls.insert(a.clone());
        a
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
                let (Some(parent_path), name) = (path::parent(path), path::name(path)) else {
                    return TxnResult::Error(ErrorCode::BadArguments);
                };
                let Some(pid) = self.lookup(parent_path) else {
                    return TxnResult::Error(ErrorCode::NoNode);
                };
                if name.is_empty() || name.contains('/') {
                    return TxnResult::Error(ErrorCode::BadArguments);
                }
                if self.get(pid).child(name).is_some() {
                    return TxnResult::Error(ErrorCode::NodeExists);
                }
                let acl = self.intern(acl);
                let node = Node {
                    data: data.as_deref().map(data_of),
                    acl: acl.clone(),
                    stat: StatPersisted {
                        czxid: zxid,
                        mzxid: zxid,
                        ctime: e.time,
                        mtime: e.time,
                        ephemeral_owner: *ephemeral_owner,
                        pzxid: zxid,
                        ..Default::default()
                    },
                    children: None,
                };
                let stat = node.stat();
                let parent_key = digest::path_key(parent_path);
                let key = digest::child_key(parent_key, name);
                let parent_before = self.share(parent_key, pid);
                let id = self.alloc(node);
                self.link(pid, name, id);
                let parent = self.get_mut(pid);
                let cv = if *parent_cversion == -1 {
                    parent.stat.cversion + 1
                } else {
                    *parent_cversion
                };
                if cv > parent.stat.cversion {
                    parent.stat.cversion = cv;
                    parent.stat.pzxid = zxid;
                }
                let parent_acl = parent.acl.clone();
                self.sum = self
                    .sum
                    .wrapping_sub(parent_before)
                    .wrapping_add(self.share(parent_key, pid))
                    .wrapping_add(self.share(key, id));
                match owner_kind(*ephemeral_owner) {
                    OwnerKind::Session => {
                        self.ephemerals
                            .entry(*ephemeral_owner)
                            .or_default()
                            .insert(path.clone());
                    }
                    OwnerKind::Container | OwnerKind::Ttl => {
                        self.special.insert(path.clone());
                    }
                    OwnerKind::Void => {}
                }
                triggers.push(WatchTrigger {
                    event: EventType::NodeCreated,
                    path: path.clone(),
                    acl,
                });
                triggers.push(WatchTrigger {
                    event: EventType::NodeChildrenChanged,
                    path: parent_path.to_string(),
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
                let Some(id) = self.lookup(path) else {
                    return TxnResult::Error(ErrorCode::NoNode);
                };
                let key = digest::path_key(path);
                let before = self.share(key, id);
                let n = self.get_mut(id);
                n.data = data.as_deref().map(data_of);
                n.stat.version = *version;
                n.stat.mzxid = zxid;
                n.stat.mtime = e.time;
                triggers.push(WatchTrigger {
                    event: EventType::NodeDataChanged,
                    path: path.clone(),
                    acl: n.acl.clone(),
                });
                let stat = n.stat();
                self.sum = self.sum.wrapping_sub(before).wrapping_add(self.share(key, id));
                TxnResult::DataSet(stat)
            }
            Txn::SetAcl { path, acl, version } => {
                let Some(id) = self.lookup(path) else {
                    return TxnResult::Error(ErrorCode::NoNode);
                };
                let acl = self.intern(acl);
                let key = digest::path_key(path);
                let before = self.share(key, id);
                let n = self.get_mut(id);
                n.acl = acl;
                n.stat.aversion = *version;
                let stat = n.stat();
                self.sum = self.sum.wrapping_sub(before).wrapping_add(self.share(key, id));
                TxnResult::AclSet(stat)
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
                if let Some(old) = self.sessions.insert(e.session_id, *timeout) {
                    self.sum = self.sum.wrapping_sub(digest::session(e.session_id, old));
                }
                self.sum = self.sum.wrapping_add(digest::session(e.session_id, *timeout));
                TxnResult::SessionCreated
            }
            Txn::CloseSession { ephemerals } => {
                for p in ephemerals {
                    if self.node(p).is_some_and(|n| n.stat.ephemeral_owner == e.session_id) {
                        self.delete(p, zxid, triggers);
                    }
                }
                // Anything created after prepare listed the ephemerals dies with the session too.
                let rest: Vec<String> = self.ephemerals_of(e.session_id).cloned().collect();
                for p in rest {
                    self.delete(&p, zxid, triggers);
                }
                if let Some(t) = self.sessions.remove(&e.session_id) {
                    self.sum = self.sum.wrapping_sub(digest::session(e.session_id, t));
                }
                TxnResult::SessionClosed
            }
        }
    }

    fn delete(&mut self, path: &str, zxid: i64, triggers: &mut Vec<WatchTrigger>) -> TxnResult {
        let (Some(parent_path), name) = (path::parent(path), path::name(path)) else {
            return TxnResult::Error(ErrorCode::BadArguments);
        };
        let Some(pid) = self.lookup(parent_path) else {
            return TxnResult::Error(ErrorCode::NoNode);
        };
        let Some(id) = self.get(pid).child(name) else {
            return TxnResult::Error(ErrorCode::NoNode);
        };
        if self.get(id).child_count() > 0 {
            return TxnResult::Error(ErrorCode::NotEmpty);
        }
        let parent_key = digest::path_key(parent_path);
        let gone = self
            .share(digest::child_key(parent_key, name), id)
            .wrapping_add(self.share(parent_key, pid));
        let parent = self.get_mut(pid);
        let kids = parent.children.as_mut().expect("the parent lists the node");
        kids.remove(name.as_bytes());
        if kids.is_empty() {
            parent.children = None;
        }
        let parent_acl = parent.acl.clone();
        // Deletes move pzxid but not the stored cversion, which counts creates only. Broken
        // on purpose under "delete-keeps-pzxid": the parent's pzxid stays where it was.
        if zxid > parent.stat.pzxid && !crate::bug("delete-keeps-pzxid") {
            parent.stat.pzxid = zxid;
        }
        let node = self.slots.get_mut(id as usize).take().expect("a live node's id");
        self.free.push(id);
        self.count -= 1;
        self.sum = self.sum.wrapping_sub(gone).wrapping_add(self.share(parent_key, pid));
        let owner = node.stat.ephemeral_owner;
        match owner_kind(owner) {
            OwnerKind::Session => {
                if let Some(set) = self.ephemerals.get_mut(&owner) {
                    set.remove(path);
                    if set.is_empty() {
                        self.ephemerals.remove(&owner);
                    }
                }
            }
            OwnerKind::Container | OwnerKind::Ttl => {
                self.special.remove(path);
            }
            OwnerKind::Void => {}
        }
        triggers.push(WatchTrigger {
            event: EventType::NodeDeleted,
            path: path.to_string(),
            acl: node.acl,
        });
        triggers.push(WatchTrigger {
            event: EventType::NodeChildrenChanged,
            path: parent_path.to_string(),
            acl: parent_acl,
        });
        TxnResult::Deleted
    }

    /// Nodes ZooKeeper's ContainerManager would delete now: empty containers that have had a
    /// child (stored cversion > 0), and empty TTL nodes not modified for longer than their TTL.
    pub fn reap_candidates(&self, now_ms: i64) -> Vec<String> {
        self.special
            .iter()
            .filter(|p| self.node(p).is_some_and(|n| reapable(&n.stat, n.child_count(), now_ms)))
            .cloned()
            .collect()
    }

    /// Visits every node in pre-order (children by name): its depth (the root's is 0), name
    /// (the root's is empty) and node. What a snapshot writes.
    pub(crate) fn walk<'a>(&'a self, mut visit: impl FnMut(usize, &'a [u8], &'a Node)) {
        let mut stack: Vec<(usize, &'a [u8], NodeId)> = vec![(0, b"", ROOT)];
        while let Some((depth, name, id)) = stack.pop() {
            let n = self.get(id);
            visit(depth, name, n);
            if let Some(kids) = &n.children {
                stack.extend(kids.iter().rev().map(|(k, &c)| (depth + 1, k.as_bytes(), c)));
            }
        }
    }

    /// Whether the subtrees at `a` (here) and `b` (in `other`) hold the same contents.
    fn same_nodes(&self, a: NodeId, other: &DataTree, b: NodeId) -> bool {
        let mut stack = vec![(a, b)];
        while let Some((a, b)) = stack.pop() {
            let (x, y) = (self.get(a), other.get(b));
            if x.data() != y.data() || *x.acl != *y.acl || x.stat != y.stat || x.child_count() != y.child_count() {
                return false;
            }
            if let (Some(xs), Some(ys)) = (&x.children, &y.children) {
                for ((xn, &xc), (yn, &yc)) in xs.iter().zip(ys.iter()) {
                    if xn != yn {
                        return false;
                    }
                    stack.push((xc, yc));
                }
            }
        }
        true
    }

    /// Checks the structural invariants; used by tests and debug builds after apply, and on
    /// every snapshot loaded.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen = vec![false; self.slots.len()];
        // Paths are made only for nodes with children and for what needs one (an index
        // lookup, an error): a path string per node was most of a million-node load's check.
        let mut parents: Vec<String> = vec![];
        let mut stack: Vec<(Option<usize>, &str, NodeId)> = vec![(None, "", ROOT)];
        let mut live = 0;
        let mut specials = 0;
        let mut ephemerals = 0;
        while let Some((parent, name, id)) = stack.pop() {
            let path_of =
                |parents: &[String]| parent.map_or_else(|| "/".to_string(), |i| path::join(&parents[i], name));
            let Some(Some(n)) = self.slots.get(id as usize) else {
                return Err(format!("{} is linked to a free slot", path_of(&parents)));
            };
            if std::mem::replace(&mut seen[id as usize], true) {
                return Err(format!("{} is linked twice", path_of(&parents)));
            }
            let me = n.children.is_some().then(|| {
                parents.push(path_of(&parents));
                parents.len() - 1
            });
            let parents = &parents;
            let path = || path_of(parents);
            let p = Lazy(&path);
            live += 1;
            if !self.acls.get(&*n.acl).is_some_and(|a| Arc::ptr_eq(a, &n.acl)) {
                return Err(format!("{p}'s ACL is not the shared copy"));
            }
            if n.children.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(format!("{p} has an empty children map"));
            }
            for (c, &cid) in n.children.iter().flat_map(|c| c.iter()) {
                let c = c.as_str();
                if c.is_empty() || c.contains('/') {
                    return Err(format!("{p} has a child named {c:?}"));
                }
                let Some(Some(child)) = self.slots.get(cid as usize) else {
                    return Err(format!("{p} lists missing child {c}"));
                };
                // Every child creation moved the parent's pzxid to at least its czxid.
                if child.stat.czxid > n.stat.pzxid {
                    return Err(format!(
                        "{p} has pzxid {} below child {c}'s czxid {}",
                        n.stat.pzxid, child.stat.czxid
                    ));
                }
                stack.push((me, c, cid));
            }
            if id != ROOT && (n.stat.czxid > n.stat.mzxid || n.stat.czxid > n.stat.pzxid) {
                return Err(format!("{p} has czxid after mzxid/pzxid"));
            }
            if n.stat.mzxid > self.last_zxid || n.stat.pzxid > self.last_zxid {
                return Err(format!("{p} has a zxid from the future"));
            }
            let owner = n.stat.ephemeral_owner;
            match owner_kind(owner) {
                OwnerKind::Session => {
                    ephemerals += 1;
                    if n.child_count() > 0 {
                        return Err(format!("ephemeral {p} has children"));
                    }
                    if !self.ephemerals.get(&owner).is_some_and(|s| s.contains(&path())) {
                        return Err(format!("ephemeral {p} missing from its session's index"));
                    }
                }
                OwnerKind::Container | OwnerKind::Ttl => {
                    specials += 1;
                    if !self.special.contains(&path()) {
                        return Err(format!("container or TTL node {p} missing from the reaper's index"));
                    }
                }
                OwnerKind::Void => {}
            }
        }
        if live != self.count {
            return Err(format!("{} nodes counted, {live} reachable", self.count));
        }
        let free: BTreeSet<NodeId> = self.free.iter().copied().collect();
        if free.len() != self.free.len()
            || free
                .iter()
                .any(|&f| self.slots.get(f as usize).is_none_or(|s| s.is_some()))
        {
            return Err("the free list holds a live, missing or repeated slot".into());
        }
        if self.slots.len() != live + free.len() {
            return Err(format!(
                "{} slots: {live} reachable, {} free, the rest lost",
                self.slots.len(),
                free.len()
            ));
        }
        if self.ephemerals.values().map(BTreeSet::len).sum::<usize>() != ephemerals || self.special.len() != specials {
            return Err("an index lists a node that is not its kind".into());
        }
        for (s, paths) in &self.ephemerals {
            for p in paths {
                if self.node(p).map(|n| n.stat.ephemeral_owner) != Some(*s) {
                    return Err(format!(
                        "index lists {p} for session {s:#x}, but it is not its ephemeral"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `acl`'s part of its nodes' digest shares, hashed once for a run of nodes that share the
/// list (`cache` holds the last list hashed); and whether it was hashed now.
fn acl_part(cache: &mut Option<(AclRef, u64)>, acl: &AclRef) -> (u64, bool) {
    match cache {
        Some((a, h)) if Arc::ptr_eq(a, acl) => (*h, false),
        _ => {
            let h = digest::acl(acl);
            *cache = Some((acl.clone(), h));
            (h, true)
        }
    }
}

/// Displays a path made only when displayed (in an error message).
struct Lazy<'a, F: Fn() -> String>(&'a F);

impl<F: Fn() -> String> std::fmt::Display for Lazy<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.0)())
    }
}

/// Rebuilds a tree from a pre-order walk (children by name), as a snapshot holds it: the
/// indexes are derived, child maps are built in bulk (full B-tree nodes), and every structural
/// claim is checked rather than trusted.
pub(crate) struct Rebuild {
    tree: DataTree,
    /// The nodes whose children are still to come, innermost last.
    open: Vec<Frame>,
}

struct Frame {
    id: NodeId,
    /// Its path's digest key.
    key: u64,
    path: String,
    left: usize,
    kids: Vec<(Name, NodeId)>,
}

impl Rebuild {
    /// An empty tree at `last_zxid` with these sessions; the root comes first.
    pub(crate) fn new(last_zxid: i64, sessions: BTreeMap<i64, i32>) -> Self {
        Rebuild {
            tree: DataTree::empty(last_zxid, sessions),
            open: vec![],
        }
    }

    /// The shared copy of an ACL list.
    pub(crate) fn acl(&mut self, acl: &Vec<Acl>) -> AclRef {
        self.tree.intern(acl)
    }

    /// The next node of the walk and how many children follow it.
    pub(crate) fn push(
        &mut self,
        name: &str,
        data: Option<Data>,
        acl: AclRef,
        stat: StatPersisted,
        children: usize,
    ) -> Result<(), String> {
        match self.open.last() {
            None if self.tree.count == 0 => {
                if !name.is_empty() {
                    return Err(format!("the first node is {name:?}, not the root"));
                }
            }
            None => return Err(format!("node {name:?} after the last announced one")),
            Some(top) => {
                if name.is_empty() || name.contains('/') {
                    return Err(format!("a child of {} is named {name:?}", top.path));
                }
                if top.kids.last().is_some_and(|(prev, _)| prev.as_str() >= name) {
                    return Err(format!("children of {} out of order at {name:?}", top.path));
                }
            }
        }
        // Made only where needed: a path string per node was a fifth of decoding a snapshot.
        let path = || {
            self.open
                .last()
                .map_or_else(|| "/".to_string(), |top| path::join(&top.path, name))
        };
        // Most nodes share the previous node's list: it is checked, and its part of the
        // digest hashed, once for them.
        let (acl_share, new_list) = acl_part(&mut self.tree.acl_share, &acl);
        if new_list && !self.tree.acls.get(&*acl).is_some_and(|a| Arc::ptr_eq(a, &acl)) {
            return Err(format!("{}'s ACL is not the shared copy", path()));
        }
        // The stat claims `check_invariants` makes, node by node (the rest hold by
        // construction): a walk of the whole tree afterwards was a tenth of a restart.
        if let Some(top) = self.open.last() {
            if stat.czxid > self.tree.get(top.id).stat.pzxid {
                return Err(format!("{} has pzxid below child {name}'s czxid", top.path));
            }
            if stat.czxid > stat.mzxid || stat.czxid > stat.pzxid {
                return Err(format!("{} has czxid after mzxid/pzxid", path()));
            }
        }
        if stat.mzxid > self.tree.last_zxid || stat.pzxid > self.tree.last_zxid {
            return Err(format!("{} has a zxid from the future", path()));
        }
        let kind = owner_kind(stat.ephemeral_owner);
        if kind == OwnerKind::Session && children > 0 {
            return Err(format!("ephemeral {} has children", path()));
        }
        let path = (children > 0 || kind != OwnerKind::Void).then(path);
        let key = self
            .open
            .last()
            .map_or(digest::ROOT_KEY, |top| digest::child_key(top.key, name));
        let node = Node {
            data,
            acl,
            stat,
            children: None,
        };
        self.tree.sum = self.tree.sum.wrapping_add(digest::node_with_acl(key, &node, acl_share));
        let id = self.tree.alloc(node);
        match (kind, &path) {
            (OwnerKind::Session, Some(p)) => {
                self.tree
                    .ephemerals
                    .entry(stat.ephemeral_owner)
                    .or_default()
                    .insert(p.clone());
            }
            (OwnerKind::Container | OwnerKind::Ttl, Some(p)) => {
                self.tree.special.insert(p.clone());
            }
            _ => {}
        }
        if let Some(top) = self.open.last_mut() {
            top.kids.push((name.into(), id));
            top.left -= 1;
        }
        if let (true, Some(path)) = (children > 0, path) {
            self.open.push(Frame {
                id,
                key,
                path,
                left: children,
                // Bounded: a corrupt count must not allocate before the children turn up.
                kids: Vec::with_capacity(children.min(1 << 12)),
            });
        }
        while self.open.last().is_some_and(|f| f.left == 0) {
            let f = self.open.pop().expect("checked");
            // Sorted already, so collecting builds the B-tree bottom-up with full nodes.
            self.tree.get_mut(f.id).children = Some(Box::new(f.kids.into_iter().collect()));
        }
        Ok(())
    }

    /// The tree, once every announced node has come.
    pub(crate) fn finish(self) -> Result<DataTree, String> {
        if let Some(f) = self.open.last() {
            return Err(format!("{} children of {} missing", f.left, f.path));
        }
        if self.tree.count == 0 {
            return Err("no root".into());
        }
        // `push` checked every claim the walk would; tests and the simulator confirm it (the
        // damaged-snapshot property test turns a claim `push` missed into a failure here).
        if cfg!(any(debug_assertions, madsim)) {
            if let Err(e) = self.tree.check_invariants() {
                panic!("a rebuilt tree passed every check of push, but not its invariants: {e}");
            }
        }
        Ok(self.tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::{Id, OpCode};

    fn create(t: &mut DataTree, path: &str, acl: Vec<Acl>) -> TxnResult {
        let e = TxnEntry {
            session_id: 1,
            zxid: t.last_zxid() + 1,
            time: 5,
            txn: Txn::Create {
                op: OpCode::Create,
                path: path.into(),
                data: Some(vec![1; 100]),
                acl,
                ephemeral_owner: 0,
                parent_cversion: -1,
            },
        };
        t.apply(&e).0
    }

    fn delete(t: &mut DataTree, path: &str) -> TxnResult {
        let e = TxnEntry {
            session_id: 1,
            zxid: t.last_zxid() + 1,
            time: 5,
            txn: Txn::Delete { path: path.into() },
        };
        t.apply(&e).0
    }

    fn digest(user: usize) -> Vec<Acl> {
        vec![Acl {
            perms: 31,
            id: Id {
                scheme: "digest".into(),
                id: format!("u{user}:hash"),
            },
        }]
    }

    fn set(t: &mut DataTree, path: &str, data: &[u8]) -> TxnResult {
        let e = TxnEntry {
            session_id: 1,
            zxid: t.last_zxid() + 1,
            time: 5,
            txn: Txn::SetData {
                path: path.into(),
                data: Some(data.to_vec()),
                version: 1,
            },
        };
        t.apply(&e).0
    }

    /// Replicas that applied the same entries agree on the digest, a different entry shows,
    /// and a change made behind the digest's back is caught by `check_digest`.
    #[test]
    fn the_digest_follows_the_contents() {
        let (mut a, mut b) = (DataTree::new(), DataTree::new());
        assert_eq!(a.digest(), b.digest());
        for t in [&mut a, &mut b] {
            create(t, "/x", open_acl());
            create(t, "/x/y", digest(1));
            delete(t, "/x/y");
            create(t, "/x/z", open_acl());
        }
        assert_eq!(a.digest(), b.digest());
        set(&mut a, "/x/z", b"one");
        set(&mut b, "/x/z", b"two");
        assert_ne!(a.digest(), b.digest(), "data differs");
        let (mut c, mut d) = (a.clone(), a.clone());
        set(&mut c, "/x", b"");
        let e = TxnEntry {
            session_id: 1,
            zxid: d.last_zxid() + 1,
            time: 5,
            txn: Txn::SetData {
                path: "/x".into(),
                data: None,
                version: 1,
            },
        };
        d.apply(&e);
        assert_ne!(c.digest(), d.digest(), "null and empty data differ");
        for t in [&a, &b, &c, &d] {
            t.check_digest().unwrap();
        }
        let id = a.lookup("/x/z").unwrap();
        a.get_mut(id).stat.version += 1;
        assert!(a.check_digest().is_err(), "a change the digest missed");
        let id = b.lookup("/x").unwrap();
        b.get_mut(id).stat.pzxid -= 1;
        assert!(b.check_digest().is_err(), "a parent's change the digest missed");
    }

    /// A snapshot whose stats break an invariant (an encoder bug: its checksum holds) is
    /// refused while it is decoded, as the walk of `check_invariants` refuses the tree.
    #[test]
    fn snapshots_with_impossible_stats_are_refused() {
        type Tamper = fn(&mut StatPersisted);
        let cases: [(&str, &str, Tamper, &str); 5] = [
            (
                "/x/y",
                "child created after the parent's pzxid",
                |s| s.czxid = s.pzxid + 1,
                "pzxid below child",
            ),
            (
                "/x/y",
                "created after modified",
                |s| s.mzxid = s.czxid - 1,
                "czxid after mzxid/pzxid",
            ),
            ("/x", "modified in the future", |s| s.mzxid = 1 << 40, "from the future"),
            (
                "/x/y",
                "children changed in the future",
                |s| s.pzxid = 1 << 40,
                "from the future",
            ),
            (
                "/x",
                "an ephemeral with children",
                |s| s.ephemeral_owner = 0x77,
                "ephemeral /x has children",
            ),
        ];
        for (path, what, tamper, expect) in cases {
            let mut t = DataTree::new();
            create(&mut t, "/x", open_acl());
            create(&mut t, "/x/y", open_acl());
            create(&mut t, "/x/y/z", open_acl());
            crate::tree::snapshot::decode(&crate::tree::snapshot::encode(&t)).expect("the untouched tree loads");
            let id = t.lookup(path).unwrap();
            tamper(&mut t.get_mut(id).stat);
            assert!(t.check_invariants().is_err(), "{what}: the walk refuses it");
            match crate::tree::snapshot::decode(&crate::tree::snapshot::encode(&t)) {
                Err(e) => assert!(e.to_string().contains(expect), "{what}: {e}"),
                Ok(_) => panic!("{what}: loaded"),
            }
        }
    }

    /// What a node costs is what the memory budget (300 MB for a million znodes) rests on.
    #[test]
    fn a_node_slot_is_96_bytes() {
        assert!(
            std::mem::size_of::<Option<Node>>() <= 96,
            "{}",
            std::mem::size_of::<Option<Node>>()
        );
    }

    /// Nodes with equal ACLs share one list; lists nobody holds any more are swept out, so
    /// many short-lived ACLs do not accumulate.
    #[test]
    fn equal_acls_are_shared_and_unused_ones_swept() {
        let mut t = DataTree::new();
        for i in 0..100 {
            assert!(matches!(
                create(&mut t, &format!("/n{i}"), open_acl()),
                TxnResult::Created { .. }
            ));
        }
        let a = t.node("/n0").unwrap().acl().clone();
        assert!(Arc::ptr_eq(&a, t.node("/n99").unwrap().acl()));
        assert!(Arc::ptr_eq(&a, t.node("/").unwrap().acl()));
        for i in 0..1000 {
            create(&mut t, "/d", digest(i));
            assert_eq!(delete(&mut t, "/d"), TxnResult::Deleted);
            assert!(t.acls.len() <= 130, "{} lists kept after {i} ACLs", t.acls.len());
        }
        t.check_invariants().unwrap();
    }

    /// A copy (what a compaction snapshot encodes while the loop goes on) keeps the state it was
    /// taken at through later creates, deletes and reused slots in every chunk, and the
    /// original goes on as if no copy had been taken.
    #[test]
    fn a_copy_keeps_its_state_while_the_tree_changes() {
        let (mut t, mut twin) = (DataTree::new(), DataTree::new());
        for i in 0..3000 {
            create(&mut t, &format!("/n{i}"), open_acl());
            create(&mut twin, &format!("/n{i}"), open_acl());
        }
        let copy = t.clone();
        let bytes = crate::tree::snapshot::encode(&copy);
        for i in (0..3000).step_by(7) {
            assert_eq!(delete(&mut t, &format!("/n{i}")), TxnResult::Deleted);
            assert_eq!(delete(&mut twin, &format!("/n{i}")), TxnResult::Deleted);
        }
        for i in 0..1500 {
            create(&mut t, &format!("/n{i}/m"), digest(i));
            create(&mut twin, &format!("/n{i}/m"), digest(i));
        }
        t.check_invariants().unwrap();
        copy.check_invariants().unwrap();
        assert_eq!(crate::tree::snapshot::encode(&copy), bytes, "the copy is unchanged");
        assert_eq!(copy.node_count(), 3000 + 4);
        assert!(copy.node("/n0").is_some() && copy.node("/n1/m").is_none());
        assert_eq!(t, twin, "the original is what it would be without the copy");
        assert_ne!(t, copy);
    }

    /// Slots are reused; the arena holds live nodes and free slots only.
    #[test]
    fn freed_slots_are_reused() {
        let mut t = DataTree::new();
        for round in 0..3 {
            for i in 0..50 {
                create(&mut t, &format!("/r{i}"), open_acl());
            }
            for i in 0..50 {
                assert_eq!(delete(&mut t, &format!("/r{i}")), TxnResult::Deleted, "round {round}");
            }
            t.check_invariants().unwrap();
        }
        assert_eq!(t.slots.len(), 4 + 50);
        assert_eq!(t.node_count(), 4);
        // Looked up by name, never by a stale slot.
        assert!(t.node("/r0").is_none());
        assert_eq!(delete(&mut t, "/r0"), TxnResult::Error(ErrorCode::NoNode));
        assert_eq!(delete(&mut t, "/zookeeper"), TxnResult::Error(ErrorCode::NotEmpty));
    }

    /// Paths with empty components, relative paths and trailing slashes name no node.
    #[test]
    fn malformed_paths_find_nothing() {
        let mut t = DataTree::new();
        create(&mut t, "/a", open_acl());
        create(&mut t, "/a/b", open_acl());
        for p in ["//a", "/a/", "a", "/a//b", "/a/b/", "zookeeper", "/a/b/c"] {
            assert!(t.node(p).is_none(), "{p}");
        }
        assert!(t.node("/a/b").is_some());
        assert_eq!(t.descendant_count("/a"), 1);
        assert_eq!(t.descendant_count("/"), 5);
    }
}
