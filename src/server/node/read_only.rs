//! Read-only mode (`readonlymode.enabled`): a member without a leader serves read-only
//! sessions from its own tree and answers writes NotReadOnly.

use super::*;

impl Node {
    /// Enters read-only mode after a leaderless spell as long as ZooKeeper waits before it
    /// starts its read-only server (max(2 s, tickTime)); expires idle read-only sessions.
    pub(super) fn check_read_only(&mut self) {
        // A replica being rebuilt has nothing to serve, not even read-only.
        if !self.cfg.read_only_enabled || self.cfg.peers.len() < 2 || self.raft.is_recovering() {
            return;
        }
        let now = self.mono();
        if self.leader.is_none() && !self.read_only {
            let since = *self.leaderless_since.get_or_insert(now);
            if now - since >= self.cfg.tick_time_ms.max(2000) as i64 {
                self.enter_read_only();
            }
        }
        let expired: Vec<i64> = self
            .ro_sessions
            .iter()
            .filter(|(_, &(timeout, last))| now - last > timeout as i64)
            .map(|(&s, _)| s)
            .collect();
        for s in expired {
            self.ro_sessions.remove(&s);
            if let Some(conn) = self.session_conn.remove(&s) {
                self.watches.drop_session(s);
                self.close_conn(conn);
            }
        }
    }

    /// ZooKeeper swaps its server for a read-only one: every client connection is closed and
    /// clients that accept read-only sessions come back.
    pub(super) fn enter_read_only(&mut self) {
        tracing::warn!(node = self.id, "no leader: read-only mode (readonlymode.enabled)");
        self.read_only = true;
        // Handshakes waiting for a createSession that cannot commit: the client reconnects,
        // and gets a read-only session if it can take one.
        let connecting: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, w)| matches!(w, Waiting::Connect { .. }))
            .map(|(k, _)| *k)
            .collect();
        for k in connecting {
            if let Some(Waiting::Connect { conn, reply, .. }) = self.waiting.remove(&k) {
                let _ = reply.send(Handshake::Refused);
                self.conns.remove(&conn);
            }
        }
        self.close_all_clients();
    }

    /// A leader is back: read-only sessions end (the ensemble never knew them) and every
    /// connection is closed, so clients reconnect to a read-write server.
    pub(super) fn leave_read_only(&mut self) {
        tracing::info!(node = self.id, "leader known: leaving read-only mode");
        self.read_only = false;
        self.ro_sessions.clear();
        self.close_all_clients();
    }

    /// A connect in read-only mode: only clients that can take a read-only session get one; a
    /// known session reattaches, a new one is this server's alone.
    pub(super) fn connect_read_only(&mut self, c: Connecting) {
        let req = &c.req;
        if req.read_only != Some(true) {
            let _ = c.reply.send(Handshake::Refused);
            return;
        }
        let session = if req.session_id == 0 {
            let s = self.ids.next_id();
            self.ro_sessions.insert(s, (c.timeout, self.mono()));
            s
        } else {
            let known =
                self.ro_sessions.contains_key(&req.session_id) || self.tree.sessions().contains_key(&req.session_id);
            if !known || req.passwd != password(req.session_id) {
                let _ = c.reply.send(Handshake::Expired);
                return;
            }
            self.detach_session(req.session_id);
            req.session_id
        };
        let time_out = self
            .tree
            .sessions()
            .get(&session)
            .copied()
            .or_else(|| self.ro_sessions.get(&session).map(|s| s.0))
            .unwrap_or(c.timeout);
        let auth = ip_auth(&c.ip);
        self.conns.insert(c.conn, Conn::new(session, c.out, auth, c.ip));
        self.session_conn.insert(session, c.conn);
        let _ = c.reply.send(Handshake::Ok(ConnectResponse {
            protocol_version: 0,
            time_out,
            session_id: session,
            passwd: password(session),
            read_only: Some(true),
        }));
    }

    /// A write, sync or closeSession in read-only mode: NotReadOnly, in the session's order,
    /// as ZooKeeper's ReadOnlyRequestProcessor answers; closing a read-only session closes it.
    pub(super) fn answer_read_only(
        &mut self,
        conn: u64,
        session: i64,
        xid: i32,
        req: &Request,
        now: tokio::time::Instant,
    ) {
        let local_close = matches!(req, Request::CloseSession) && self.ro_sessions.contains_key(&session);
        let f = if local_close {
            self.ro_sessions.remove(&session);
            self.frame(xid, ErrorCode::Ok, Response::Empty)
        } else {
            self.frame(xid, ErrorCode::NotReadOnly, Response::Empty)
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queue.push_back((now, Slot::Done(f)));
        }
        self.pump(conn);
        if local_close {
            self.session_conn.remove(&session);
            self.watches.drop_session(session);
            self.close_conn(conn);
        }
    }
}
