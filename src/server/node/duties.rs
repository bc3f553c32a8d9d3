//! What time and role changes drive: Raft ticks; on the leader, container/TTL reaping and
//! session expiry; on the others, session touches sent to it; and what a change of leader does
//! to the requests in flight.

use super::*;

impl Node {
    pub(super) fn on_tick(&mut self) {
        self.raft.tick();
        self.drive_reconfig();
        // Snapshot bytes loaded for a follower go once no follower is being sent them.
        self.raft.drop_snapshot_data();
        self.check_read_only();
        let (now, mono) = (self.now(), self.mono());
        if self.role == Role::Leader && self.leader_ready && mono - self.last_reap >= self.cfg.container_check_ms as i64
        {
            // ZooKeeper's ContainerManager: empty containers and expired TTL nodes go (the
            // interval on the monotonic clock, TTLs against wall-clock mtimes as ZooKeeper).
            self.last_reap = mono;
            for path in self.tree.reap_candidates(now) {
                let req_id = self.new_req();
                self.propose(
                    self.origin(req_id),
                    0,
                    WriteOp::Request {
                        req: Request::DeleteContainer(path),
                        auth: vec![],
                        xid: 0,
                    },
                );
            }
        }
        if self.role == Role::Leader && self.leader_ready && !bug("no-expiry") {
            for s in self.tracker.expired(mono) {
                if bug("local-expiry") {
                    // Broken on purpose: the leader decides the expiry on its own and applies
                    // it to its tree without going through the log; followers never learn.
                    let zxid = self.next_zxid();
                    let entry = self.prepare(zxid, s, &WriteOp::Expire);
                    self.pending = Pending::new();
                    let _ = self.tree.apply(&entry);
                    self.tracker.remove(s);
                    continue;
                }
                if self.expiring.insert(s) {
                    #[cfg(madsim)]
                    crate::server::observer::report(crate::server::observer::Observation::Event {
                        node: self.id,
                        what: "session-expiry",
                    });
                    let req_id = self.new_req();
                    self.propose(self.origin(req_id), s, WriteOp::Expire);
                }
            }
        } else if let Some(l) = self.leader.filter(|&l| l != self.id) {
            // Local connections keep their sessions alive on the leader.
            let mut sessions: BTreeSet<i64> = std::mem::take(&mut self.touched);
            sessions.extend(self.session_conn.keys());
            self.peers.send(
                l,
                &PeerMsg::Touch {
                    sessions: sessions.into_iter().collect(),
                },
            );
        }
        // Syncs that found no leader retry.
        let retry: Vec<u64> = self
            .syncs_after_apply
            .iter()
            .filter(|(i, _)| *i == u64::MAX)
            .map(|(_, r)| *r)
            .collect();
        if !retry.is_empty() && self.leader.is_some() {
            self.syncs_after_apply.retain(|(i, _)| *i != u64::MAX);
            for r in retry {
                if self.raft.read_index(self.read_ctx(r)).is_err() {
                    self.syncs_after_apply.push((u64::MAX, r));
                }
            }
        }
    }

    /// Reacts to role and leader changes after any input.
    pub(super) fn observe_role(&mut self) {
        let (role, leader) = (self.raft.role(), self.raft.leader());
        // Every term in which this node acts as leader is reported, also one it moved into
        // without stepping down (only a broken Raft does that): election safety is per term.
        #[cfg(madsim)]
        if role == Role::Leader && self.raft.term() != self.reported_leader_term {
            self.reported_leader_term = self.raft.term();
            crate::server::observer::report(crate::server::observer::Observation::Leader {
                node: self.id,
                term: self.raft.term(),
            });
        }
        if role == self.role && leader == self.leader {
            return;
        }
        let was_leader = self.role == Role::Leader;
        let leader_changed = leader != self.leader;
        if leader_changed && leader.is_some() {
            self.metrics
                .leader_changes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::info!(node = self.id, term = self.raft.term(), ?role, ?leader, "role changed");
        self.role = role;
        self.leader = leader;
        if leader.is_some() {
            self.leaderless_since = None;
            if self.read_only {
                self.leave_read_only();
            }
        }
        if role == Role::Leader && !was_leader {
            self.term_start = self.raft.last_index();
            self.leader_ready = false;
            self.pending = Pending::new();
            self.zxid_counter = 0;
            self.expiring.clear();
            let now = self.mono();
            self.tracker.reset(self.tree.sessions(), now);
        }
        if was_leader && role != Role::Leader {
            self.leader_ready = false;
            self.pending = Pending::new();
        }
        if leader_changed && leader.is_some() {
            // Writes in flight may never commit under the new leader: their clients see a
            // connection loss and retry, as with ZooKeeper.
            let stale: Vec<u64> = self
                .waiting
                .iter()
                .filter(|(_, w)| matches!(w, Waiting::Write { .. } | Waiting::Connect { .. }))
                .map(|(k, _)| *k)
                .collect();
            let queued: BTreeSet<u64> = self.queued.iter().map(|(r, _, _)| *r).collect();
            for k in stale {
                if queued.contains(&k) {
                    continue;
                }
                match self.waiting.remove(&k) {
                    Some(Waiting::Write { conn, .. }) => self.close_conn(conn),
                    Some(Waiting::Connect { conn, reply, .. }) => {
                        let _ = reply.send(Handshake::Expired);
                        self.conns.remove(&conn);
                    }
                    _ => {}
                }
            }
            self.flush_queue();
        }
    }
}
