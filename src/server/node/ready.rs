//! Raft's `Ready`, handed to the WAL stage (ZooKeeper's SyncRequestProcessor): what must be
//! durable, which messages wait for it, what is committed, and snapshots for compaction.

use super::*;

impl Node {
    /// Takes every Ready: hands its persistence to the WAL stage, sends a leader's replication
    /// at once and holds every other message until the Ready is durable, applies what is
    /// committed.
    pub(super) fn process_ready(&mut self) -> Result<(), NodeError> {
        while self.raft.has_ready() {
            let rd = self.raft.ready();
            // Before this Ready's appends: a change proposed once the last one committed
            // must come after that commit in the record.
            #[cfg(madsim)]
            self.report_leader_commit();
            if rd.load_snapshot.is_some() {
                self.wal_job(Job::LoadSnapshot);
            }
            if rd.compact {
                self.snapshot_soon = true;
            }
            if let Some(s) = &rd.snapshot {
                self.tree = snapshot::decode(&s.data)?;
                self.refresh_members();
                // Installed: Raft need not keep the bytes (nor, once persisted, this Ready).
                self.snapshot_bytes = s.data.len() as u64;
                self.metrics.snapshots.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .snapshot_bytes
                    .store(self.snapshot_bytes, Ordering::Relaxed);
                self.raft.drop_snapshot_data();
                self.pending = Pending::new();
                self.proposed.clear();
                self.applied_zxid.store(self.tree.last_zxid(), Ordering::Release);
                // Installing a snapshot skips the transactions it covers, and with them their
                // effects on this server's clients: sessions closed meanwhile, watches that
                // should have fired. As a ZooKeeper follower that syncs from a snapshot, serve
                // none of the old connections: clients reconnect, re-send their watches
                // (changes they missed fire at once) or learn that their session expired.
                let conns: Vec<u64> = self.conns.keys().copied().collect();
                for conn in conns {
                    self.close_conn(conn);
                }
                #[cfg(madsim)]
                {
                    self.snapshots_seen += 1;
                    crate::server::observer::report(crate::server::observer::Observation::Snapshot {
                        node: self.id,
                        index: s.meta.index,
                        installed: true,
                    });
                    // Entries kept after the snapshot now follow its last entry: all of them
                    // (reporting only the first told the checkers this node held less than
                    // it did, once leaders sent snapshots to followers that kept a suffix).
                    let terms: Vec<u64> = (s.meta.index + 1..=self.raft.last_index())
                        .map_while(|i| self.raft.term_at(i))
                        .collect();
                    if !terms.is_empty() {
                        crate::server::observer::report(crate::server::observer::Observation::Entries {
                            node: self.id,
                            first: s.meta.index + 1,
                            prev_term: s.meta.term,
                            terms,
                        });
                    }
                }
            }
            #[cfg(madsim)]
            if let Some(first) = rd.entries.first() {
                // The in-memory log holds these entries now, so it names their predecessor.
                let prev_term = match &rd.snapshot {
                    Some(s) if s.meta.index + 1 == first.index => Some(s.meta.term),
                    _ => self.raft.term_at(first.index - 1),
                };
                if let Some(prev_term) = prev_term {
                    crate::server::observer::report(crate::server::observer::Observation::Entries {
                        node: self.id,
                        first: first.index,
                        prev_term,
                        terms: rd.entries.iter().map(|e| e.term).collect(),
                    });
                }
                for e in rd.entries.iter().filter(|e| e.kind == raft::EntryKind::ConfChange) {
                    if let Some((change, _)) = raft::ConfChange::decode(&e.data) {
                        crate::server::observer::report(crate::server::observer::Observation::ConfAppended {
                            node: self.id,
                            index: e.index,
                            term: e.term,
                            change,
                        });
                    }
                }
            }
            let mut held = vec![];
            for m in rd.messages {
                // Broken on purpose under "ack-before-fsync": everything leaves at once, so a
                // follower acknowledges appends (and grants votes) before they are durable;
                // under "vote-before-fsync" only votes do (a crash forgets the vote, and the
                // node votes again in the same term).
                let early_vote = matches!(m.body, raft::Body::VoteResponse { .. }) && bug("vote-before-fsync");
                if m.may_precede_persistence() || early_vote || bug("ack-before-fsync") {
                    self.send_raft(m);
                } else {
                    held.push(m);
                }
            }
            if rd.must_sync {
                // Taken either way: a hard state of this Ready supersedes the unwritten one.
                let hard_state = rd.hard_state.or(self.unwritten_commit.take());
                self.next_ready += 1;
                let id = self.next_ready;
                self.unpersisted.push_back(Unpersisted {
                    id,
                    last: rd.entries.last().map(|e| (e.index, e.term)),
                    held,
                });
                self.wal_job(Job::Ready {
                    id,
                    snapshot: rd.snapshot,
                    entries: rd.entries,
                    hard_state,
                });
            } else {
                if let Some(hs) = rd.hard_state {
                    self.unwritten_commit = Some(hs);
                }
                if let Some(u) = self.unpersisted.back_mut() {
                    // Messages may speak for state an earlier Ready still persists.
                    u.held.extend(held);
                } else {
                    for m in held {
                        self.send_raft(m);
                    }
                }
            }
            for e in &rd.committed {
                // What the entry adds to the log a restart replays (and to memory, unless
                // Raft can release it), until a snapshot lets the log drop it.
                self.log_bytes += e.data.len() as u64 + 64;
                self.apply(e);
            }
            if let Some(last) = rd.committed.last() {
                self.raft.on_applied(last.index);
                self.raft.release_applied();
                if self.trim_after.is_some_and(|i| self.raft.applied() >= i) {
                    self.trim_after = None;
                    // The recovered log's bytes and entries are free now (measured, 1M znodes:
                    // resident 310 MB after a restart without this), in the allocator's lists.
                    #[cfg(not(madsim))]
                    tokio::task::spawn_blocking(crate::server::persist::release_free_memory);
                }
            }
            for rs in &rd.read_states {
                // An answer to a previous incarnation's read index is not ours to use.
                if rs.ctx.len() == 16 && rs.ctx[..8] == self.boot.to_be_bytes() {
                    let req_id = u64::from_be_bytes(rs.ctx[8..].try_into().expect("8 bytes"));
                    self.syncs_after_apply.push((rs.index, req_id));
                }
            }
            self.finish_syncs();
            self.observe_role();
            self.drive_reconfig();
            if self.role == Role::Leader && !self.leader_ready && self.raft.applied() >= self.term_start {
                self.leader_ready = true;
                self.flush_queue();
            }
            self.maybe_compact();
            if self.rebuilding && !self.raft.is_recovering() {
                // Handed after the Ready that made the rebuilt state durable-to-be.
                self.rebuilding = false;
                tracing::info!(node = self.id, "replica rebuilt from the ensemble: voting again");
                self.wal_job(Job::Rebuilt);
            }
        }
        #[cfg(madsim)]
        self.report_live();
        Ok(())
    }

    /// Reports a leader's commit index moving (for the Raft and membership checkers).
    #[cfg(madsim)]
    pub(super) fn report_leader_commit(&mut self) {
        let hs = self.raft.hard_state();
        if self.raft.role() == Role::Leader && hs.commit > self.reported_commit {
            crate::server::observer::report(crate::server::observer::Observation::LeaderCommit {
                node: self.id,
                term: hs.term,
                prev: self.reported_commit,
                index: hs.commit,
                entry_term: self.raft.term_at(hs.commit).unwrap_or(0),
            });
        }
        self.reported_commit = hs.commit;
    }

    /// Tells the observer this node's protocol state (for the state-aware nemesis).
    #[cfg(madsim)]
    pub(super) fn report_live(&mut self) {
        self.report_leader_commit();
        let hs = self.raft.hard_state();
        let last_index = self.raft.last_index();
        let live = crate::server::observer::Live {
            role: self.raft.role(),
            term: hs.term,
            vote: hs.vote,
            last_index,
            last_term: self.raft.term_at(last_index).unwrap_or(0),
            commit: hs.commit,
            snapshots: self.snapshots_seen,
            snapshot_index: self.raft.snapshot_meta().index,
        };
        if self.reported_live != Some(live) {
            self.reported_live = Some(live);
            crate::server::observer::report_live(self.id, live);
        }
    }

    /// Sends a Raft message; a granted vote is reported to the observer as it leaves (one
    /// vote per term per node, across restarts, is a checked invariant).
    pub(super) fn send_raft(&mut self, m: raft::Message) {
        #[cfg(madsim)]
        if let raft::Body::VoteResponse {
            granted: true,
            pre_vote: false,
        } = m.body
        {
            crate::server::observer::report(crate::server::observer::Observation::Vote {
                node: self.id,
                term: m.term,
                candidate: m.to,
            });
        }
        #[cfg(madsim)]
        if let raft::Body::VoteResponse {
            granted: false,
            pre_vote,
        } = m.body
        {
            crate::server::observer::report(crate::server::observer::Observation::Event {
                node: self.id,
                what: if pre_vote { "pre-vote-rejected" } else { "vote-rejected" },
            });
        }
        self.peers.send(m.to, &PeerMsg::Raft(m));
    }

    pub(super) fn wal_job(&mut self, job: Job) {
        // The stage only goes away after reporting a storage error, which stops this loop.
        let _ = self.wal.as_ref().expect("run started the WAL stage").send(job);
    }

    /// The WAL stage made the Readys up to `upto` durable: Raft learns it, held messages leave.
    pub(super) fn on_persisted(&mut self, upto: Option<u64>) {
        let Some(upto) = upto else { return };
        while self.unpersisted.front().is_some_and(|u| u.id <= upto) {
            let u = self.unpersisted.pop_front().expect("checked");
            if let Some((index, term)) = u.last {
                self.raft.on_persisted(index, term);
            }
            for m in u.held {
                self.send_raft(m);
            }
        }
    }

    pub(super) fn finish_syncs(&mut self) {
        let applied = self.raft.applied();
        let done: Vec<u64> = self
            .syncs_after_apply
            .iter()
            .filter(|(i, _)| *i != u64::MAX && *i <= applied)
            .map(|(_, r)| *r)
            .collect();
        self.syncs_after_apply.retain(|(i, _)| *i == u64::MAX || *i > applied);
        for r in done {
            if let Some(Waiting::Sync { conn, xid, path }) = self.waiting.remove(&r) {
                self.finish(conn, r, Slot::Synced { xid, path });
            }
        }
    }

    pub(super) fn maybe_compact(&mut self) {
        let applied = self.raft.applied();
        // After `snap_count` entries, or an eighth as many as the tree has nodes if more:
        // writing a snapshot then costs a bounded amount per entry however large the tree
        // grows (a fixed interval makes loading a big tree quadratic), and a restart replays
        // at most that many entries (1M znodes: 125,000, about a quarter of a second).
        let due = self.raft.snapshot_meta().index + self.cfg.snap_count.max(self.tree.node_count() as u64 / 8);
        let size_limit = self.cfg.snap_size_limit.max(self.snapshot_bytes / 4);
        if self.snapshotting || (applied < due && self.log_bytes < size_limit && !self.snapshot_soon) {
            return;
        }
        if let Ok(meta) = self.raft.snapshot_meta_at(applied) {
            self.snapshotting = true;
            self.snapshot_soon = false;
            self.log_bytes = 0;
            // A copy is a consistent view at `applied` (it shares the tree's chunks, copy on
            // write: taking it costs one pointer per 1,024 nodes); the WAL stage encodes and
            // writes it.
            self.wal_job(Job::Snapshot {
                meta,
                tree: Box::new(self.tree.clone()),
            });
        }
    }
}
