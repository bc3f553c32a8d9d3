//! The write path up to Raft (ZooKeeper's PrepRequestProcessor): writes go to the leader, which
//! prepares each as a transaction with its zxid and proposes it.

use super::*;

impl Node {
    /// Routes a write to the leader (here or remote), or queues it until one is known.
    pub(super) fn submit(&mut self, req_id: u64, session: i64, op: WriteOp) {
        let origin = self.origin(req_id);
        if self.role == Role::Leader && self.leader_ready {
            self.propose(origin, session, op);
        } else if let Some(l) = self.leader.filter(|&l| l != self.id) {
            self.peers.send(l, &PeerMsg::Forward { origin, session, op });
        } else {
            self.queued.push_back((req_id, session, op));
        }
    }

    /// This incarnation's request `req_id`.
    pub(super) fn origin(&self, req_id: u64) -> Origin {
        Origin {
            node: self.id,
            boot: self.boot,
            req_id,
        }
    }

    /// Whether a proposal answers a request of this incarnation.
    pub(super) fn mine(&self, o: &Origin) -> bool {
        o.node == self.id && o.boot == self.boot
    }

    /// The next zxid of this leader's term (term << 32 | counter, as ZooKeeper's epoch).
    pub(super) fn next_zxid(&mut self) -> i64 {
        self.zxid_counter += 1;
        ((self.raft.term() as i64) << 32) | self.zxid_counter
    }

    /// Leader: prepares `op` and proposes it to Raft.
    pub(super) fn propose(&mut self, origin: Origin, session: i64, op: WriteOp) {
        if let WriteOp::Request {
            req: Request::Reconfig(r),
            auth,
            xid,
        } = &op
        {
            // Disabled, it fails in prepare like ZooKeeper's (ReconfigDisabled).
            if self.cfg.reconfig_enabled {
                return self.start_reconfig(origin, session, *xid, auth, r);
            }
        }
        let zxid = self.next_zxid();
        let entry = self.prepare(zxid, session, &op);
        let cxid = match op {
            WriteOp::Request { xid, .. } => xid,
            _ => 0,
        };
        let proposal = Proposal { origin, cxid, entry };
        let data = proposal.encode();
        if let Ok(index) = self.raft.propose(data) {
            // A new leader's entries replace whatever an earlier term left at these indexes.
            while self.proposed.back().is_some_and(|(i, _, _)| *i >= index) {
                self.proposed.pop_back();
            }
            self.proposed.push_back((index, self.raft.term(), proposal));
        } else {
            // Lost leadership between checks: forget prepared state, retry via the new leader.
            self.pending = Pending::new();
            self.leader_ready = false;
            if self.mine(&origin) {
                self.queued.push_back((origin.req_id, session, op));
            }
        }
    }

    /// Prepares `op` as the transaction with `zxid` (ZooKeeper's PrepRequestProcessor).
    pub(super) fn prepare(&mut self, zxid: i64, session: i64, op: &WriteOp) -> TxnEntry {
        let now = self.now();
        let cfg = TreeConfig::default();
        // Borrowed: the list came from the session's `AuthIds`, already distinct.
        let auth: &[Id] = match op {
            WriteOp::Request { auth, .. } => auth,
            _ => &[],
        };
        let ctx = PrepareCtx {
            session_id: session,
            auth,
            zxid,
            time: now,
            config: cfg,
        };
        match op {
            WriteOp::Request { req, .. } => self.tree.prepare(&mut self.pending, &ctx, req),
            WriteOp::CreateSession { timeout } => self.tree.prepare_create_session(&mut self.pending, &ctx, *timeout),
            WriteOp::Expire => self.tree.prepare(&mut self.pending, &ctx, &Request::CloseSession),
        }
    }

    pub(super) fn on_peer(&mut self, m: PeerMsg) {
        match m {
            PeerMsg::Hello { .. } => {}
            PeerMsg::Raft(msg) => self.raft.step(msg),
            PeerMsg::Forward { origin, session, op } => {
                if self.role == Role::Leader && self.leader_ready {
                    self.propose(origin, session, op);
                } else if let Some(l) = self.leader.filter(|&l| l != self.id) {
                    self.peers.send(l, &PeerMsg::Forward { origin, session, op });
                }
                // Otherwise dropped: the origin closes the client's connection on the
                // leader change and the client retries.
            }
            PeerMsg::Touch { sessions } => {
                if self.role == Role::Leader {
                    let now = self.mono();
                    for s in sessions {
                        self.tracker.touch(s, now);
                    }
                }
            }
        }
    }

    pub(super) fn flush_queue(&mut self) {
        if self.leader.is_none() || (self.role == Role::Leader && !self.leader_ready) {
            return;
        }
        for (req_id, session, op) in std::mem::take(&mut self.queued) {
            self.submit(req_id, session, op);
        }
    }
}
