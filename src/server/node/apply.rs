//! Committed transactions applied (ZooKeeper's FinalRequestProcessor for writes): the tree,
//! watches and sessions, and the replies to this node's own requests.

use super::*;
use crate::tree::data_tree::CONFIG_NODE;

impl Node {
    /// The proposal this leader made for `e`, if it made it: the same index and term.
    fn own_proposal(&mut self, e: &raft::Entry) -> Option<Proposal> {
        while self.proposed.front().is_some_and(|(i, _, _)| *i < e.index) {
            self.proposed.pop_front();
        }
        match self.proposed.front() {
            Some((i, t, _)) if *i == e.index && *t == e.term && e.kind == EntryKind::Normal => {
                let p = self.proposed.pop_front().map(|(_, _, p)| p);
                debug_assert!(
                    p.as_ref().is_some_and(|p| p.encode() == e.data[..]),
                    "entry {} is not the proposal made for it",
                    e.index
                );
                p
            }
            _ => None,
        }
    }

    pub(super) fn apply(&mut self, e: &raft::Entry) {
        // A membership change carries the transaction that records it in /zookeeper/config.
        let context;
        let data = match e.kind {
            EntryKind::Normal => &e.data[..],
            EntryKind::ConfChange => match raft::ConfChange::decode(&e.data) {
                Some((_, c)) if !c.is_empty() => {
                    context = c;
                    &context
                }
                Some(_) => return,
                None => panic!(
                    "committed membership change {} does not decode: the log is corrupt",
                    e.index
                ),
            },
            EntryKind::Noop => return,
        };
        let p = match self.own_proposal(e) {
            Some(p) => p,
            None => match bincode::serde::decode_from_slice::<Proposal, _>(data, bincode::config::standard()) {
                Ok((p, _)) => p,
                Err(_) => panic!("committed entry {} does not decode: the log is corrupt", e.index),
            },
        };
        if p.entry.zxid <= self.tree.last_zxid() {
            return;
        }
        let (result, triggers) = self.tree.apply(&p.entry);
        let config_changed = match &p.entry.txn {
            Txn::SetData { path, .. } => path == CONFIG_NODE,
            Txn::Multi(ts) => ts
                .iter()
                .any(|t| matches!(t, Txn::SetData { path, .. } if path == CONFIG_NODE)),
            _ => false,
        };
        if config_changed && result.err() == ErrorCode::Ok {
            self.refresh_members();
        }
        #[cfg(madsim)]
        {
            // The tree's digest after every entry (kept by the tree as it changes; a tenth
            // of the simulator's time went into hashing a whole encoded tree every 16th entry
            // instead). Every 256th entry it is recomputed from the contents: a change that
            // forgot to update it would hide a divergence, which is a bug like any other.
            let tree = self.tree.digest();
            if e.index.is_multiple_of(256) {
                if let Err(why) = self.tree.check_digest() {
                    panic!("node {} at index {}: {why}", self.id, e.index);
                }
            }
            crate::server::observer::report(crate::server::observer::Observation::Applied {
                node: self.id,
                index: e.index,
                term: e.term,
                tree,
            });
            if let Some((change, _)) = (e.kind == EntryKind::ConfChange)
                .then(|| raft::ConfChange::decode(&e.data))
                .flatten()
            {
                crate::server::observer::report(crate::server::observer::Observation::ConfChange {
                    node: self.id,
                    index: e.index,
                    change,
                });
            }
            crate::server::observer::report(crate::server::observer::Observation::Committed {
                node: self.id,
                zxid: p.entry.zxid,
                session: p.entry.session_id,
                cxid: p.cxid,
                kind: match (&p.entry.txn, p.entry.session_id) {
                    _ if p.origin.node == 0 => crate::server::observer::Committed::Reconfig,
                    (Txn::CreateSession { .. }, _) => crate::server::observer::Committed::CreateSession,
                    (Txn::CloseSession { .. }, _) if p.cxid == 0 => crate::server::observer::Committed::Expire,
                    (Txn::Delete { path }, 0) => crate::server::observer::Committed::Reap(path.clone()),
                    (_, 0) => crate::server::observer::Committed::ReapFailed,
                    _ => crate::server::observer::Committed::Request,
                },
            });
        }
        self.pending.applied(p.entry.zxid);
        self.applied_zxid.store(self.tree.last_zxid(), Ordering::Release);
        self.stats.applied += 1;
        // Watches fire before a closing session's connection goes: ZooKeeper tells a session
        // of its own ephemerals' deletion before it answers closeSession.
        for t in &triggers {
            for (s, ev, path) in self.watches.fire(t) {
                // The watch is used up either way; a session that may not read the node
                // is not told (ZooKeeper 3.8 checks READ per watcher when it notifies).
                if self.may_read(s, &t.acl) {
                    self.notify(s, ev, &path);
                }
            }
        }
        let session = p.entry.session_id;
        match (&p.entry.txn, &result) {
            (Txn::CreateSession { timeout }, _) => {
                let now = self.mono();
                self.tracker.add(session, *timeout, now);
            }
            (Txn::CloseSession { .. }, _) => {
                self.tracker.remove(session);
                self.expiring.remove(&session);
                // A session closed elsewhere (expiry) ends its connection here too.
                if let Some(conn) = self.session_conn.remove(&session) {
                    self.watches.drop_session(session);
                    if !self.mine(&p.origin)
                        || !matches!(self.waiting.get(&p.origin.req_id), Some(Waiting::Write { .. }))
                    {
                        self.close_conn(conn);
                    }
                }
            }
            _ => {}
        }
        if !self.mine(&p.origin) {
            return;
        }
        let req_id = p.origin.req_id;
        match self.waiting.remove(&req_id) {
            Some(Waiting::Write {
                conn,
                xid,
                close_after,
                reconfig,
            }) => {
                let (err, resp) = match (&result, &p.entry.txn) {
                    // ZooKeeper answers a reconfig with the new configuration and its stat.
                    (TxnResult::DataSet(stat), Txn::SetData { data, .. }) if reconfig => (
                        ErrorCode::Ok,
                        Response::GetData(GetDataResponse {
                            data: data.clone(),
                            stat: stat.clone(),
                        }),
                    ),
                    _ => result.reply(),
                };
                let f = self.frame(xid, err, resp);
                self.finish(conn, req_id, Slot::Done(f));
                if close_after {
                    self.close_conn(conn);
                }
            }
            Some(Waiting::Connect {
                conn,
                session,
                reply,
                read_only,
            }) => {
                let timeout = match &p.entry.txn {
                    Txn::CreateSession { timeout } => *timeout,
                    _ => 0,
                };
                if matches!(result, TxnResult::SessionCreated) {
                    self.session_conn.insert(session, conn);
                    let _ = reply.send(Handshake::Ok(ConnectResponse {
                        protocol_version: 0,
                        time_out: timeout,
                        session_id: session,
                        passwd: password(session),
                        read_only: read_only.map(|_| false),
                    }));
                } else {
                    let _ = reply.send(Handshake::Expired);
                }
            }
            Some(other) => {
                self.waiting.insert(req_id, other);
            }
            None => {}
        }
    }
}
