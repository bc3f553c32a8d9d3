//! The server in-process on real tokio and a real disk, driven by the project's own client:
//! session, create, get, a watch, a multi error shape, and a restart that keeps the data.

mod common;

use common::{connect, free_port};
use std::time::Duration;
use zraft::jute::*;
use zraft::server::config::Config;
use zraft::storage::RealDisk;

fn config(dir: &str, port: u16) -> Config {
    Config {
        data_dir: dir.into(),
        client_port: port,
        client_port_address: "127.0.0.1".into(),
        raft_tick_ms: 20,
        // Small preallocated segments: a test's writes roll several, on a real disk.
        prealloc_bytes: 1 << 20,
        ..Config::default()
    }
}

#[test]
fn single_node_serves_and_recovers() {
    let dir = std::env::temp_dir().join(format!("zraft-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_string_lossy().to_string();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    for round in 0..2 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (cfg, dir2, addr2) = (config(&dir, port), dir.clone(), addr.clone());
        rt.block_on(async move {
            let server = tokio::spawn(zraft::server::run(cfg, Box::new(RealDisk::new()), 1));
            let mut c = connect(&addr2).await;
            if round == 0 {
                assert_eq!(c.create("/a", b"hello", CreateMode::Persistent).await.unwrap(), "/a");
                let (data, stat) = c.get("/a").await.unwrap();
                assert_eq!(data.as_deref(), Some(&b"hello"[..]));
                assert_eq!(stat.version, 0);
                // A data watch fires on change, before the reply of the write that fired it.
                let r = c
                    .call(
                        Request::GetData(GetDataRequest {
                            path: "/a".into(),
                            watch: true,
                        }),
                        Duration::from_secs(5),
                    )
                    .await
                    .unwrap();
                assert_eq!(r.header.err, 0);
                let set = SetDataRequest {
                    path: "/a".into(),
                    data: Some(b"x".to_vec()),
                    version: 0,
                };
                c.ok(Request::SetData(set), Duration::from_secs(5)).await.unwrap();
                let ev = tokio::time::timeout(Duration::from_secs(5), c.events.recv())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!((ev.r#type, ev.path.as_str()), (EventType::NodeDataChanged.code(), "/a"));
                // A failed multi reports per-op results with header err 0, as ZooKeeper 3.8.
                let ops = vec![
                    MultiOp::Check(CheckVersionRequest {
                        path: "/a".into(),
                        version: 7,
                    }),
                    MultiOp::Delete(DeleteRequest {
                        path: "/a".into(),
                        version: -1,
                    }),
                ];
                let r = c
                    .call(Request::Multi(MultiRequest { ops }), Duration::from_secs(5))
                    .await
                    .unwrap();
                assert_eq!(r.header.err, 0);
                assert_eq!(
                    r.response,
                    Response::Multi(vec![
                        OpResult::Error(ErrorCode::BadVersion),
                        OpResult::Error(ErrorCode::RuntimeInconsistency)
                    ])
                );
            } else {
                // After a restart from the same data directory the write is still there.
                let (data, stat) = c.get("/a").await.unwrap();
                assert_eq!(data.as_deref(), Some(&b"x"[..]));
                assert_eq!(stat.version, 1);
            }
            c.close().await.unwrap();
            server.abort();
            let _ = dir2;
        });
        drop(rt);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn snapshots_compact_the_log_and_survive_restart() {
    // snapCount 50: 600 pipelined writes take several snapshots (written by the WAL stage from
    // a copy of the tree); after a restart every write is back and the server keeps serving.
    let dir = std::env::temp_dir().join(format!("zraft-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_string_lossy().to_string();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    for round in 0..2 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cfg = Config {
            snap_count: 50,
            ..config(&dir, port)
        };
        let addr2 = addr.clone();
        rt.block_on(async move {
            let server = tokio::spawn(zraft::server::run(cfg, Box::new(RealDisk::new()), 1));
            let mut c = connect(&addr2).await;
            if round == 0 {
                let mut pending = vec![];
                for i in 0..600 {
                    let req = Request::Create(CreateRequest {
                        path: format!("/s{i:04}"),
                        data: Some(i.to_string().into_bytes()),
                        acl: zraft::tree::acl::open_acl(),
                        flags: CreateMode::Persistent.code(),
                    });
                    pending.push(c.send(req).unwrap());
                }
                for p in pending {
                    assert_eq!(p.wait(Duration::from_secs(20)).await.unwrap().0.header.err, 0);
                }
            }
            for i in (0..600).step_by(37) {
                let (data, _) = c.get(&format!("/s{i:04}")).await.expect("written before the restart");
                assert_eq!(data.as_deref(), Some(i.to_string().as_bytes()));
            }
            assert_eq!(
                c.create("/after", b"", CreateMode::Persistent).await.is_ok(),
                round == 0
            );
            server.abort();
        });
        drop(rt);
    }
    let log_dir = config(&dir, port).log_dir();
    let snaps: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("snap-") && n.ends_with(".snap"))
        .collect();
    // Snapshots were taken past index 50 (older ones are deleted by a background task, which
    // the abort above may have cut short: leftovers are ignored by recovery).
    let newest = snaps.iter().max().expect("a snapshot was written");
    assert!(*newest > format!("snap-{:020}.snap", 50), "{snaps:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes that fill several preallocated segments survive a restart, which goes on writing
/// into the zeros of the last one; every segment but a first grown before a spare was ready is
/// its preallocated length, and a spare waits for the next roll.
#[test]
fn preallocated_segments_roll_and_recover() {
    let dir = std::env::temp_dir().join(format!("zraft-prealloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_string_lossy().to_string();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let value = vec![b'v'; 2000];
    let log_dir = config(&dir, port).log_dir();
    let listing = || {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(&log_dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().to_string(), e.metadata().unwrap().len())
            })
            .collect();
        files.sort();
        files
    };
    for round in 0..3u32 {
        let rt = common::runtime();
        let (cfg, addr2, value) = (config(&dir, port), addr.clone(), value.clone());
        rt.block_on(async move {
            let server = tokio::spawn(zraft::server::run(cfg, Box::new(RealDisk::new()), 1));
            let mut c = connect(&addr2).await;
            // 1,500 writes of 2 KB a round: about 3 MB of log, three segments of 1 MiB.
            let mut pending = vec![];
            for i in 0..1500 {
                pending.push(
                    c.send(Request::Create(CreateRequest {
                        path: format!("/r{round}-{i:04}"),
                        data: Some(value.clone()),
                        acl: zraft::tree::acl::open_acl(),
                        flags: CreateMode::Persistent.code(),
                    }))
                    .unwrap(),
                );
                if pending.len() == 64 {
                    for p in pending.drain(..) {
                        assert_eq!(p.wait(Duration::from_secs(20)).await.unwrap().0.header.err, 0);
                    }
                }
            }
            for p in pending {
                assert_eq!(p.wait(Duration::from_secs(20)).await.unwrap().0.header.err, 0);
            }
            for r in 0..=round {
                for i in (0..1500).step_by(97) {
                    let (data, _) = c.get(&format!("/r{r}-{i:04}")).await.expect("written");
                    assert_eq!(data.as_deref(), Some(&value[..]), "round {r} node {i}");
                }
            }
            server.abort();
        });
        drop(rt);
        let files = listing();
        let segments: Vec<&(String, u64)> = files.iter().filter(|(n, _)| n.ends_with(".log")).collect();
        assert!(segments.len() >= 3, "round {round}: {files:?}");
        // Only the very first segment grew as written (no spare was ready yet); compaction
        // may have deleted it already.
        let first = "wal-00000000000000000001.log";
        assert!(
            segments
                .iter()
                .filter(|(n, _)| n != first)
                .all(|(_, len)| *len >= 1 << 20),
            "round {round}: every later segment is preallocated: {files:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads one Prometheus figure from the server's metrics endpoint.
async fn scrape(addr: &str, name: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in the scrape:\n{body}"))
}

#[test]
fn a_write_costs_one_fsync() {
    // One client writing one request at a time: each write's entry needs an fsync; the commit
    // index it moves afterwards does not (it rides along with the next write's batch), so
    // the batches made durable stay close to the number of writes, not twice it.
    let dir = std::env::temp_dir().join(format!("zraft-fsyncs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_string_lossy().to_string();
    let (port, metrics) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let cfg = Config {
        metrics_addr: Some(metrics.clone()),
        ..config(&dir, port)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let server = tokio::spawn(zraft::server::run(cfg, Box::new(RealDisk::new()), 1));
        let mut c = connect(&format!("127.0.0.1:{port}")).await;
        c.create("/w", b"", CreateMode::Persistent).await.unwrap();
        let before = scrape(&metrics, "raft_persisted_batches_total").await;
        const WRITES: u32 = 200;
        for i in 0..WRITES {
            let set = SetDataRequest {
                path: "/w".into(),
                data: Some(i.to_string().into_bytes()),
                version: -1,
            };
            c.ok(Request::SetData(set), Duration::from_secs(5)).await.unwrap();
        }
        let batches = scrape(&metrics, "raft_persisted_batches_total").await - before;
        assert!(
            batches >= f64::from(WRITES) && batches <= f64::from(WRITES) + 10.0,
            "{batches} fsync batches for {WRITES} sequential writes"
        );
        server.abort();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A connection that sends nothing for a whole session timeout is closed by the server; one
/// whose client pings (every third of the timeout, as every client does) stays open, however
/// long, and its requests keep being answered.
#[test]
fn a_silent_connection_is_closed_after_its_session_timeout_a_pinging_one_is_not() {
    use tokio::io::AsyncReadExt;
    let dir = std::env::temp_dir().join(format!("zraft-idle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let dir = dir.to_string_lossy().to_string();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = Config {
        min_session_timeout_ms: 400,
        max_session_timeout_ms: 400,
        ..config(&dir, port)
    };
    common::runtime().block_on(async move {
        let server = tokio::spawn(zraft::server::run(cfg, Box::new(RealDisk::new()), 1));
        let mut pinging = connect(&addr).await;
        assert_eq!(pinging.timeout_ms(), 400);
        let mut silent = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        common::handshake(&mut silent, 400).await.unwrap();
        let t0 = std::time::Instant::now();
        let mut b = [0u8; 1];
        let end = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut b))
            .await
            .expect("the server closes a silent connection");
        let after = t0.elapsed();
        assert!(matches!(end, Ok(0) | Err(_)), "closed: {end:?}");
        assert!(
            after >= Duration::from_millis(390) && after < Duration::from_secs(5),
            "closed after {after:?}, the session timeout is 400 ms"
        );
        // The pinging client outlived the silent one by far and is still served.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(
            pinging.create("/alive", b"", CreateMode::Persistent).await.unwrap(),
            "/alive"
        );
        server.abort();
    });
    let _ = std::fs::remove_dir_all(&dir);
}
