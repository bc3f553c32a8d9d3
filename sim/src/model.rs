//! A reference model of ZooKeeper 3.8's data tree, sessions and watch tables, written from
//! ZooKeeper's behaviour (PrepRequestProcessor's checks in their order, DataTree's stat
//! updates, WatchManager's modes), not from `zraft::tree`: the model checker replays the
//! committed transactions through it in zxid order and compares every reply with it.
//!
//! Simplifications, all kept out of the simulated workload: ACLs are judged for the
//! `world:anyone` identity only (simulated clients never authenticate), and every ACL the
//! workload sets grants READ (so the per-watcher READ check never suppresses an event).

use std::collections::{BTreeMap, BTreeSet};
use zraft::jute::*;

/// ephemeralOwner of a container node (ZooKeeper's `Long.MIN_VALUE`).
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// High byte marking a TTL node's ephemeralOwner.
const TTL_MASK: i64 = 0xff00_0000_0000_0000u64 as i64;
/// Largest TTL ZooKeeper accepts (ms).
const MAX_TTL: i64 = 0xff_ffff_ffff;
/// Nodes no client may delete.
const SYSTEM: [&str; 4] = ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"];

/// One znode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub czxid: i64,
    pub mzxid: i64,
    pub pzxid: i64,
    pub version: i32,
    /// Children created so far (ZooKeeper's stored cversion: what sequential names count).
    pub creates: i32,
    pub aversion: i32,
    /// Raw ephemeralOwner: a session, `CONTAINER_OWNER`, a TTL marker, or 0.
    pub owner: i64,
    pub children: BTreeSet<String>,
}

impl Node {
    fn new(data: Option<Vec<u8>>, acl: Vec<Acl>, zxid: i64, owner: i64) -> Self {
        Node {
            data,
            acl,
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            version: 0,
            creates: 0,
            aversion: 0,
            owner,
            children: BTreeSet::new(),
        }
    }

    /// Owned by a session (not a container or TTL node, not persistent).
    pub fn session_owner(&self) -> Option<i64> {
        (self.owner != 0 && self.owner != CONTAINER_OWNER && self.owner & TTL_MASK != TTL_MASK).then_some(self.owner)
    }

    /// The Stat a client sees. ctime and mtime are the leader's clock, which the model does not
    /// know: they read 0 here and the checker ignores them. A client sees cversion as creates
    /// plus deletes (ZooKeeper stores creates only and derives it), and 0 as the owner of
    /// containers and TTL nodes.
    pub fn stat(&self) -> Stat {
        let n = self.children.len() as i32;
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: 0,
            mtime: 0,
            version: self.version,
            cversion: self.creates.wrapping_mul(2).wrapping_sub(n),
            aversion: self.aversion,
            ephemeral_owner: self.session_owner().unwrap_or(0),
            data_length: self.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children: n,
            pzxid: self.pzxid,
        }
    }
}

/// A change that fires watches: the event and the path it is about.
pub type Trigger = (EventType, String);

/// The parent of a path ("/" for top-level nodes); None for "/" and paths without a slash.
pub fn parent(p: &str) -> Option<&str> {
    match p.rfind('/') {
        None => None,
        Some(_) if p == "/" => None,
        Some(0) => Some("/"),
        Some(i) => Some(&p[..i]),
    }
}

/// ZooKeeper's PathUtils.validatePath, for the paths the workload can produce.
fn valid_path(p: &str) -> bool {
    if !p.starts_with('/') || p.contains('\0') {
        return false;
    }
    if p == "/" {
        return true;
    }
    !p.ends_with('/') && p[1..].split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// Whether `world:anyone` may do `perm` under `acl`.
fn allowed(acl: &[Acl], perm: i32) -> bool {
    acl.iter()
        .any(|a| a.perms & perm != 0 && a.id.scheme == "world" && a.id.id == "anyone")
}

/// ZooKeeper's fixupACL for an unauthenticated session: a non-empty list of world:anyone
/// entries (anything else needs identities the session does not have).
fn fixup(acl: &[Acl]) -> Result<Vec<Acl>, ErrorCode> {
    if acl.is_empty() || acl.iter().any(|a| a.id.scheme != "world" || a.id.id != "anyone") {
        return Err(ErrorCode::InvalidAcl);
    }
    // ZooKeeper drops duplicate entries.
    let mut out: Vec<Acl> = vec![];
    for a in acl {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// One write op (alone or inside a multi).
enum WriteOp<'a> {
    Create {
        op: OpCode,
        path: &'a str,
        data: &'a Option<Vec<u8>>,
        acl: &'a [Acl],
        flags: i32,
        ttl: i64,
    },
    Delete(&'a DeleteRequest),
    SetData(&'a SetDataRequest),
    SetAcl(&'a SetAclRequest),
    Check(&'a CheckVersionRequest),
}

/// What a successful write op did, for its reply.
enum Done {
    Created { op: OpCode, path: String, stat: Stat },
    Deleted,
    DataSet(Stat),
    AclSet(Stat),
    Checked,
}

/// Old states of the paths a multi touched, to roll it back; None outside a multi, which
/// nothing rolls back (saving a parent copied its whole set of children at every create).
type Undo = Option<Vec<(String, Option<Node>)>>;

/// The model: znodes, open sessions, and the zxid of the last transaction applied.
#[derive(Debug, Clone)]
pub struct Model {
    nodes: BTreeMap<String, Node>,
    open: BTreeSet<i64>,
    pub zxid: i64,
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    /// A fresh ensemble: the root and ZooKeeper's system nodes.
    pub fn new() -> Self {
        let open = vec![Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }];
        let mut nodes = BTreeMap::new();
        for p in SYSTEM {
            nodes.insert(p.to_string(), Node::new(Some(vec![]), open.clone(), 0, 0));
        }
        for p in &SYSTEM[1..] {
            let (par, name) = split(p);
            let pn = nodes.get_mut(par).expect("system parent");
            pn.children.insert(name.to_string());
            pn.creates += 1;
        }
        Model {
            nodes,
            open: BTreeSet::new(),
            zxid: 0,
        }
    }

    /// The node at `p`.
    pub fn node(&self, p: &str) -> Option<&Node> {
        self.nodes.get(p)
    }

    /// Whether `session` is open (created and not closed or expired).
    pub fn is_open(&self, session: i64) -> bool {
        self.open.contains(&session)
    }

    /// A new session.
    pub fn create_session(&mut self, session: i64, zxid: i64) {
        self.zxid = zxid;
        self.open.insert(session);
    }

    /// The session closes or expires: its ephemerals go (in path order; ZooKeeper's order
    /// is a hash set's, so the checker does not order the events of one transaction).
    pub fn close_session(&mut self, session: i64, zxid: i64) -> Vec<Trigger> {
        self.zxid = zxid;
        self.open.remove(&session);
        let mine: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.session_owner() == Some(session))
            .map(|(p, _)| p.clone())
            .collect();
        let mut fired = vec![];
        for p in mine {
            self.remove(&p, zxid, &mut fired, &mut None);
        }
        fired
    }

    /// The leader reaps `p`: it must be an empty container that once had a child, or an empty
    /// TTL node (whose expiry the model cannot time). Err says why it is not reapable.
    pub fn reap(&mut self, p: &str, zxid: i64) -> Result<Vec<Trigger>, String> {
        self.zxid = zxid;
        let Some(n) = self.nodes.get(p) else {
            return Err("no such node".into());
        };
        let reapable = n.children.is_empty()
            && ((n.owner == CONTAINER_OWNER && n.creates > 0)
                || (n.owner != CONTAINER_OWNER && n.owner & TTL_MASK == TTL_MASK));
        if !reapable {
            return Err(format!("not an empty container or TTL node: {n:?}"));
        }
        let mut fired = vec![];
        self.remove(p, zxid, &mut fired, &mut None);
        Ok(fired)
    }

    /// Applies `session`'s write request as the transaction `zxid`: the reply's error code
    /// and body, and the watch triggers in order. A request that is not a write is refused
    /// with `None`.
    pub fn write(&mut self, session: i64, req: &Request, zxid: i64) -> Option<(ErrorCode, Response, Vec<Trigger>)> {
        self.zxid = zxid;
        let mut fired = vec![];
        let op = match req {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => WriteOp::Create {
                op: req.op_code(),
                path: &r.path,
                data: &r.data,
                acl: &r.acl,
                flags: r.flags,
                ttl: -1,
            },
            Request::CreateTtl(r) => WriteOp::Create {
                op: OpCode::CreateTtl,
                path: &r.path,
                data: &r.data,
                acl: &r.acl,
                flags: r.flags,
                ttl: r.ttl,
            },
            Request::Delete(r) => WriteOp::Delete(r),
            Request::SetData(r) => WriteOp::SetData(r),
            Request::SetAcl(r) => WriteOp::SetAcl(r),
            Request::Check(r) => WriteOp::Check(r),
            Request::Multi(m) => return Some(self.multi(session, &m.ops, zxid)),
            Request::CloseSession => {
                let fired = self.close_session(session, zxid);
                return Some((ErrorCode::Ok, Response::Empty, fired));
            }
            // ZooKeeper's default reconfigEnabled=false: an error transaction.
            Request::Reconfig(_) => return Some((ErrorCode::ReconfigDisabled, Response::Empty, vec![])),
            _ => return None,
        };
        let mut undo: Undo = None;
        Some(match self.op(session, op, zxid, &mut fired, &mut undo) {
            Ok(done) => {
                let resp = match done {
                    Done::Created {
                        op: OpCode::Create,
                        path,
                        ..
                    } => Response::Create(CreateResponse { path }),
                    Done::Created { path, stat, .. } => Response::Create2(Create2Response { path, stat }),
                    Done::Deleted | Done::Checked => Response::Empty,
                    Done::DataSet(stat) => Response::SetData(SetDataResponse { stat }),
                    Done::AclSet(stat) => Response::SetAcl(SetAclResponse { stat }),
                };
                (ErrorCode::Ok, resp, fired)
            }
            Err(e) => (e, Response::Empty, vec![]),
        })
    }

    /// A multi: all ops or none. The reply header says ok either way; a failed multi reports
    /// ok for the ops before the failure, its error, and RuntimeInconsistency after it.
    fn multi(&mut self, session: i64, ops: &[MultiOp], zxid: i64) -> (ErrorCode, Response, Vec<Trigger>) {
        let mut undo: Undo = Some(vec![]);
        let mut fired = vec![];
        let mut results = vec![];
        for (i, op) in ops.iter().enumerate() {
            let w = match op {
                MultiOp::Create(code, r) => WriteOp::Create {
                    op: *code,
                    path: &r.path,
                    data: &r.data,
                    acl: &r.acl,
                    flags: r.flags,
                    ttl: -1,
                },
                MultiOp::CreateTtl(r) => WriteOp::Create {
                    op: OpCode::CreateTtl,
                    path: &r.path,
                    data: &r.data,
                    acl: &r.acl,
                    flags: r.flags,
                    ttl: r.ttl,
                },
                MultiOp::Delete(r) => WriteOp::Delete(r),
                MultiOp::SetData(r) => WriteOp::SetData(r),
                MultiOp::Check(r) => WriteOp::Check(r),
                // Reads have no place in a write multi.
                MultiOp::GetChildren(_) | MultiOp::GetData(_) => {
                    self.rollback(undo);
                    return (
                        ErrorCode::Ok,
                        Response::Multi(failed(ops.len(), i, ErrorCode::BadArguments)),
                        vec![],
                    );
                }
            };
            match self.op(session, w, zxid, &mut fired, &mut undo) {
                Ok(Done::Created {
                    op: OpCode::Create | OpCode::Create2,
                    path,
                    ..
                }) => results.push(OpResult::Create(path)),
                Ok(Done::Created { path, stat, .. }) => results.push(OpResult::Create2(OpCode::Create2, path, stat)),
                Ok(Done::Deleted) => results.push(OpResult::Delete),
                Ok(Done::DataSet(stat)) => results.push(OpResult::SetData(stat)),
                Ok(Done::Checked) => results.push(OpResult::Check),
                Ok(Done::AclSet(_)) => unreachable!("setACL is not a multi op"),
                Err(e) => {
                    self.rollback(undo);
                    return (ErrorCode::Ok, Response::Multi(failed(ops.len(), i, e)), vec![]);
                }
            }
        }
        (ErrorCode::Ok, Response::Multi(results), fired)
    }

    fn rollback(&mut self, undo: Undo) {
        for (p, old) in undo.unwrap_or_default().into_iter().rev() {
            match old {
                Some(n) => self.nodes.insert(p, n),
                None => self.nodes.remove(&p),
            };
        }
    }

    /// Remembers `p`'s state before a multi's op changes it.
    fn save(&self, p: &str, undo: &mut Undo) {
        if let Some(undo) = undo {
            undo.push((p.to_string(), self.nodes.get(p).cloned()));
        }
    }

    /// Checks in PrepRequestProcessor's order, then the change.
    fn op(
        &mut self,
        session: i64,
        op: WriteOp<'_>,
        zxid: i64,
        fired: &mut Vec<Trigger>,
        undo: &mut Undo,
    ) -> Result<Done, ErrorCode> {
        let live = self.open.contains(&session);
        match op {
            WriteOp::Create {
                op,
                path,
                data,
                acl,
                flags,
                ttl,
            } => {
                let mode = CreateMode::try_from(flags).map_err(|_| ErrorCode::BadArguments)?;
                let ttl_mode = matches!(
                    mode,
                    CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
                );
                if ttl_mode {
                    if !(1..=MAX_TTL).contains(&ttl) {
                        return Err(ErrorCode::BadArguments);
                    }
                } else if ttl >= 0 || op == OpCode::CreateTtl {
                    return Err(ErrorCode::BadArguments);
                }
                if !live {
                    return Err(ErrorCode::SessionExpired);
                }
                let par = match path.rfind('/') {
                    Some(i) if !path.contains('\0') && path != "/" => {
                        if i == 0 {
                            "/"
                        } else {
                            &path[..i]
                        }
                    }
                    _ => return Err(ErrorCode::BadArguments),
                };
                let acl = fixup(acl)?;
                let pn = self.nodes.get(par).ok_or(ErrorCode::NoNode)?;
                if !allowed(&pn.acl, perms::CREATE) {
                    return Err(ErrorCode::NoAuth);
                }
                let sequential = matches!(
                    mode,
                    CreateMode::PersistentSequential
                        | CreateMode::EphemeralSequential
                        | CreateMode::PersistentSequentialWithTtl
                );
                let name = if sequential {
                    format!("{path}{:010}", pn.creates)
                } else {
                    path.to_string()
                };
                if !valid_path(&name) {
                    return Err(ErrorCode::BadArguments);
                }
                if self.nodes.contains_key(&name) {
                    return Err(ErrorCode::NodeExists);
                }
                if pn.session_owner().is_some() {
                    return Err(ErrorCode::NoChildrenForEphemerals);
                }
                // The opcode decides containers and TTLs; the flags decide ephemerals.
                let owner = match op {
                    OpCode::CreateContainer => CONTAINER_OWNER,
                    OpCode::CreateTtl => TTL_MASK | ttl,
                    _ if matches!(mode, CreateMode::Ephemeral | CreateMode::EphemeralSequential) => session,
                    _ => 0,
                };
                self.save(par, undo);
                self.save(&name, undo);
                let pn = self.nodes.get_mut(par).expect("looked up");
                pn.creates += 1;
                pn.pzxid = zxid;
                pn.children
                    .insert(name[par.len() + usize::from(par != "/")..].to_string());
                let node = Node::new(data.clone(), acl, zxid, owner);
                let stat = node.stat();
                self.nodes.insert(name.clone(), node);
                fired.push((EventType::NodeCreated, name.clone()));
                fired.push((EventType::NodeChildrenChanged, par.to_string()));
                Ok(Done::Created { op, path: name, stat })
            }
            WriteOp::Delete(r) => {
                if !live {
                    return Err(ErrorCode::SessionExpired);
                }
                if r.path.contains('\0') || SYSTEM.contains(&r.path.as_str()) {
                    return Err(ErrorCode::BadArguments);
                }
                let par = parent(&r.path).ok_or(ErrorCode::BadArguments)?;
                let pn = self.nodes.get(par).ok_or(ErrorCode::NoNode)?;
                if !allowed(&pn.acl, perms::DELETE) {
                    return Err(ErrorCode::NoAuth);
                }
                let n = self.nodes.get(&r.path).ok_or(ErrorCode::NoNode)?;
                versioned(r.version, n.version)?;
                if !n.children.is_empty() {
                    return Err(ErrorCode::NotEmpty);
                }
                self.remove(&r.path, zxid, fired, undo);
                Ok(Done::Deleted)
            }
            WriteOp::SetData(r) => {
                usable(live, &r.path)?;
                let n = self.node_for(&r.path, perms::WRITE)?;
                versioned(r.version, n.version)?;
                self.save(&r.path, undo);
                let n = self.nodes.get_mut(&r.path).expect("looked up");
                n.data = r.data.clone();
                n.version = n.version.wrapping_add(1);
                n.mzxid = zxid;
                fired.push((EventType::NodeDataChanged, r.path.clone()));
                Ok(Done::DataSet(n.stat()))
            }
            WriteOp::SetAcl(r) => {
                usable(live, &r.path)?;
                let acl = fixup(&r.acl)?;
                let n = self.node_for(&r.path, perms::ADMIN)?;
                versioned(r.version, n.aversion)?;
                self.save(&r.path, undo);
                let n = self.nodes.get_mut(&r.path).expect("looked up");
                n.acl = acl;
                n.aversion = n.aversion.wrapping_add(1);
                Ok(Done::AclSet(n.stat()))
            }
            WriteOp::Check(r) => {
                usable(live, &r.path)?;
                let n = self.node_for(&r.path, perms::READ)?;
                versioned(r.version, n.version)?;
                Ok(Done::Checked)
            }
        }
    }

    /// The node a setData, setACL or check names, if it exists and allows `perm`.
    fn node_for(&self, p: &str, perm: i32) -> Result<&Node, ErrorCode> {
        let n = self.nodes.get(p).ok_or(ErrorCode::NoNode)?;
        if !allowed(&n.acl, perm) {
            return Err(ErrorCode::NoAuth);
        }
        Ok(n)
    }

    /// Deletes a childless node: the parent's pzxid moves (its stored cversion does not).
    fn remove(&mut self, p: &str, zxid: i64, fired: &mut Vec<Trigger>, undo: &mut Undo) {
        let par = parent(p).expect("a deletable node has a parent");
        self.save(p, undo);
        self.save(par, undo);
        let n = self.nodes.remove(p).expect("exists");
        debug_assert!(n.children.is_empty(), "only childless nodes are removed");
        let pn = self.nodes.get_mut(par).expect("a node's parent exists");
        pn.children.remove(&p[par.len() + usize::from(par != "/")..]);
        pn.pzxid = pn.pzxid.max(zxid);
        fired.push((EventType::NodeDeleted, p.to_string()));
        fired.push((EventType::NodeChildrenChanged, par.to_string()));
    }

    /// Answers a read of `session` from the current state; None for requests that are not
    /// reads of the tree (watch management, sync, writes).
    pub fn read(&self, session: i64, req: &Request) -> Option<Result<Response, ErrorCode>> {
        let get = |p: &str| self.nodes.get(p).ok_or(ErrorCode::NoNode);
        let readable = |n: &Node| {
            if allowed(&n.acl, perms::READ) {
                Ok(())
            } else {
                Err(ErrorCode::NoAuth)
            }
        };
        Some(match req {
            Request::Exists(r) => get(&r.path).map(|n| Response::Exists(ExistsResponse { stat: n.stat() })),
            Request::GetData(r) => get(&r.path).and_then(|n| {
                readable(n)?;
                Ok(Response::GetData(GetDataResponse {
                    data: n.data.clone(),
                    stat: n.stat(),
                }))
            }),
            Request::GetChildren(r) => get(&r.path).and_then(|n| {
                readable(n)?;
                Ok(Response::GetChildren(GetChildrenResponse {
                    children: n.children.iter().cloned().collect(),
                }))
            }),
            Request::GetChildren2(r) => get(&r.path).and_then(|n| {
                readable(n)?;
                Ok(Response::GetChildren2(GetChildren2Response {
                    children: n.children.iter().cloned().collect(),
                    stat: n.stat(),
                }))
            }),
            Request::GetAllChildrenNumber(r) => get(&r.path).map(|_| {
                let below = self
                    .nodes
                    .range(format!("{}/", r.path.trim_end_matches('/'))..)
                    .take_while(|(p, _)| p.starts_with(&format!("{}/", r.path.trim_end_matches('/'))))
                    .count();
                Response::GetAllChildrenNumber(GetAllChildrenNumberResponse {
                    total_number: below as i32,
                })
            }),
            Request::GetEphemerals(r) => {
                let prefix = r.prefix_path.clone().unwrap_or_else(|| "/".into());
                Ok(Response::GetEphemerals(GetEphemeralsResponse {
                    ephemerals: self
                        .nodes
                        .iter()
                        .filter(|(p, n)| n.session_owner() == Some(session) && p.starts_with(&prefix))
                        .map(|(p, _)| p.clone())
                        .collect(),
                }))
            }
            Request::GetAcl(r) => get(&r.path).map(|n| {
                Response::GetAcl(GetAclResponse {
                    acl: n.acl.clone(),
                    stat: n.stat(),
                })
            }),
            Request::MultiRead(m) => Ok(Response::Multi(
                m.ops
                    .iter()
                    .map(|op| match op {
                        MultiOp::GetData(r) => match get(&r.path).and_then(|n| readable(n).map(|_| n)) {
                            Ok(n) => OpResult::GetData(n.data.clone(), n.stat()),
                            Err(e) => OpResult::Error(e),
                        },
                        MultiOp::GetChildren(r) => match get(&r.path).and_then(|n| readable(n).map(|_| n)) {
                            Ok(n) => OpResult::GetChildren(n.children.iter().cloned().collect()),
                            Err(e) => OpResult::Error(e),
                        },
                        _ => OpResult::Error(ErrorCode::BadArguments),
                    })
                    .collect(),
            )),
            _ => return None,
        })
    }
}

/// The checks PrepRequestProcessor makes first for setData, setACL and check: the session,
/// then the path.
fn usable(live: bool, p: &str) -> Result<(), ErrorCode> {
    if !live {
        return Err(ErrorCode::SessionExpired);
    }
    if !valid_path(p) {
        return Err(ErrorCode::BadArguments);
    }
    Ok(())
}

/// checkAndIncVersion: -1 matches any version.
fn versioned(expected: i32, current: i32) -> Result<(), ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(())
}

/// A failed multi's results.
fn failed(n: usize, at: usize, e: ErrorCode) -> Vec<OpResult> {
    (0..n)
        .map(|j| {
            OpResult::Error(match j.cmp(&at) {
                std::cmp::Ordering::Less => ErrorCode::Ok,
                std::cmp::Ordering::Equal => e,
                std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
            })
        })
        .collect()
}

/// (parent, name) of a path with a parent.
fn split(p: &str) -> (&str, &str) {
    let par = parent(p).expect("has a parent");
    (par, &p[par.len() + usize::from(par != "/")..])
}

/// Whether a request changes the tree (goes through the log) in ZooKeeper.
pub fn is_write(req: &Request) -> bool {
    matches!(
        req,
        Request::Create(_)
            | Request::Create2(_)
            | Request::CreateContainer(_)
            | Request::CreateTtl(_)
            | Request::Delete(_)
            | Request::SetData(_)
            | Request::SetAcl(_)
            | Request::Check(_)
            | Request::Multi(_)
            | Request::CloseSession
            | Request::Reconfig(_)
    )
}

/// How a watch fires (ZooKeeper's WatcherMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Once.
    Standard,
    /// Every event at its path.
    Persistent,
    /// Every event at its path or below, except child-list changes.
    Recursive,
}

/// One of ZooKeeper's two watch managers: path → watcher → mode (one mode per watcher and
/// path: the last registered).
#[derive(Debug, Default, Clone)]
struct Manager<W: Ord + Copy> {
    table: BTreeMap<String, BTreeMap<W, Mode>>,
    recursive: usize,
}

impl<W: Ord + Copy> Manager<W> {
    fn add(&mut self, p: &str, w: W, m: Mode) {
        let old = self.table.entry(p.to_string()).or_default().insert(w, m);
        self.recursive += usize::from(m == Mode::Recursive);
        self.recursive -= usize::from(old == Some(Mode::Recursive));
    }

    fn remove(&mut self, p: &str, w: W) -> bool {
        let Some(ws) = self.table.get_mut(p) else { return false };
        let Some(old) = ws.remove(&w) else { return false };
        if ws.is_empty() {
            self.table.remove(p);
        }
        self.recursive -= usize::from(old == Mode::Recursive);
        true
    }

    fn has(&self, p: &str, w: W) -> bool {
        self.table.get(p).is_some_and(|ws| ws.contains_key(&w))
    }

    fn anyone(&self, p: &str) -> bool {
        self.table.contains_key(p)
    }

    /// The watchers an event at `p` notifies; one-shot watches at `p` are used up. Ancestors'
    /// recursive watches hear everything but child-list changes.
    fn trigger(&mut self, p: &str, ev: EventType, out: &mut BTreeSet<W>) {
        let mut cur = Some(p);
        let mut at_parent = false;
        while let Some(c) = cur {
            if let Some(ws) = self.table.get_mut(c) {
                let mut gone = 0;
                ws.retain(|w, m| match m {
                    Mode::Recursive => {
                        if ev != EventType::NodeChildrenChanged {
                            out.insert(*w);
                        }
                        true
                    }
                    _ if at_parent => true,
                    Mode::Persistent => {
                        out.insert(*w);
                        true
                    }
                    Mode::Standard => {
                        out.insert(*w);
                        gone += 1;
                        false
                    }
                });
                if ws.is_empty() {
                    self.table.remove(c);
                }
            }
            if self.recursive == 0 {
                break;
            }
            at_parent = true;
            cur = parent(c);
        }
    }

    fn drop_watcher(&mut self, w: W) {
        let mut rec = 0;
        self.table.retain(|_, ws| {
            rec += usize::from(ws.remove(&w) == Some(Mode::Recursive));
            !ws.is_empty()
        });
        self.recursive -= rec;
    }
}

/// Watch tables of every connection (watcher `W`), as ZooKeeper 3.8.0 keeps them: a data and
/// a child manager; a one-shot registration replaces a persistent one on the same path;
/// addWatch puts its mode in both managers; a deletion notifies a watcher once.
#[derive(Debug, Clone)]
pub struct Watches<W: Ord + Copy> {
    data: Manager<W>,
    child: Manager<W>,
}

impl<W: Ord + Copy> Default for Watches<W> {
    fn default() -> Self {
        Watches {
            data: Manager {
                table: BTreeMap::new(),
                recursive: 0,
            },
            child: Manager {
                table: BTreeMap::new(),
                recursive: 0,
            },
        }
    }
}

impl<W: Ord + Copy> Watches<W> {
    /// getData or exists with a watch.
    pub fn data(&mut self, p: &str, w: W) {
        self.data.add(p, w, Mode::Standard);
    }

    /// getChildren with a watch.
    pub fn child(&mut self, p: &str, w: W) {
        self.child.add(p, w, Mode::Standard);
    }

    /// addWatch (persistent or recursive): both managers.
    pub fn persistent(&mut self, p: &str, w: W, m: Mode) {
        self.data.add(p, w, m);
        self.child.add(p, w, m);
    }

    /// The watchers a trigger notifies (each once).
    pub fn fire(&mut self, t: &Trigger) -> BTreeSet<W> {
        let mut out = BTreeSet::new();
        match t.0 {
            EventType::NodeCreated | EventType::NodeDataChanged => self.data.trigger(&t.1, t.0, &mut out),
            EventType::NodeDeleted => {
                self.data.trigger(&t.1, t.0, &mut out);
                self.child.trigger(&t.1, t.0, &mut out);
            }
            EventType::NodeChildrenChanged => self.child.trigger(&t.1, t.0, &mut out),
            _ => {}
        }
        out
    }

    /// removeWatches of type `ty` (1 children, 2 data, 3 any): whether one was removed.
    /// ZooKeeper 3.8.0 removes persistent kinds only through "any".
    pub fn remove(&mut self, p: &str, ty: i32, w: W) -> bool {
        match ty {
            1 => self.child.remove(p, w),
            2 => self.data.remove(p, w),
            3 => {
                let c = self.child.remove(p, w);
                let d = self.data.remove(p, w);
                c || d
            }
            _ => false,
        }
    }

    /// Whether `w` holds a watch of type `ty` on `p` (what checkWatches must answer ok to),
    /// and whether anyone does (3.8.0's checkWatches also answers ok then, on that server).
    pub fn holds(&self, p: &str, ty: i32, w: W) -> (bool, bool) {
        let (d, c) = (self.data.has(p, w), self.child.has(p, w));
        let (ad, ac) = (self.data.anyone(p), self.child.anyone(p));
        match ty {
            1 => (c, ac),
            2 => (d, ad),
            3 => (c || d, ac || ad),
            _ => (false, false),
        }
    }

    /// The connection is gone.
    pub fn drop_watcher(&mut self, w: W) {
        self.data.drop_watcher(w);
        self.child.drop_watcher(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Vec<Acl> {
        vec![Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }]
    }

    fn create(path: &str, flags: i32) -> Request {
        Request::Create(CreateRequest {
            path: path.into(),
            data: Some(b"x".to_vec()),
            acl: open(),
            flags,
        })
    }

    fn code(m: &mut Model, s: i64, r: &Request, z: i64) -> ErrorCode {
        m.write(s, r, z).expect("a write").0
    }

    #[test]
    fn creates_deletes_and_stats_as_zookeeper() {
        let mut m = Model::new();
        m.create_session(7, 1);
        assert_eq!(code(&mut m, 7, &create("/a", 0), 2), ErrorCode::Ok);
        let (_, r, fired) = m.write(7, &create("/a/s-", 2), 3).unwrap();
        assert_eq!(
            r,
            Response::Create(CreateResponse {
                path: "/a/s-0000000000".into()
            })
        );
        assert_eq!(
            fired,
            vec![
                (EventType::NodeCreated, "/a/s-0000000000".into()),
                (EventType::NodeChildrenChanged, "/a".into())
            ]
        );
        assert_eq!(code(&mut m, 7, &create("/a/e", 1), 4), ErrorCode::Ok);
        assert_eq!(
            code(&mut m, 7, &create("/a/e/x", 0), 5),
            ErrorCode::NoChildrenForEphemerals
        );
        assert_eq!(code(&mut m, 7, &create("/a", 0), 6), ErrorCode::NodeExists);
        assert_eq!(code(&mut m, 7, &create("/b/c", 0), 7), ErrorCode::NoNode);
        let del = Request::Delete(DeleteRequest {
            path: "/a/s-0000000000".into(),
            version: -1,
        });
        assert_eq!(code(&mut m, 7, &del, 8), ErrorCode::Ok);
        // Two creates and one delete: cversion 3 as clients see it, one child left, pzxid at
        // the delete, and the next sequential name counts creates only.
        let s = m.node("/a").unwrap().stat();
        assert_eq!((s.cversion, s.num_children, s.pzxid), (3, 1, 8));
        let (_, r, _) = m.write(7, &create("/a/s-", 2), 9).unwrap();
        assert_eq!(
            r,
            Response::Create(CreateResponse {
                path: "/a/s-0000000002".into()
            })
        );
        let not_empty = Request::Delete(DeleteRequest {
            path: "/a".into(),
            version: -1,
        });
        assert_eq!(code(&mut m, 7, &not_empty, 10), ErrorCode::NotEmpty);
        // Closing the session deletes its ephemeral; later writes of it fail.
        let fired = m.close_session(7, 11);
        assert!(fired.contains(&(EventType::NodeDeleted, "/a/e".into())));
        assert_eq!(code(&mut m, 7, &create("/c", 0), 12), ErrorCode::SessionExpired);
    }

    #[test]
    fn a_failed_multi_changes_nothing() {
        let mut m = Model::new();
        m.create_session(1, 1);
        let multi = Request::Multi(MultiRequest {
            ops: vec![
                MultiOp::Create(
                    OpCode::Create,
                    CreateRequest {
                        path: "/m".into(),
                        data: None,
                        acl: open(),
                        flags: 0,
                    },
                ),
                MultiOp::Check(CheckVersionRequest {
                    path: "/m".into(),
                    version: 5,
                }),
                MultiOp::Delete(DeleteRequest {
                    path: "/m".into(),
                    version: -1,
                }),
            ],
        });
        let (err, r, fired) = m.write(1, &multi, 2).unwrap();
        assert_eq!(err, ErrorCode::Ok);
        assert_eq!(
            r,
            Response::Multi(vec![
                OpResult::Error(ErrorCode::Ok),
                OpResult::Error(ErrorCode::BadVersion),
                OpResult::Error(ErrorCode::RuntimeInconsistency)
            ])
        );
        assert!(fired.is_empty());
        assert!(m.node("/m").is_none());
        assert_eq!(m.node("/").unwrap().creates, 1, "the rolled-back create is undone");
    }

    #[test]
    fn watch_modes_as_zookeeper_3_8_0() {
        let mut w: Watches<u32> = Watches::default();
        w.data("/p", 1);
        w.data("/p", 1);
        w.child("/p", 1);
        w.persistent("/", 2, Mode::Recursive);
        w.persistent("/p", 3, Mode::Persistent);
        // One event per watcher for a deletion, whatever it registered.
        let f = w.fire(&(EventType::NodeDeleted, "/p".into()));
        assert_eq!(f.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            w.fire(&(EventType::NodeDataChanged, "/p".into())).len(),
            2,
            "1's one-shot watches are spent"
        );
        assert_eq!(
            w.fire(&(EventType::NodeChildrenChanged, "/p".into()))
                .into_iter()
                .collect::<Vec<_>>(),
            vec![3],
            "recursive watches skip child-list changes"
        );
        assert_eq!(w.holds("/p", 2, 9), (false, true));
        assert!(!w.remove("/p", 2, 9));
        assert!(w.remove("/p", 3, 3));
        w.drop_watcher(2);
        assert!(w.fire(&(EventType::NodeCreated, "/q".into())).is_empty());
    }
}
