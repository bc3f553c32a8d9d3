//! Property tests of the znode tree under random operation sequences: structural invariants
//! after every apply, agreement with a simple model, pipelined prepare equal to one-at-a-time,
//! snapshot round trip and byte-identical snapshots for identical histories.

use proptest::prelude::*;
use std::collections::BTreeMap;
use zraft::jute::*;
use zraft::tree::{snapshot, AuthIds, DataTree, Pending, PrepareCtx, TreeConfig, Txn, TxnEntry, TxnResult};

const PATHS: &[&str] = &["/a", "/a/b", "/a/c", "/a/b/d", "/e", "/e/f", "/a/s-", "/e/s-"];

#[derive(Debug, Clone)]
enum Op {
    Create { path: usize, flags: i32, data: Vec<u8> },
    Delete { path: usize, version: i32 },
    SetData { path: usize, version: i32, data: Vec<u8> },
    SetAcl { path: usize, version: i32 },
    Multi(Vec<(usize, u8)>),
    Open,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    let path = 0..PATHS.len();
    let version = prop_oneof![Just(-1), 0..3i32];
    prop_oneof![
        4 => (path.clone(), prop_oneof![Just(0), Just(1), Just(2), Just(3), Just(4)], prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(path, flags, data)| Op::Create { path, flags, data }),
        2 => (path.clone(), version.clone()).prop_map(|(path, version)| Op::Delete { path, version }),
        2 => (path.clone(), version.clone(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(path, version, data)| Op::SetData { path, version, data }),
        1 => (path.clone(), version).prop_map(|(path, version)| Op::SetAcl { path, version }),
        1 => prop::collection::vec((path, 0..4u8), 1..4).prop_map(Op::Multi),
        1 => Just(Op::Open),
        1 => Just(Op::Close),
    ]
}

/// The request an op becomes for session `sid`.
fn request(op: &Op) -> Request {
    match op {
        Op::Create { path, flags, data } => Request::Create2(CreateRequest {
            path: PATHS[*path].into(),
            data: Some(data.clone()),
            acl: zraft::tree::acl::open_acl(),
            flags: *flags,
        }),
        Op::Delete { path, version } => Request::Delete(DeleteRequest {
            path: PATHS[*path].into(),
            version: *version,
        }),
        Op::SetData { path, version, data } => Request::SetData(SetDataRequest {
            path: PATHS[*path].into(),
            data: Some(data.clone()),
            version: *version,
        }),
        Op::SetAcl { path, version } => Request::SetAcl(SetAclRequest {
            path: PATHS[*path].into(),
            acl: zraft::tree::acl::open_acl(),
            version: *version,
        }),
        Op::Multi(ops) => Request::Multi(MultiRequest {
            ops: ops
                .iter()
                .map(|(p, k)| {
                    let path = PATHS[*p].to_string();
                    match k {
                        0 => MultiOp::Create(
                            OpCode::Create,
                            CreateRequest {
                                path,
                                data: None,
                                acl: zraft::tree::acl::open_acl(),
                                flags: 0,
                            },
                        ),
                        1 => MultiOp::Delete(DeleteRequest { path, version: -1 }),
                        2 => MultiOp::SetData(SetDataRequest {
                            path,
                            data: Some(vec![1]),
                            version: -1,
                        }),
                        _ => MultiOp::Check(CheckVersionRequest { path, version: 0 }),
                    }
                })
                .collect(),
        }),
        Op::Open | Op::Close => Request::CloseSession,
    }
}

/// Minimal model: path -> (version, ephemeral owner); enough to predict create/delete/setData.
#[derive(Default)]
struct Model {
    nodes: BTreeMap<String, (i32, i64)>,
}

impl Model {
    fn parent(p: &str) -> &str {
        let i = p.rfind('/').unwrap();
        if i == 0 {
            "/"
        } else {
            &p[..i]
        }
    }
    fn exists(&self, p: &str) -> bool {
        p == "/" || self.nodes.contains_key(p)
    }
    fn has_children(&self, p: &str) -> bool {
        self.nodes.keys().any(|k| Self::parent(k) == p)
    }
    fn resync(&mut self, tree: &DataTree) {
        self.nodes.clear();
        let mut stack = vec!["/".to_string()];
        while let Some(p) = stack.pop() {
            for c in tree.node(&p).unwrap().children() {
                let cp = if p == "/" { format!("/{c}") } else { format!("{p}/{c}") };
                if !cp.starts_with("/zookeeper") {
                    let cn = tree.node(&cp).unwrap();
                    self.nodes
                        .insert(cp.clone(), (cn.stat.version, cn.stat().ephemeral_owner));
                    stack.push(cp);
                }
            }
        }
    }
}

struct Run {
    tree: DataTree,
    pending: Pending,
    auth: AuthIds,
    sessions: Vec<i64>,
    next_sid: i64,
    entries: Vec<TxnEntry>,
}

impl Run {
    fn new() -> Self {
        Run {
            tree: DataTree::new(),
            pending: Pending::new(),
            auth: AuthIds::new(),
            sessions: vec![],
            next_sid: 1,
            entries: vec![],
        }
    }

    /// Prepares (without applying) the txn for `op`.
    fn prepare(&mut self, op: &Op, zxid: i64) -> TxnEntry {
        let sid = self.sessions.last().copied().unwrap_or(0);
        match op {
            Op::Open => {
                let sid = self.next_sid;
                self.next_sid += 1;
                self.sessions.push(sid);
                let ctx = PrepareCtx {
                    session_id: sid,
                    auth: &self.auth,
                    zxid,
                    time: zxid * 10,
                    config: TreeConfig::default(),
                };
                self.tree.prepare_create_session(&mut self.pending, &ctx, 30000)
            }
            Op::Close => {
                let sid = if self.sessions.is_empty() {
                    999
                } else {
                    self.sessions.remove(0)
                };
                let ctx = PrepareCtx {
                    session_id: sid,
                    auth: &self.auth,
                    zxid,
                    time: zxid * 10,
                    config: TreeConfig::default(),
                };
                self.tree.prepare(&mut self.pending, &ctx, &Request::CloseSession)
            }
            other => {
                let ctx = PrepareCtx {
                    session_id: sid,
                    auth: &self.auth,
                    zxid,
                    time: zxid * 10,
                    config: TreeConfig::default(),
                };
                self.tree.prepare(&mut self.pending, &ctx, &request(other))
            }
        }
    }

    fn apply(&mut self, e: TxnEntry) -> TxnResult {
        let (r, _) = self.tree.apply(&e);
        self.pending.applied(e.zxid);
        self.entries.push(e);
        r
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn invariants_model_and_snapshots(ops in prop::collection::vec(op(), 1..80)) {
        let mut run = Run::new();
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let zxid = i as i64 + 1;
            let sid = run.sessions.last().copied().unwrap_or(0);
            let e = run.prepare(op, zxid);
            let r = run.apply(e);
            run.tree.check_invariants().map_err(TestCaseError::fail)?;
            run.tree.check_digest().map_err(TestCaseError::fail)?;
            prop_assert!(run.pending.is_empty());
            // Model predictions for the single-node ops.
            match op {
                Op::Create { path, flags, .. } if *flags != 2 && *flags != 3 => {
                    let p = PATHS[*path];
                    let parent = Model::parent(p);
                    let parent_eph = model.nodes.get(parent).is_some_and(|(_, o)| *o != 0);
                    // As in ZooKeeper, the session check comes before everything else.
                    let expect = if *flags == 1 && sid == 0 { ErrorCode::SessionExpired }
                        else if !model.exists(parent) { ErrorCode::NoNode }
                        else if model.exists(p) { ErrorCode::NodeExists }
                        else if parent_eph { ErrorCode::NoChildrenForEphemerals }
                        else { ErrorCode::Ok };
                    prop_assert_eq!(r.err(), expect, "create {} flags {}", p, flags);
                    if expect == ErrorCode::Ok {
                        model.nodes.insert(p.to_string(), (0, if *flags == 1 { sid } else { 0 }));
                    }
                }
                Op::Delete { path, version } => {
                    let p = PATHS[*path];
                    let expect = match model.nodes.get(p) {
                        None => ErrorCode::NoNode,
                        Some((v, _)) if *version != -1 && v != version => ErrorCode::BadVersion,
                        Some(_) if model.has_children(p) => ErrorCode::NotEmpty,
                        Some(_) => ErrorCode::Ok,
                    };
                    prop_assert_eq!(r.err(), expect, "delete {}", p);
                    if expect == ErrorCode::Ok { model.nodes.remove(p); }
                }
                Op::SetData { path, version, .. } => {
                    let p = PATHS[*path];
                    let expect = match model.nodes.get(p) {
                        None => ErrorCode::NoNode,
                        Some((v, _)) if *version != -1 && v != version => ErrorCode::BadVersion,
                        Some(_) => ErrorCode::Ok,
                    };
                    prop_assert_eq!(r.err(), expect, "setData {}", p);
                    if expect == ErrorCode::Ok { model.nodes.get_mut(p).unwrap().0 += 1; }
                }
                // Ops the model does not predict (sequentials, multi, sessions, ACLs): resync it.
                _ => model.resync(&run.tree),
            }
        }
        // Snapshot round trip, and replaying the same entries gives byte-identical snapshots.
        let snap = snapshot::encode(&run.tree);
        let decoded = snapshot::decode(&snap).unwrap();
        prop_assert_eq!(&decoded, &run.tree);
        // The digest a loaded tree computes is the one the applied tree kept.
        prop_assert_eq!(decoded.digest(), run.tree.digest());
        decoded.check_digest().map_err(TestCaseError::fail)?;
        let mut replay = DataTree::new();
        for e in &run.entries {
            replay.apply(e);
        }
        prop_assert_eq!(snapshot::encode(&replay), snap);
        prop_assert_eq!(replay.digest(), run.tree.digest());
    }

    #[test]
    fn pipelined_prepare_equals_sequential(ops in prop::collection::vec(op(), 1..40), depth in 1usize..8) {
        // One at a time.
        let mut seq = Run::new();
        let mut seq_results = vec![];
        for (i, op) in ops.iter().enumerate() {
            let e = seq.prepare(op, i as i64 + 1);
            seq_results.push(seq.apply(e));
        }
        // Prepare up to `depth` ahead of apply, as a leader pipelines proposals.
        let mut pipe = Run::new();
        let mut queue = std::collections::VecDeque::new();
        let mut pipe_results = vec![];
        for (i, op) in ops.iter().enumerate() {
            queue.push_back(pipe.prepare(op, i as i64 + 1));
            if queue.len() >= depth {
                let e = queue.pop_front().unwrap();
                pipe_results.push(pipe.apply(e));
            }
        }
        while let Some(e) = queue.pop_front() {
            pipe_results.push(pipe.apply(e));
        }
        prop_assert_eq!(&pipe_results, &seq_results);
        prop_assert_eq!(snapshot::encode(&pipe.tree), snapshot::encode(&seq.tree));
    }
}

#[test]
fn corrupted_snapshots_are_typed_errors() {
    let mut run = Run::new();
    for (i, op) in [
        Op::Open,
        Op::Create {
            path: 0,
            flags: 0,
            data: b"x".to_vec(),
        },
        Op::Create {
            path: 1,
            flags: 1,
            data: vec![],
        },
    ]
    .iter()
    .enumerate()
    {
        let e = run.prepare(op, i as i64 + 1);
        run.apply(e);
    }
    let good = snapshot::encode(&run.tree);
    assert_eq!(snapshot::decode(&good).unwrap(), run.tree);
    // Every single-bit flip anywhere is detected.
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[i] ^= 1 << bit;
            assert!(
                snapshot::decode(&bad).is_err(),
                "flip at byte {i} bit {bit} went unnoticed"
            );
        }
    }
    assert_eq!(
        snapshot::decode(&good[..good.len() - 1]),
        Err(snapshot::SnapshotError::Truncated(good.len() - 1))
    );
    let mut v3 = good.clone();
    v3[7] = 3;
    assert_eq!(
        snapshot::decode(&v3),
        Err(snapshot::SnapshotError::UnsupportedVersion(3))
    );
    assert_eq!(snapshot::decode(b"nope"), Err(snapshot::SnapshotError::Truncated(4)));
}

#[test]
fn containers_and_ttl_nodes_are_reaped_as_zookeeper_does() {
    let mut tree = DataTree::new();
    let mut pending = Pending::new();
    let auth = AuthIds::new();
    let mut zxid = 0;
    let mut run = |tree: &mut DataTree, req: Request, time: i64| {
        zxid += 1;
        let ctx = PrepareCtx {
            session_id: 0,
            auth: &auth,
            zxid,
            time,
            config: TreeConfig::default(),
        };
        let e = tree.prepare(&mut pending, &ctx, &req);
        let (r, _) = tree.apply(&e);
        pending.applied(e.zxid);
        r
    };
    let create = |path: &str, op: OpCode, ttl: i64| {
        let c = CreateRequest {
            path: path.into(),
            data: None,
            acl: zraft::tree::acl::open_acl(),
            flags: if ttl > 0 { 5 } else { 0 },
        };
        match op {
            OpCode::CreateContainer => Request::CreateContainer(c),
            OpCode::CreateTtl => Request::CreateTtl(CreateTtlRequest {
                path: c.path,
                data: None,
                acl: c.acl,
                flags: 5,
                ttl,
            }),
            _ => Request::Create(c),
        }
    };
    run(&mut tree, create("/c", OpCode::CreateContainer, 0), 1000);
    run(&mut tree, create("/never-used", OpCode::CreateContainer, 0), 1000);
    run(&mut tree, create("/t", OpCode::CreateTtl, 500), 1000);
    run(&mut tree, create("/c/x", OpCode::Create, 0), 1000);
    assert_eq!(
        tree.reap_candidates(1200),
        Vec::<String>::new(),
        "container has a child, TTL not elapsed"
    );
    run(
        &mut tree,
        Request::Delete(DeleteRequest {
            path: "/c/x".into(),
            version: -1,
        }),
        1300,
    );
    assert_eq!(
        tree.reap_candidates(1400),
        vec!["/c".to_string()],
        "emptied container; a never-used one stays"
    );
    assert_eq!(tree.reap_candidates(1501), vec!["/c".to_string(), "/t".to_string()]);
    let r = run(&mut tree, Request::DeleteContainer("/c".into()), 1600);
    assert_eq!(r.err(), ErrorCode::Ok);
    assert!(tree.node("/c").is_none());
}

/// createTTL's flags and ttl, as ZooKeeper 3.8.0 answers them (measured with difftest), except
/// a non-TTL mode with a negative ttl: ZooKeeper accepts it and then cannot apply it (its
/// server stops, and stops again when it replays its log); zraft answers BadArguments.
#[test]
fn create_ttl_flags_and_ttl() {
    let auth = AuthIds::new();
    let rows: [(i32, i64, ErrorCode); 10] = [
        (5, 3_600_000, ErrorCode::Ok),
        (6, 1, ErrorCode::Ok),
        (5, 0, ErrorCode::BadArguments),
        (5, -5, ErrorCode::BadArguments),
        (5, 1 << 40, ErrorCode::BadArguments),
        (0, 0, ErrorCode::BadArguments),
        (0, 3_600_000, ErrorCode::BadArguments),
        (0, -5, ErrorCode::BadArguments),
        (1, -5, ErrorCode::BadArguments),
        (4, -5, ErrorCode::BadArguments),
    ];
    for (i, (flags, ttl, want)) in rows.into_iter().enumerate() {
        let mut tree = DataTree::new();
        let mut pending = Pending::new();
        let ctx = PrepareCtx {
            session_id: 0,
            auth: &auth,
            zxid: 1,
            time: 1000,
            config: TreeConfig::default(),
        };
        let req = Request::CreateTtl(CreateTtlRequest {
            path: "/t".into(),
            data: None,
            acl: zraft::tree::acl::open_acl(),
            flags,
            ttl,
        });
        let e = tree.prepare(&mut pending, &ctx, &req);
        let (r, _) = tree.apply(&e);
        assert_eq!(r.err(), want, "row {i}: flags {flags} ttl {ttl}");
    }
}

/// A reap is chosen from the applied tree and prepared behind writes not applied yet: it must
/// not delete what those writes made of the node. (ZooKeeper 3.8 refuses only a session's
/// ephemeral, so a container deleted and re-created as a persistent node in that window is
/// deleted; found by the model checker, five-nodes seed 40015.) A client's own
/// deleteContainer keeps ZooKeeper's rule.
#[test]
fn a_reap_sees_the_writes_prepared_before_it() {
    let auth = AuthIds::new();
    let ctx = |session_id: i64, zxid: i64, time: i64| PrepareCtx {
        session_id,
        auth: &auth,
        zxid,
        time,
        config: TreeConfig::default(),
    };
    let create = |path: &str, flags: i32| CreateRequest {
        path: path.into(),
        data: None,
        acl: zraft::tree::acl::open_acl(),
        flags,
    };
    let mut tree = DataTree::new();
    let mut pending = Pending::new();
    let e = tree.prepare_create_session(&mut pending, &ctx(7, 1, 1000), 30_000);
    tree.apply(&e);
    pending.applied(e.zxid);
    let applied: Vec<Request> = vec![
        Request::CreateContainer(create("/c", 4)),
        Request::Create(create("/c/x", 0)),
        Request::Delete(DeleteRequest {
            path: "/c/x".into(),
            version: -1,
        }),
        Request::CreateTtl(CreateTtlRequest {
            path: "/t".into(),
            data: None,
            acl: zraft::tree::acl::open_acl(),
            flags: 5,
            ttl: 500,
        }),
    ];
    for (i, req) in applied.iter().enumerate() {
        let e = tree.prepare(&mut pending, &ctx(7, i as i64 + 2, 1000), req);
        assert_eq!(tree.apply(&e).0.err(), ErrorCode::Ok, "{req:?}");
        pending.applied(e.zxid);
    }
    assert_eq!(tree.reap_candidates(2000), vec!["/c".to_string(), "/t".to_string()]);
    // Prepared, not applied: /c deleted and re-created persistent, /t written to.
    let queued: Vec<Request> = vec![
        Request::DeleteContainer("/c".into()),
        Request::Create(create("/c", 0)),
        Request::SetData(SetDataRequest {
            path: "/t".into(),
            data: Some(vec![1]),
            version: -1,
        }),
    ];
    for (i, req) in queued.iter().enumerate() {
        let e = tree.prepare(&mut pending, &ctx(7, 10 + i as i64, 2000), req);
        assert!(!matches!(e.txn, Txn::Error(_)), "{req:?}: {e:?}");
    }
    for (zxid, path) in [(20, "/c"), (21, "/t")] {
        let e = tree.prepare(
            &mut pending,
            &ctx(0, zxid, 2000),
            &Request::DeleteContainer(path.into()),
        );
        assert_eq!(e.txn, Txn::Error(ErrorCode::BadVersion), "reap of {path}");
    }
    // A client's deleteContainer of a persistent node succeeds, as on ZooKeeper.
    let e = tree.prepare(&mut pending, &ctx(7, 22, 2000), &Request::DeleteContainer("/c".into()));
    assert_eq!(e.txn, Txn::Delete { path: "/c".into() });
}

/// Pending changes are forgotten exactly when applied: a node changed again after a change
/// that is applied stays pending until its last change is.
#[test]
fn pending_changes_are_forgotten_as_they_are_applied() {
    let auth = AuthIds::new();
    let ctx = |zxid: i64| PrepareCtx {
        session_id: 0,
        auth: &auth,
        zxid,
        time: 1000,
        config: TreeConfig::default(),
    };
    let set = |v: i32| {
        Request::SetData(SetDataRequest {
            path: "/a".into(),
            data: Some(vec![1]),
            version: v,
        })
    };
    let mut tree = DataTree::new();
    let mut pending = Pending::new();
    let create = Request::Create(CreateRequest {
        path: "/a".into(),
        data: None,
        acl: zraft::tree::acl::open_acl(),
        flags: 0,
    });
    let entries: Vec<TxnEntry> = [create, set(0), set(1)]
        .iter()
        .enumerate()
        .map(|(i, r)| tree.prepare(&mut pending, &ctx(i as i64 + 1), r))
        .collect();
    assert!(entries.iter().all(|e| !matches!(e.txn, Txn::Error(_))), "{entries:?}");
    for (i, e) in entries.iter().enumerate() {
        tree.apply(e);
        pending.applied(e.zxid);
        // /a's last pending change is the third: until it is applied, version 1 is pending.
        assert_eq!(pending.is_empty(), i == 2, "after applying zxid {}", e.zxid);
        if i < 2 {
            let again = tree.prepare(&mut pending.clone(), &ctx(10), &set(2));
            assert!(
                !matches!(again.txn, Txn::Error(_)),
                "version 2 expected pending: {again:?}"
            );
        }
    }
}
