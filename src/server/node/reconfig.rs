//! ZooKeeper's `reconfig` over Raft's single-server changes, driven by the leader: new members
//! join as learners and are promoted only once they have caught up; voters are demoted or
//! removed after the additions, the leader itself last (Raft then hands leadership to the most
//! up-to-date remaining voter at once). Every step is one conf-change entry whose context is
//! the transaction writing the new `/zookeeper/config`, so each member's address book, the
//! znode and Raft's membership change together at the same index. The client's request is
//! answered by the last step, or by an error entry.

use super::*;
use crate::server::membership::{plan, DynamicConfig, Step};
use crate::tree::data_tree::CONFIG_NODE;

/// A reconfig the leader is carrying out.
pub(super) struct Reconfiguring {
    origin: Origin,
    session: i64,
    xid: i32,
    target: DynamicConfig,
    /// Index of the step proposed last: the next waits until it is applied.
    proposed: u64,
    /// Whether the step that answers the client is in the log.
    answered: bool,
    /// Learners must reach this index before one is promoted, by this deadline (monotonic ms).
    sync: Option<(u64, i64)>,
    /// Members this reconfig added, removed again if it fails.
    joined: BTreeSet<NodeId>,
    /// Why it failed: answered once the joined members are gone again.
    failed: Option<ErrorCode>,
    /// The membership after the step proposed last.
    at: Option<DynamicConfig>,
}

/// The origin of the intermediate steps: no node's, so nobody answers them.
const NOBODY: Origin = Origin {
    node: 0,
    boot: 0,
    req_id: 0,
};

impl Node {
    /// The membership recorded in the tree (or the static one before any reconfig); the peer
    /// transport follows it.
    pub(super) fn refresh_members(&mut self) {
        let recorded = self
            .tree
            .node(CONFIG_NODE)
            .and_then(|n| n.data().map(|d| String::from_utf8_lossy(d).into_owned()))
            .and_then(|t| DynamicConfig::parse(&t).ok().flatten());
        let members = recorded.unwrap_or_else(|| self.cfg.initial_membership());
        if members.version != self.members.version && members.version != 0 {
            self.write_dynamic_file(&members);
        }
        self.members = members;
        if !self.cfg.peers.is_empty() {
            self.peers.update(&self.members.peer_addrs());
        }
        if !self.is_member() && !self.conns.is_empty() {
            tracing::warn!(node = self.id, "removed from the ensemble: closing client connections");
            self.close_all_clients();
        }
    }

    /// Writes the membership beside the configuration file as `<file>.dynamic.<hex version>`
    /// (ZooKeeper's name), off the replica loop: for operators and tools, since the
    /// membership a restart uses is the one in the tree, recovered with the log.
    fn write_dynamic_file(&self, members: &DynamicConfig) {
        let Some(file) = self.cfg.file.clone() else { return };
        let path = format!("{file}.dynamic.{:x}", members.version);
        let text = members.render() + "\n";
        #[cfg(not(madsim))]
        tokio::task::spawn_blocking(move || {
            let tmp = format!("{path}.tmp");
            let written = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                tracing::warn!(%path, error = %e, "cannot write the dynamic configuration file");
            }
        });
        #[cfg(madsim)]
        let _ = (path, text);
    }

    /// Whether this server belongs to the ensemble (a reconfig may have removed it; it then
    /// serves no clients, as ZooKeeper's).
    pub(super) fn is_member(&self) -> bool {
        self.cfg.peers.is_empty() || self.members.servers.contains_key(&self.id)
    }

    /// Whether it serves clients: a member, not rebuilding a damaged replica.
    pub(super) fn serving(&self) -> bool {
        self.is_member() && !self.raft.is_recovering()
    }

    /// Leader: takes on a reconfig request, or answers why not (ZooKeeper's checks, in its
    /// order: ACL, standalone, another in progress, `fromConfig`, the new membership).
    pub(super) fn start_reconfig(&mut self, origin: Origin, session: i64, xid: i32, auth: &[Id], r: &ReconfigRequest) {
        let acl = self.tree.node(CONFIG_NODE).map(|n| n.acl().clone());
        let refused = if acl.is_some_and(|a| check_acl(&a, perms::WRITE, auth).is_err()) {
            Some(ErrorCode::NoAuth)
        } else if self.cfg.peers.is_empty() || (self.cfg.standalone_enabled && self.cfg.peers.len() == 1) {
            // A standalone server cannot be reconfigured (ZooKeeper: Unimplemented).
            Some(ErrorCode::Unimplemented)
        } else if self.reconfig.is_some() {
            Some(ErrorCode::ReconfigInProgress)
        } else if r.cur_config_id != -1 && r.cur_config_id != self.members.version {
            Some(ErrorCode::BadVersion)
        } else {
            None
        };
        let target = match refused {
            Some(e) => Err(e),
            None => self.members.target(r, self.cfg.standalone_enabled).map_err(|e| {
                tracing::info!(error = %e, "reconfig refused");
                ErrorCode::BadArguments
            }),
        };
        match target {
            Err(e) => self.answer_error(origin, session, xid, e),
            Ok(target) => {
                tracing::info!(node = self.id, target = %target.render().replace('\n', " "), "reconfig");
                self.reconfig = Some(Reconfiguring {
                    origin,
                    session,
                    xid,
                    target,
                    proposed: 0,
                    answered: false,
                    sync: None,
                    joined: BTreeSet::new(),
                    failed: None,
                    at: None,
                });
                self.drive_reconfig();
            }
        }
    }

    /// Takes the reconfig in progress one step further once the previous one is applied.
    pub(super) fn drive_reconfig(&mut self) {
        let Some(r) = &self.reconfig else { return };
        if self.role != Role::Leader {
            // The client's connection closes on the leader change; steps applied stay.
            self.reconfig = None;
            return;
        }
        // Broken on purpose under raft-conf-two-at-once: the next step goes before the last
        // one is applied (with Raft's one-at-a-time check off too).
        let two_at_once = bug("raft-conf-two-at-once");
        if r.proposed > self.raft.applied() && !two_at_once {
            return;
        }
        if r.answered {
            self.reconfig = None;
            return;
        }
        let base = match &r.at {
            Some(at) if two_at_once => at.clone(),
            _ => self.members.clone(),
        };
        if let Some(e) = r.failed {
            // Undo what the client never saw succeed: learners this reconfig added.
            if let Some(&id) = r.joined.iter().find(|id| base.servers.contains_key(id)) {
                return self.propose_step(&base, Step::Leave(id), false);
            }
            let (origin, session, xid) = (r.origin, r.session, r.xid);
            self.reconfig = None;
            return self.answer_error(origin, session, xid, e);
        }
        let steps = plan(&base, &r.target, self.id);
        let Some(&step) = steps.first() else {
            // Nothing changes: ZooKeeper still commits a new version of the same membership.
            let any = r.target.voters().next().expect("a target has a voter");
            return self.propose_step(&base, Step::Rewrite(any), true);
        };
        match step {
            // A new member starts from a snapshot (Raft takes care of that).
            Step::Promote(id) if !self.caught_up(id) => {}
            _ => {
                self.propose_step(&base, step, steps.len() == 1);
                if two_at_once && self.reconfig.as_ref().is_some_and(|r| r.proposed > self.raft.applied()) {
                    self.drive_reconfig();
                }
            }
        }
    }

    /// Whether learner `id` has caught up far enough to vote; past the deadline the reconfig
    /// fails (ZooKeeper: NewConfigNoQuorum, the new servers are not synced).
    fn caught_up(&mut self, id: NodeId) -> bool {
        if bug("reconfig-promote-unsynced") {
            // Broken on purpose: a new member gets a vote before it holds the log.
            return true;
        }
        let now = self.mono();
        let (committed, limit) = (
            self.raft.committed(),
            self.cfg.init_limit as i64 * self.cfg.tick_time_ms as i64,
        );
        let r = self.reconfig.as_mut().expect("driving one");
        let (index, deadline) = *r.sync.get_or_insert((committed, now + limit));
        let matched = self.raft.progress().get(&id).map_or(0, |p| p.matched);
        if matched >= index {
            return true;
        }
        if now >= deadline {
            tracing::warn!(
                node = self.id,
                learner = id,
                matched,
                index,
                "reconfig: learner did not catch up"
            );
            r.failed = Some(ErrorCode::NewConfigNoQuorum);
            self.drive_reconfig();
        }
        false
    }

    /// Proposes `step` with the transaction recording the membership after it; `last` steps
    /// carry the client's request and answer it when applied.
    fn propose_step(&mut self, base: &DynamicConfig, step: Step, last: bool) {
        let zxid = self.next_zxid();
        let time = self.now();
        let r = self.reconfig.as_mut().expect("driving one");
        let mut next = step.apply(base, &r.target);
        next.version = zxid;
        let entry = TxnEntry {
            session_id: r.session,
            zxid,
            time,
            txn: Txn::SetData {
                path: CONFIG_NODE.into(),
                data: Some(next.render().into_bytes()),
                version: -1,
            },
        };
        let (origin, cxid) = if last { (r.origin, r.xid) } else { (NOBODY, 0) };
        let context = Proposal { origin, cxid, entry }.encode();
        match self.raft.propose_conf_change(step.change(base), context) {
            Ok(index) => {
                tracing::info!(node = self.id, ?step, index, "reconfig step");
                r.proposed = index;
                r.answered = last;
                r.at = Some(next);
                if let Step::Join(id) = step {
                    r.joined.insert(id);
                }
            }
            // The previous change or this term's first entry is not applied yet: next time.
            Err(raft::RaftError::ConfChangePending | raft::RaftError::TermNotCommitted) => {}
            Err(e) => {
                tracing::warn!(node = self.id, ?step, error = %e, "reconfig step refused");
                r.failed = Some(ErrorCode::BadArguments);
            }
        }
    }

    /// Answers a reconfig with an error through the log (the client may be on another node).
    fn answer_error(&mut self, origin: Origin, session: i64, xid: i32, e: ErrorCode) {
        let entry = TxnEntry {
            session_id: session,
            zxid: self.next_zxid(),
            time: self.now(),
            txn: Txn::Error(e),
        };
        let data = Proposal {
            origin,
            cxid: xid,
            entry,
        }
        .encode();
        // Lost leadership meanwhile: the client's connection closes on the change.
        let _ = self.raft.propose(data);
    }
}
