//! Client-order guarantees on a real server (real tokio, real disk), driven at the wire level by
//! the project's client: a pipelining session gets its replies in request order and every read
//! sees the session's earlier writes; the same watch registered twice fires once; closeSession
//! is answered before the connection closes. (The same with kazoo on 3 nodes:
//! tests/integration/real_clients.py.)

mod common;

use common::{connect, free_port};
use std::time::Duration;
use zraft::client::PendingReply;
use zraft::jute::*;
use zraft::server::config::Config;
use zraft::storage::RealDisk;

const T: Duration = Duration::from_secs(20);

/// Runs `f` against a fresh single-node server.
fn with_server<F, Fut>(name: &str, f: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = std::env::temp_dir().join(format!("zraft-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_port();
    let cfg = Config {
        data_dir: dir.to_string_lossy().to_string(),
        client_port: port,
        client_port_address: "127.0.0.1".into(),
        raft_tick_ms: 20,
        prealloc_bytes: 1 << 20,
        ..Config::default()
    };
    let rt = common::runtime();
    rt.block_on(async move {
        let server = tokio::spawn(zraft::server::run(cfg, Box::new(RealDisk::new()), 1));
        f(format!("127.0.0.1:{port}")).await;
        server.abort();
    });
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

fn set(path: &str, data: &[u8]) -> Request {
    Request::SetData(SetDataRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        version: -1,
    })
}

fn get(path: &str, watch: bool) -> Request {
    Request::GetData(GetDataRequest {
        path: path.into(),
        watch,
    })
}

fn children(path: &str, watch: bool) -> Request {
    Request::GetChildren(GetChildrenRequest {
        path: path.into(),
        watch,
    })
}

fn create(path: &str, mode: CreateMode) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Some(vec![]),
        acl: zraft::tree::acl::open_acl(),
        flags: mode.code(),
    })
}

/// What each pipelined round must show.
enum Expect {
    /// setData number i: version i.
    Set(i32),
    /// getData right after setData number i: its data and version.
    Get(i32),
    /// getChildren right after the i-th sequential create: i children.
    Children(usize),
    Created,
}

#[test]
fn pipelined_requests_are_answered_in_order_and_see_earlier_writes() {
    with_server("pipe", |addr| async move {
        let mut c = connect(&addr).await;
        c.create("/p", b"0", CreateMode::Persistent).await.unwrap();
        c.create("/q", b"", CreateMode::Persistent).await.unwrap();
        const ROUNDS: i32 = 2000;
        let mut sent: Vec<(PendingReply, Expect)> = vec![];
        for i in 1..=ROUNDS {
            sent.push((c.send(set("/p", i.to_string().as_bytes())).unwrap(), Expect::Set(i)));
            sent.push((c.send(get("/p", false)).unwrap(), Expect::Get(i)));
            if i % 4 == 0 {
                let n = (i / 4) as usize;
                sent.push((
                    c.send(create("/q/c-", CreateMode::PersistentSequential)).unwrap(),
                    Expect::Created,
                ));
                sent.push((c.send(children("/q", false)).unwrap(), Expect::Children(n)));
            }
        }
        let total = sent.len();
        let mut last_zxid = 0;
        for (p, want) in sent {
            let (f, _) = p.wait(T).await.expect("every pipelined request is answered");
            assert_eq!(f.header.err, 0);
            assert!(f.header.zxid >= last_zxid, "zxids go back within a session");
            last_zxid = f.header.zxid;
            match (want, f.response) {
                (Expect::Set(i), Response::SetData(r)) => assert_eq!(r.stat.version, i),
                (Expect::Get(i), Response::GetData(r)) => {
                    assert_eq!(
                        r.data.as_deref(),
                        Some(i.to_string().as_bytes()),
                        "read missed its own write"
                    );
                    assert_eq!(r.stat.version, i);
                }
                (Expect::Children(n), Response::GetChildren(r)) => assert_eq!(r.children.len(), n),
                (Expect::Created, Response::Create(_)) => {}
                (_, other) => panic!("reply of the wrong kind: {other:?}"),
            }
        }
        assert_eq!(c.fifo_violations(), 0, "replies out of request order");
        eprintln!("{total} pipelined requests answered in order");
        c.close().await.unwrap();
    });
}

/// The load generator's session (one task owns the socket): many requests written in one
/// go come back in order, each decoded against its own request, and the session closes
/// cleanly; a reply to another xid than the oldest outstanding is refused.
#[test]
fn a_direct_session_pipelines_in_order() {
    with_server("direct", |addr| async move {
        // Once the server serves (`connect` waits for that).
        connect(&addr).await.close().await.unwrap();
        let mut c = zraft::client::DirectSession::connect(&addr, 10_000).await.unwrap();
        assert_ne!(c.session_id(), 0);
        c.send(create("/d", CreateMode::Persistent));
        for i in 1..=500 {
            c.send(set("/d", i.to_string().as_bytes()));
            c.send(get("/d", false));
        }
        assert_eq!(c.outstanding(), 1001);
        c.flush().await.unwrap();
        let f = c.recv(T).await.unwrap();
        assert!(matches!(f.response, Response::Create(_)), "{f:?}");
        let mut last_zxid = f.header.zxid;
        for i in 1..=500 {
            let f = c.recv(T).await.unwrap();
            assert!(f.header.zxid > last_zxid, "each setData commits after the one before");
            last_zxid = f.header.zxid;
            match f.response {
                Response::SetData(r) => assert_eq!(r.stat.version, i),
                other => panic!("setData {i} answered with {other:?}"),
            }
            match c.recv(T).await.unwrap().response {
                Response::GetData(r) => assert_eq!(r.data.as_deref(), Some(i.to_string().as_bytes())),
                other => panic!("getData {i} answered with {other:?}"),
            }
        }
        assert_eq!(c.outstanding(), 0);
        c.close(T).await.unwrap();
    });
}

#[test]
fn a_watch_registered_twice_fires_once() {
    with_server("watch2", |addr| async move {
        let mut c = connect(&addr).await;
        let mut w = connect(&addr).await;
        c.create("/w", b"", CreateMode::Persistent).await.unwrap();
        // Two child watches and two data watches (one by exists) on the same path, pipelined.
        let mut replies = vec![];
        for r in [
            children("/w", true),
            children("/w", true),
            get("/w", true),
            Request::Exists(ExistsRequest {
                path: "/w".into(),
                watch: true,
            }),
        ] {
            replies.push(w.send(r).unwrap());
        }
        for p in replies {
            assert_eq!(p.wait(T).await.unwrap().0.header.err, 0);
        }
        c.create("/w/x", b"", CreateMode::Persistent).await.unwrap();
        c.ok(set("/w", b"1"), T).await.unwrap();
        // A round trip on the watching connection: every notification for the two writes
        // above was sent before this reply.
        w.ok(Request::Sync(SyncRequest { path: "/".into() }), T).await.unwrap();
        w.get("/w").await.unwrap();
        let mut events = vec![];
        while let Ok(e) = w.events.try_recv() {
            events.push((EventType::try_from(e.r#type).unwrap(), e.path));
        }
        assert_eq!(
            events,
            vec![
                (EventType::NodeChildrenChanged, "/w".to_string()),
                (EventType::NodeDataChanged, "/w".to_string())
            ],
            "one event per (path, kind), however often it was registered"
        );
    });
}

#[test]
fn a_read_sent_after_a_delete_does_not_see_the_node() {
    // Sent together, exists(watch) after delete: the exists runs after the delete, so it finds
    // no node and leaves a watch for the node's creation, and no NodeDeleted reaches the session.
    with_server("delexists", |addr| async move {
        let mut c = connect(&addr).await;
        c.create("/d", b"", CreateMode::Persistent).await.unwrap();
        let del = c
            .send(Request::Delete(DeleteRequest {
                path: "/d".into(),
                version: -1,
            }))
            .unwrap();
        let ex = c
            .send(Request::Exists(ExistsRequest {
                path: "/d".into(),
                watch: true,
            }))
            .unwrap();
        assert_eq!(del.wait(T).await.unwrap().0.header.err, 0);
        assert_eq!(ex.wait(T).await.unwrap().0.header.err, ErrorCode::NoNode.code());
        c.create("/d", b"", CreateMode::Persistent).await.unwrap();
        let e = tokio::time::timeout(T, c.events.recv()).await.unwrap().unwrap();
        assert_eq!(
            (EventType::try_from(e.r#type).unwrap(), e.path.as_str()),
            (EventType::NodeCreated, "/d")
        );
        assert!(c.events.try_recv().is_err(), "no other event");
    });
}

#[test]
fn close_session_is_answered_before_the_connection_closes() {
    with_server("close", |addr| async move {
        for _ in 0..20 {
            let mut c = connect(&addr).await;
            c.create("/e-", b"", CreateMode::EphemeralSequential).await.unwrap();
            let r = c
                .call(Request::CloseSession, T)
                .await
                .expect("closeSession gets its reply");
            assert_eq!(r.header.err, 0);
        }
    });
}
