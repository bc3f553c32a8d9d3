//! Requests answered from this node's tree and watch tables (ZooKeeper's FinalRequestProcessor
//! for reads), and the watch notifications this node sends.

use super::*;

impl Node {
    /// Runs a request answered from this node's tree and watch tables; returns its reply.
    pub(super) fn execute_local(&mut self, conn: u64, session: i64, xid: i32, req: Request) -> Vec<u8> {
        match req {
            Request::SetWatches(sw) => self.set_watches(xid, session, sw.into()),
            Request::SetWatches2(sw) => self.set_watches(xid, session, sw),
            Request::AddWatch(a) => match AddWatchMode::try_from(a.mode) {
                Ok(mode) => {
                    self.watches.add_persistent(&a.path, session, mode);
                    self.frame(xid, ErrorCode::Ok, Response::AddWatch(ErrorResponse { err: 0 }))
                }
                Err(_) => self.frame(xid, ErrorCode::BadArguments, Response::Empty),
            },
            Request::CheckWatches(r) => self.watch_query(xid, session, &r.path, r.r#type, false),
            Request::RemoveWatches(r) => self.watch_query(xid, session, &r.path, r.r#type, true),
            r => {
                let auth = self.conns.get(&conn).map(|c| c.auth.clone()).unwrap_or_default();
                let result = self.tree.read(session, &auth, &r);
                if result.is_ok() {
                    self.register_watch(session, &r);
                } else if let Request::Exists(e) = &r {
                    // An exists watch is left on a missing node, to fire on its creation.
                    if e.watch && result == Err(ErrorCode::NoNode) {
                        self.watches.watch_data(&e.path, session);
                    }
                }
                match result {
                    Ok(resp) => self.frame(xid, ErrorCode::Ok, resp),
                    Err(e) => self.frame(xid, e, Response::Empty),
                }
            }
        }
    }

    /// checkWatches (`remove` false) and removeWatches: NoWatcher if there is none. ZooKeeper
    /// 3.8 knows only the Children, Data and Any kinds here; any other type fails with
    /// MarshallingError and the connection stays open.
    pub(super) fn watch_query(&mut self, xid: i32, session: i64, path: &str, ty: i32, remove: bool) -> Vec<u8> {
        let err = match WatcherType::try_from(ty) {
            // ZooKeeper 3.8.0's containsWatcher computes the path's parent eagerly and throws on
            // a non-empty path without a '/' (measured: "x" fails, "a/b", "" and "/a/" do not).
            Ok(_) if !remove && !path.is_empty() && !path.contains('/') => ErrorCode::MarshallingError,
            Ok(t @ (WatcherType::Children | WatcherType::Data | WatcherType::Any)) => {
                let found = if remove {
                    self.watches.remove(path, t, session)
                } else {
                    self.watches.contains(path, t, session)
                };
                if found {
                    ErrorCode::Ok
                } else {
                    ErrorCode::NoWatcher
                }
            }
            _ => ErrorCode::MarshallingError,
        };
        self.frame(xid, err, Response::Empty)
    }

    pub(super) fn register_watch(&mut self, session: i64, r: &Request) {
        match r {
            Request::Exists(e) if e.watch => self.watches.watch_data(&e.path, session),
            Request::GetData(g) if g.watch => self.watches.watch_data(&g.path, session),
            Request::GetChildren(g) if g.watch => self.watches.watch_children(&g.path, session),
            Request::GetChildren2(g) if g.watch => self.watches.watch_children(&g.path, session),
            _ => {}
        }
    }

    pub(super) fn set_watches(&mut self, xid: i32, session: i64, sw: SetWatches2) -> Vec<u8> {
        let rel = sw.relative_zxid;
        #[cfg(madsim)]
        crate::server::observer::report(crate::server::observer::Observation::Event {
            node: self.id,
            what: "set-watches",
        });
        // Re-register, and fire at once for changes the client missed (ZooKeeper's setWatches).
        let mut events = vec![];
        // Broken on purpose under "set-watches-skips-missed": a change made while the client
        // was away re-arms the watch instead of firing it.
        let missed = |zxid: i64| zxid > rel && !bug("set-watches-skips-missed");
        for p in sw.data_watches {
            match self.tree.node(&p) {
                None => events.push((EventType::NodeDeleted, p)),
                Some(n) if missed(n.stat.mzxid) => events.push((EventType::NodeDataChanged, p)),
                Some(_) => self.watches.watch_data(&p, session),
            }
        }
        for p in sw.exist_watches {
            match self.tree.node(&p) {
                Some(_) => events.push((EventType::NodeCreated, p)),
                None => self.watches.watch_data(&p, session),
            }
        }
        for p in sw.child_watches {
            match self.tree.node(&p) {
                None => events.push((EventType::NodeDeleted, p)),
                Some(n) if missed(n.stat.pzxid) => events.push((EventType::NodeChildrenChanged, p)),
                Some(_) => self.watches.watch_children(&p, session),
            }
        }
        for p in sw.persistent_watches {
            self.watches.add_persistent(&p, session, AddWatchMode::Persistent);
        }
        for p in sw.persistent_recursive_watches {
            self.watches
                .add_persistent(&p, session, AddWatchMode::PersistentRecursive);
        }
        for (e, p) in events {
            self.notify(session, e, &p);
        }
        self.frame(xid, ErrorCode::Ok, Response::Empty)
    }

    /// Whether a session's connection here has READ on a node with this ACL.
    pub(super) fn may_read(&self, session: i64, acl: &[Acl]) -> bool {
        let Some(c) = self.session_conn.get(&session).and_then(|c| self.conns.get(c)) else {
            return false;
        };
        check_acl(acl, perms::READ, &c.auth).is_ok()
    }

    /// Sends a watch notification; its header zxid is -1, as ZooKeeper 3.8 sends it.
    pub(super) fn notify(&mut self, session: i64, event: EventType, path: &str) {
        if bug("lost-watch-events") {
            // Broken on purpose: watch notifications are never sent.
            return;
        }
        let Some(&conn) = self.session_conn.get(&session) else {
            return;
        };
        if let Some(c) = self.conns.get(&conn) {
            let ev = WatcherEvent {
                r#type: event.code(),
                state: KeeperState::SyncConnected.code(),
                path: path.to_string(),
            };
            let f = ReplyFrame {
                header: ReplyHeader {
                    xid: xid::NOTIFICATION,
                    zxid: -1,
                    err: 0,
                },
                response: Response::Notification(ev),
            };
            let _ = c.out.send(Out::Frame(f.to_frame()));
        }
    }
}
