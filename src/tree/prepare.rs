//! Prepare: validate a write against the tree plus not-yet-applied changes, and turn it into a
//! transaction (ZooKeeper's PrepRequestProcessor). Every write gets a transaction and a zxid;
//! a failed one becomes `Txn::Error`, exactly as ZooKeeper logs an ErrorTxn.

use super::acl::{check_acl, fixup_acl};
use super::data_tree::{owner_kind, reapable, ttl_owner, AclRef, DataTree, OwnerKind, StatPersisted, CONTAINER_OWNER};
use super::path::{self, validate_path};
use super::txn::{Txn, TxnEntry};
use crate::jute::{perms, Acl, CreateMode, ErrorCode, Id, MultiOp, OpCode, Request};
use std::collections::{BTreeMap, VecDeque};

/// Tree behaviour switches that come from server configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeConfig {
    /// `zookeeper.extendedTypesEnabled`: TTL nodes allowed.
    pub extended_types: bool,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig { extended_types: true }
    }
}

/// Who is asking and when: the context of one prepare.
#[derive(Debug, Clone, Copy)]
pub struct PrepareCtx<'a> {
    pub session_id: i64,
    /// The session's identities, distinct, in the order proved (an `AuthIds` list).
    pub auth: &'a [Id],
    pub zxid: i64,
    pub time: i64,
    pub config: TreeConfig,
}

/// A node as prepare sees it (ZooKeeper's ChangeRecord).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeRec {
    stat: StatPersisted,
    child_count: i32,
    acl: AclRef,
}

/// Changes prepared but not yet applied, layered over the tree so that a pipeline of writes
/// (and the ops of one multi) see each other's effects.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    nodes: BTreeMap<String, (i64, Option<NodeRec>)>,
    sessions: BTreeMap<i64, (i64, bool)>,
    /// Every change in the order prepared (zxids never decrease), so that forgetting the
    /// applied ones costs what they cost, not a scan of everything pending on each apply
    /// (that scan was 4% of a loaded server's time at 1,000 writes in flight).
    order: VecDeque<(i64, Changed)>,
}

/// What one pending change was to.
#[derive(Debug, Clone)]
enum Changed {
    Node(String),
    Session(i64),
}

impl Pending {
    /// No pending changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets changes the tree has now applied (every change with zxid ≤ `zxid`).
    pub fn applied(&mut self, zxid: i64) {
        while self.order.front().is_some_and(|(z, _)| *z <= zxid) {
            let (_, changed) = self.order.pop_front().expect("checked");
            // Kept if a later change to the same node or session is still pending.
            match changed {
                Changed::Node(path) => {
                    if self.nodes.get(&path).is_some_and(|(z, _)| *z <= zxid) {
                        self.nodes.remove(&path);
                    }
                }
                Changed::Session(id) => {
                    if self.sessions.get(&id).is_some_and(|(z, _)| *z <= zxid) {
                        self.sessions.remove(&id);
                    }
                }
            }
        }
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.sessions.is_empty()
    }

    fn get(&self, tree: &DataTree, path: &str) -> Result<NodeRec, ErrorCode> {
        if let Some((_, rec)) = self.nodes.get(path) {
            return rec.clone().ok_or(ErrorCode::NoNode);
        }
        tree.node(path)
            .map(|n| NodeRec {
                stat: n.stat,
                child_count: n.child_count() as i32,
                acl: n.acl().clone(),
            })
            .ok_or(ErrorCode::NoNode)
    }

    fn put(&mut self, zxid: i64, path: &str, rec: Option<NodeRec>) {
        debug_assert!(
            self.order.back().is_none_or(|(z, _)| *z <= zxid),
            "zxids prepared out of order"
        );
        self.nodes.insert(path.to_string(), (zxid, rec));
        self.order.push_back((zxid, Changed::Node(path.to_string())));
    }

    fn put_session(&mut self, zxid: i64, session: i64, alive: bool) {
        debug_assert!(
            self.order.back().is_none_or(|(z, _)| *z <= zxid),
            "zxids prepared out of order"
        );
        self.sessions.insert(session, (zxid, alive));
        self.order.push_back((zxid, Changed::Session(session)));
    }

    /// Whether `session` may write. Session 0 is the server's own (container and TTL reaps):
    /// no client has it.
    fn session_alive(&self, tree: &DataTree, session: i64) -> bool {
        if session == 0 {
            return true;
        }
        match self.sessions.get(&session) {
            Some((_, alive)) => *alive,
            None => tree.sessions().contains_key(&session),
        }
    }
}

impl DataTree {
    /// Prepares a write request; errors come back as `Txn::Error`, which still uses the zxid.
    pub fn prepare(&self, pending: &mut Pending, ctx: &PrepareCtx<'_>, req: &Request) -> TxnEntry {
        let txn = match req {
            Request::Multi(m) => self.prepare_multi(pending, ctx, &m.ops),
            Request::CloseSession => self.prepare_close_session(pending, ctx),
            other => self.prepare_op(pending, ctx, other).unwrap_or_else(Txn::Error),
        };
        TxnEntry {
            session_id: ctx.session_id,
            zxid: ctx.zxid,
            time: ctx.time,
            txn,
        }
    }

    /// Prepares a new session with its negotiated timeout.
    pub fn prepare_create_session(&self, pending: &mut Pending, ctx: &PrepareCtx<'_>, timeout: i32) -> TxnEntry {
        pending.put_session(ctx.zxid, ctx.session_id, true);
        TxnEntry {
            session_id: ctx.session_id,
            zxid: ctx.zxid,
            time: ctx.time,
            txn: Txn::CreateSession { timeout },
        }
    }

    fn prepare_close_session(&self, pending: &mut Pending, ctx: &PrepareCtx<'_>) -> Txn {
        let sid = ctx.session_id;
        let mut es: std::collections::BTreeSet<String> = self.ephemerals_of(sid).cloned().collect();
        for (p, (_, rec)) in &pending.nodes {
            match rec {
                None => {
                    es.remove(p);
                }
                Some(r) if r.stat.ephemeral_owner == sid => {
                    es.insert(p.clone());
                }
                // Deleted and re-created (by another session, or as a persistent node) since
                // the tree's index was written: no longer this session's. (Kept, it made every
                // write prepared after the close see the node as gone: found by
                // pipelined_prepare_equals_sequential.)
                Some(_) => {
                    es.remove(p);
                }
            }
        }
        for p in &es {
            self.record_delete(pending, ctx.zxid, p);
        }
        pending.put_session(ctx.zxid, sid, false);
        Txn::CloseSession {
            ephemerals: es.into_iter().collect(),
        }
    }

    fn record_delete(&self, pending: &mut Pending, zxid: i64, p: &str) {
        if let Some(parent) = path::parent(p) {
            if let Ok(mut pr) = pending.get(self, parent) {
                pr.child_count -= 1;
                pr.stat.pzxid = zxid;
                pending.put(zxid, parent, Some(pr));
            }
        }
        pending.put(zxid, p, None);
    }

    fn prepare_multi(&self, pending: &mut Pending, ctx: &PrepareCtx<'_>, ops: &[MultiOp]) -> Txn {
        let mut scratch = pending.clone();
        let mut txns = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let req = match op {
                MultiOp::Create(OpCode::Create2, r) => Request::Create2(r.clone()),
                MultiOp::Create(OpCode::CreateContainer, r) => Request::CreateContainer(r.clone()),
                MultiOp::Create(_, r) => Request::Create(r.clone()),
                MultiOp::CreateTtl(r) => Request::CreateTtl(r.clone()),
                MultiOp::Delete(r) => Request::Delete(r.clone()),
                MultiOp::SetData(r) => Request::SetData(r.clone()),
                MultiOp::Check(r) => Request::Check(r.clone()),
                // Reads cannot be mixed into a write multi.
                MultiOp::GetChildren(_) | MultiOp::GetData(_) => Request::Ping,
            };
            match self.prepare_op(&mut scratch, ctx, &req) {
                Ok(t) => txns.push(t),
                Err(_) if crate::bug("partial-multi") && !txns.is_empty() => {
                    // Broken on purpose: the ops before the failure are applied.
                    *pending = scratch;
                    return Txn::Multi(txns);
                }
                Err(code) => {
                    // ZooKeeper reports ok for ops before the failure, the failure itself, and
                    // RuntimeInconsistency after it; nothing of the multi is applied.
                    let errs = (0..ops.len())
                        .map(|j| {
                            Txn::Error(match j.cmp(&i) {
                                std::cmp::Ordering::Less => ErrorCode::Ok,
                                std::cmp::Ordering::Equal => code,
                                std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
                            })
                        })
                        .collect();
                    return Txn::Multi(errs);
                }
            }
        }
        *pending = scratch;
        Txn::Multi(txns)
    }

    fn prepare_op(&self, pending: &mut Pending, ctx: &PrepareCtx<'_>, req: &Request) -> Result<Txn, ErrorCode> {
        let zxid = ctx.zxid;
        // A closed, expired or closing session may not change anything (ZooKeeper's
        // checkSession, first thing for every write but a create, which validates its mode
        // first): a write in flight when its session expired must not take effect after.
        let live = pending.session_alive(self, ctx.session_id);
        if !live
            && matches!(
                req,
                Request::Delete(_) | Request::SetData(_) | Request::SetAcl(_) | Request::Check(_)
            )
        {
            return Err(ErrorCode::SessionExpired);
        }
        match req {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => {
                self.prepare_create(pending, ctx, req.op_code(), &r.path, &r.data, &r.acl, r.flags, -1)
            }
            Request::CreateTtl(r) => self.prepare_create(
                pending,
                ctx,
                OpCode::CreateTtl,
                &r.path,
                &r.data,
                &r.acl,
                r.flags,
                r.ttl,
            ),
            Request::Delete(r) => {
                let parent = special_parent(&r.path)?;
                let pr = pending.get(self, parent)?;
                check_acl(&pr.acl, perms::DELETE, ctx.auth)?;
                let n = pending.get(self, &r.path)?;
                check_version(n.stat.version, r.version)?;
                if n.child_count > 0 {
                    return Err(ErrorCode::NotEmpty);
                }
                self.record_delete(pending, zxid, &r.path);
                Ok(Txn::Delete { path: r.path.clone() })
            }
            Request::DeleteContainer(p) => {
                let _ = special_parent(p)?;
                let n = pending.get(self, p)?;
                if n.child_count > 0 {
                    return Err(ErrorCode::NotEmpty);
                }
                if owner_kind(n.stat.ephemeral_owner) == OwnerKind::Session {
                    return Err(ErrorCode::BadVersion);
                }
                // The server's own reap (session 0) chose the node from the applied tree; the
                // writes prepared since may have refilled the container, touched the TTL node,
                // or deleted it and created a persistent node at its path, which no reap may
                // delete. (ZooKeeper 3.8 checks only that the node is no session's ephemeral,
                // so its ContainerManager can delete a re-created persistent node.) Broken on
                // purpose under "reap-recreated": the old check alone.
                if ctx.session_id == 0
                    && !reapable(&n.stat, n.child_count.max(0) as usize, ctx.time)
                    && !crate::bug("reap-recreated")
                {
                    return Err(ErrorCode::BadVersion);
                }
                self.record_delete(pending, zxid, p);
                Ok(Txn::Delete { path: p.clone() })
            }
            Request::SetData(r) => {
                validate_path(&r.path).map_err(|_| ErrorCode::BadArguments)?;
                let mut n = pending.get(self, &r.path)?;
                check_acl(&n.acl, perms::WRITE, ctx.auth)?;
                let version = check_version(n.stat.version, r.version)?;
                n.stat.version = version;
                n.stat.mzxid = zxid;
                n.stat.mtime = ctx.time;
                pending.put(zxid, &r.path, Some(n));
                Ok(Txn::SetData {
                    path: r.path.clone(),
                    data: r.data.clone(),
                    version,
                })
            }
            Request::SetAcl(r) => {
                validate_path(&r.path).map_err(|_| ErrorCode::BadArguments)?;
                let acl = fixup_acl(ctx.auth, &r.acl)?;
                let mut n = pending.get(self, &r.path)?;
                check_acl(&n.acl, perms::ADMIN, ctx.auth)?;
                let version = check_version(n.stat.aversion, r.version)?;
                n.stat.aversion = version;
                n.acl = AclRef::new(acl.clone());
                pending.put(zxid, &r.path, Some(n));
                Ok(Txn::SetAcl {
                    path: r.path.clone(),
                    acl,
                    version,
                })
            }
            Request::Check(r) => {
                validate_path(&r.path).map_err(|_| ErrorCode::BadArguments)?;
                let n = pending.get(self, &r.path)?;
                check_acl(&n.acl, perms::READ, ctx.auth)?;
                check_version(n.stat.version, r.version)?;
                Ok(Txn::Check { path: r.path.clone() })
            }
            // Reconfiguration is not enabled (ZooKeeper's default reconfigEnabled=false).
            Request::Reconfig(_) => Err(ErrorCode::ReconfigDisabled),
            _ => Err(ErrorCode::BadArguments),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn prepare_create(
        &self,
        pending: &mut Pending,
        ctx: &PrepareCtx<'_>,
        op: OpCode,
        path_in: &str,
        data: &Option<Vec<u8>>,
        acl: &[Acl],
        flags: i32,
        ttl: i64,
    ) -> Result<Txn, ErrorCode> {
        let mode = CreateMode::try_from(flags).map_err(|_| ErrorCode::BadArguments)?;
        if mode.is_ttl() && !ctx.config.extended_types {
            return Err(ErrorCode::Unimplemented);
        }
        if mode.is_ttl() {
            ttl_owner(ttl).ok_or(ErrorCode::BadArguments)?;
        } else if ttl >= 0 || op == OpCode::CreateTtl {
            // createTTL with a mode that has no TTL: ZooKeeper 3.8.0 lets a negative ttl
            // through and its log then holds a transaction that stops it (found by difftest);
            // zraft refuses the request, as ZooKeeper does for any other ttl.
            return Err(ErrorCode::BadArguments);
        }
        // Broken on purpose: under "ephemeral-for-closing-session" an ephemeral is created for
        // a session that is closing or gone (it outlives its session); under
        // "writes-after-expiry" (zraft until the model checker found it) only ephemeral
        // creates check the session.
        let skip = if mode.is_ephemeral() {
            crate::bug("ephemeral-for-closing-session")
        } else {
            crate::bug("writes-after-expiry")
        };
        // (The server's own session 0 may not own an ephemeral.)
        let alive = pending.session_alive(self, ctx.session_id) && !(mode.is_ephemeral() && ctx.session_id == 0);
        if !alive && !skip {
            return Err(ErrorCode::SessionExpired);
        }
        if path_in.contains('\0') {
            return Err(ErrorCode::BadArguments);
        }
        let parent_path = path::parent(path_in).ok_or(ErrorCode::BadArguments)?;
        let acl = fixup_acl(ctx.auth, acl)?;
        let mut parent = pending.get(self, parent_path)?;
        check_acl(&parent.acl, perms::CREATE, ctx.auth)?;
        let path = if mode.is_sequential() {
            format!("{path_in}{:010}", parent.stat.cversion)
        } else {
            path_in.to_string()
        };
        validate_path(&path).map_err(|_| ErrorCode::BadArguments)?;
        if pending.get(self, &path).is_ok() {
            return Err(ErrorCode::NodeExists);
        }
        if owner_kind(parent.stat.ephemeral_owner) == OwnerKind::Session {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let parent_cversion = parent.stat.cversion + 1;
        // The opcode, not the flags, decides the node type: create/create2 with the container
        // flag make a plain node, as ZooKeeper's CreateTxn does.
        let ephemeral_owner = if op == OpCode::CreateContainer {
            CONTAINER_OWNER
        } else if op == OpCode::CreateTtl {
            ttl_owner(ttl).expect("validated above")
        } else if mode.is_ephemeral() {
            ctx.session_id
        } else {
            0
        };
        parent.child_count += 1;
        parent.stat.cversion = parent_cversion;
        parent.stat.pzxid = ctx.zxid;
        pending.put(ctx.zxid, parent_path, Some(parent));
        let stat = StatPersisted {
            czxid: ctx.zxid,
            mzxid: ctx.zxid,
            ctime: ctx.time,
            mtime: ctx.time,
            ephemeral_owner,
            pzxid: ctx.zxid,
            ..Default::default()
        };
        pending.put(
            ctx.zxid,
            &path,
            Some(NodeRec {
                stat,
                child_count: 0,
                acl: AclRef::new(acl.clone()),
            }),
        );
        Ok(Txn::Create {
            op,
            path,
            data: data.clone(),
            acl,
            ephemeral_owner,
            parent_cversion,
        })
    }
}

/// `getParentPathAndValidate`: delete targets need a slash, no NUL, and not a system node.
fn special_parent(p: &str) -> Result<&str, ErrorCode> {
    if p.contains('\0') || matches!(p, "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config") {
        return Err(ErrorCode::BadArguments);
    }
    path::parent(p).ok_or(ErrorCode::BadArguments)
}

/// -1 matches any version; the result is the next version.
fn check_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}
