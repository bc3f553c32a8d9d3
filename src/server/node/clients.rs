//! Client connections on the replica loop: handshakes, authentication, and each connection's
//! queue, which keeps a session's replies in request order (ZooKeeper's CommitProcessor rule).

use super::*;

impl Node {
    pub(super) fn on_connect(&mut self, c: Connecting) {
        if !self.serving() {
            // Removed from the ensemble, or rebuilding a damaged replica: the connection
            // closes unanswered (not as an expired session), so the client tries another.
            let _ = c.reply.send(Handshake::Refused);
            return;
        }
        if self.read_only {
            self.connect_read_only(c);
            return;
        }
        let Connecting {
            conn,
            req,
            timeout,
            ip,
            out,
            reply,
        } = c;
        let auth = ip_auth(&ip);
        if req.session_id == 0 {
            let session = self.ids.next_id();
            self.conns.insert(conn, Conn::new(session, out, auth, ip));
            let req_id = self.new_req();
            self.waiting.insert(
                req_id,
                Waiting::Connect {
                    conn,
                    session,
                    reply,
                    read_only: req.read_only,
                },
            );
            self.submit(req_id, session, WriteOp::CreateSession { timeout });
            return;
        }
        // Reattach: the session must exist in the replicated table and the password match.
        match self.tree.sessions().get(&req.session_id) {
            Some(&t) if req.passwd == password(req.session_id) => {
                self.detach_session(req.session_id);
                self.session_conn.insert(req.session_id, conn);
                self.conns.insert(conn, Conn::new(req.session_id, out, auth, ip));
                self.touch(req.session_id);
                let _ = reply.send(Handshake::Ok(ConnectResponse {
                    protocol_version: 0,
                    time_out: t,
                    session_id: req.session_id,
                    passwd: password(req.session_id),
                    read_only: req.read_only.map(|_| false),
                }));
            }
            _ => {
                let _ = reply.send(Handshake::Expired);
            }
        }
    }

    pub(super) fn new_req(&mut self) -> u64 {
        self.next_req += 1;
        self.next_req
    }

    /// Encodes a reply stamped with this node's last applied zxid (ZooKeeper's lastProcessedZxid).
    pub(super) fn frame(&self, xid: i32, err: ErrorCode, response: Response) -> Vec<u8> {
        let f = ReplyFrame {
            header: ReplyHeader {
                xid,
                zxid: self.tree.last_zxid(),
                err: err.code(),
            },
            response,
        };
        f.to_frame()
    }

    /// Hands a reply to the connection's writer.
    pub(super) fn send_reply(&mut self, conn: u64, frame: Vec<u8>) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let _ = c.out.send(Out::Reply(frame));
            c.sent += 1;
            self.stats.sent += 1;
        }
    }

    pub(super) fn on_request(&mut self, conn: u64, xid: i32, req: Request) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.received += 1;
        let session = c.session;
        self.touch(session);
        if let Request::Auth(a) = req {
            // ZooKeeper authenticates in the connection's I/O thread, ahead of the pipeline:
            // every later request of the connection carries the new identity.
            self.on_auth(conn, a);
            return;
        }
        let now = tokio::time::Instant::now();
        if self.read_only && path_of(&req) != Path::Local {
            self.answer_read_only(conn, session, xid, &req, now);
            return;
        }
        let c = self.conns.get_mut(&conn).expect("looked up above");
        match path_of(&req) {
            Path::Local if c.queue.is_empty() || bug("read-ahead") => {
                // Broken on purpose under "read-ahead": answered at once, ahead of the
                // session's pending writes (zraft before FIFO order was enforced).
                let f = self.execute_local(conn, session, xid, req);
                self.send_reply(conn, f);
                self.stats.latency(std::time::Duration::ZERO);
            }
            Path::Local => c.queue.push_back((now, Slot::Held { xid, req })),
            Path::Write if c.syncs > 0 => c.queue.push_back((now, Slot::Held { xid, req })),
            Path::Write | Path::Sync => {
                let slot = self.start(conn, session, xid, req);
                if let Some(c) = self.conns.get_mut(&conn) {
                    if matches!(slot, Slot::InFlight { sync: true, .. }) {
                        c.syncs += 1;
                    }
                    c.queue.push_back((now, slot));
                }
                // A reply known at once (only in broken variants) may be first in line.
                self.pump(conn);
            }
        }
    }

    pub(super) fn close_all_clients(&mut self) {
        let conns: Vec<u64> = self.conns.keys().copied().collect();
        for c in conns {
            self.close_conn(c);
        }
    }

    /// A session moves to a new connection: its old one here closes, and its watches go with
    /// it (the client re-registers the ones it still wants with setWatches; an old one left
    /// here would fire a second time).
    pub(super) fn detach_session(&mut self, session: i64) {
        if let Some(old) = self.session_conn.remove(&session) {
            if let Some(c) = self.conns.remove(&old) {
                let _ = c.out.send(Out::Close);
            }
        }
        self.watches.drop_session(session);
    }

    /// Digest authentication (sasl is not supported); a failure closes the connection.
    pub(super) fn on_auth(&mut self, conn: u64, a: AuthPacket) {
        let ok = a.scheme == "digest" && digest_auth(&a.auth, None).is_ok();
        if ok {
            let ids = digest_auth(&a.auth, self.cfg.super_digest.as_deref()).expect("checked");
            if let Some(c) = self.conns.get_mut(&conn) {
                c.auth.extend(ids);
            }
            self.send_reply(conn, auth_reply(ErrorCode::Ok));
        } else {
            let f = auth_reply(ErrorCode::AuthFailed);
            self.send_reply(conn, f);
            self.close_conn(conn);
        }
    }

    /// Starts a write or a sync: the slot that stands for it in its connection's queue.
    pub(super) fn start(&mut self, conn: u64, session: i64, xid: i32, req: Request) -> Slot {
        match req {
            Request::Sync(s) if bug("stale-sync") => {
                // Broken on purpose: answers sync at once, without catching up to the leader.
                Slot::Done(self.frame(xid, ErrorCode::Ok, Response::Sync(SyncResponse { path: s.path })))
            }
            Request::Sync(s) => {
                let req_id = self.new_req();
                self.waiting.insert(
                    req_id,
                    Waiting::Sync {
                        conn,
                        xid,
                        path: s.path,
                    },
                );
                if self.raft.read_index(self.read_ctx(req_id)).is_err() {
                    // No leader: the sync waits for one (retried on ticks).
                    self.syncs_after_apply.push((u64::MAX, req_id));
                }
                Slot::InFlight { req_id, sync: true }
            }
            Request::SetData(r) if bug("early-ack") => {
                // Broken on purpose: acknowledges a write before it is committed.
                let auth = self.auth_of(conn);
                let req_id = self.new_req();
                self.submit(
                    req_id,
                    session,
                    WriteOp::Request {
                        req: Request::SetData(r),
                        auth,
                        xid,
                    },
                );
                Slot::Done(self.frame(
                    xid,
                    ErrorCode::Ok,
                    Response::SetData(SetDataResponse { stat: Stat::default() }),
                ))
            }
            r => {
                let close_after = matches!(r, Request::CloseSession);
                let reconfig = matches!(r, Request::Reconfig(_));
                let auth = self.auth_of(conn);
                let req_id = self.new_req();
                self.waiting.insert(
                    req_id,
                    Waiting::Write {
                        conn,
                        xid,
                        close_after,
                        reconfig,
                    },
                );
                self.submit(req_id, session, WriteOp::Request { req: r, auth, xid });
                Slot::InFlight { req_id, sync: false }
            }
        }
    }

    /// A read-index context naming this incarnation's request.
    pub(super) fn read_ctx(&self, req_id: u64) -> Vec<u8> {
        [self.boot.to_be_bytes(), req_id.to_be_bytes()].concat()
    }

    pub(super) fn auth_of(&self, conn: u64) -> Vec<Id> {
        self.conns
            .get(&conn)
            .map(|c| c.auth.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A write or sync of `conn` got its reply: it leaves once everything ahead of it has.
    pub(super) fn finish(&mut self, conn: u64, req_id: u64, answered: Slot) {
        debug_assert!(matches!(answered, Slot::Done(_) | Slot::Synced { .. }));
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(i) = c
            .queue
            .iter()
            .position(|(_, s)| matches!(s, Slot::InFlight { req_id: r, .. } if *r == req_id))
        else {
            return;
        };
        let was_sync = matches!(c.queue[i].1, Slot::InFlight { sync: true, .. });
        c.queue[i].1 = answered;
        if was_sync {
            c.syncs -= 1;
            self.start_held_writes(conn);
        }
        self.pump(conn);
    }

    /// Starts the writes that waited behind a sync now answered, up to the next sync.
    pub(super) fn start_held_writes(&mut self, conn: u64) {
        let mut i = 0;
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            let session = c.session;
            match c.queue.get_mut(i).map(|(_, s)| s) {
                None | Some(Slot::InFlight { sync: true, .. }) => return,
                Some(slot) if matches!(&*slot, Slot::Held { req, .. } if path_of(req) != Path::Local) => {
                    let placeholder = Slot::InFlight { req_id: 0, sync: false };
                    let Slot::Held { xid, req } = std::mem::replace(slot, placeholder) else {
                        unreachable!("matched Held")
                    };
                    let started = self.start(conn, session, xid, req);
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.queue[i].1 = started;
                    }
                }
                Some(_) => {}
            }
            i += 1;
        }
    }

    /// Sends the answered replies at the front of a connection's queue, running each local
    /// request as it reaches the front (so it sees exactly the session's earlier writes).
    pub(super) fn pump(&mut self, conn: u64) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else { return };
            let session = c.session;
            let Some((at, slot)) = c.queue.front() else { return };
            let at = *at;
            match slot {
                Slot::Done(_) => {
                    let Some((_, Slot::Done(f))) = c.queue.pop_front() else {
                        unreachable!("front is Done")
                    };
                    self.send_reply(conn, f);
                }
                Slot::Synced { .. } => {
                    let Some((_, Slot::Synced { xid, path })) = c.queue.pop_front() else {
                        unreachable!("front is Synced")
                    };
                    let f = self.frame(xid, ErrorCode::Ok, Response::Sync(SyncResponse { path }));
                    self.send_reply(conn, f);
                }
                Slot::Held { req, .. } if path_of(req) == Path::Local => {
                    let Some((_, Slot::Held { xid, req })) = c.queue.pop_front() else {
                        unreachable!("front is Held")
                    };
                    let f = self.execute_local(conn, session, xid, req);
                    self.send_reply(conn, f);
                }
                _ => return,
            }
            self.stats.latency(at.elapsed());
        }
    }

    pub(super) fn close_conn(&mut self, conn: u64) {
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.out.send(Out::Close);
        }
    }
}

/// A connection's identity before any auth packet: its client's address (ZooKeeper's ip
/// scheme).
pub(super) fn ip_auth(ip: &str) -> AuthIds {
    [Id {
        scheme: "ip".into(),
        id: ip.to_string(),
    }]
    .into_iter()
    .collect()
}

/// The answer to an auth packet: ZooKeeper's connection thread writes it with zxid 0, not the
/// last processed zxid (it is answered outside the request pipeline).
pub(super) fn auth_reply(err: ErrorCode) -> Vec<u8> {
    let f = ReplyFrame {
        header: ReplyHeader {
            xid: xid::AUTH,
            zxid: 0,
            err: err.code(),
        },
        response: Response::Empty,
    };
    f.to_frame()
}
