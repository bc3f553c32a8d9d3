//! The lock recipe, as Curator's InterProcessMutex builds it: create an ephemeral-sequential
//! node under /lock, hold the lock when it is the lowest, otherwise watch the next lower node
//! and look again when it goes. A holder reads /lockdata, then writes it only with
//! multi [check(its lock node), setData(/lockdata, version read)] — a fenced write — and
//! releases by deleting its node. Any unknown outcome abandons the session (the lock may be
//! gone): its node then goes when the session expires.

use super::{Conn, Recorder};
use crate::history::{Outcome, RegOp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;
use zraft::client::ClientError;
use zraft::jute::*;

/// The lock's parent node (the setup creates it).
pub const LOCK: &str = "/lock";
/// The register only holders write.
pub const DATA: &str = "/lockdata";

/// How long a waiter waits for its predecessor's deletion event before looking again.
const RECHECK: Duration = Duration::from_secs(2);

/// What a fenced write ended with.
fn fenced_outcome(r: Result<Response, ClientError>, value: u64) -> Outcome {
    match r {
        Ok(Response::Multi(results)) => match results.as_slice() {
            [OpResult::Check, OpResult::SetData(stat)] => Outcome::Ok(Some((value, stat.version))),
            // The first failing op carries the reason; the others say RuntimeInconsistency.
            [OpResult::Error(e), _] if *e != ErrorCode::Ok && *e != ErrorCode::RuntimeInconsistency => {
                Outcome::Error(e.code())
            }
            [_, OpResult::Error(e)] => Outcome::Error(e.code()),
            _ => Outcome::Fail,
        },
        Ok(_) => Outcome::Fail,
        Err(ClientError::Server(e)) => Outcome::Error(e.code()),
        Err(_) => Outcome::Info,
    }
}

/// Waits until `mine` is the lowest node under /lock: Ok(true) when held, Ok(false) when our
/// node is gone (the session expired), Err when the connection failed or time ran out.
async fn acquire(conn: &mut Conn, rec: &Recorder, mine: &str, secs: u64) -> Result<bool, ()> {
    let name = mine.rsplit('/').next().unwrap_or(mine);
    loop {
        if rec.done(secs) {
            return Err(());
        }
        let req = GetChildrenRequest {
            path: LOCK.into(),
            watch: false,
        };
        let mut children = match conn.call(Request::GetChildren(req)).await.0 {
            Ok(Response::GetChildren(g)) => g.children,
            _ => return Err(()),
        };
        // Sequence suffixes are zero-padded: string order is creation order.
        children.sort();
        let Some(pos) = children.iter().position(|c| c == name) else {
            return Ok(false);
        };
        if pos == 0 {
            return Ok(true);
        }
        let pred = format!("{LOCK}/{}", children[pos - 1]);
        let req = ExistsRequest {
            path: pred.clone(),
            watch: true,
        };
        match conn.call(Request::Exists(req)).await.0 {
            Ok(_) => {
                let waited = madsim::time::Instant::now();
                'wait: while waited.elapsed() < RECHECK {
                    madsim::time::sleep(Duration::from_millis(50)).await;
                    conn.events();
                    if conn.take_fired().contains(&pred) {
                        break 'wait;
                    }
                }
            }
            Err(ClientError::Server(ErrorCode::NoNode)) => {}
            Err(_) => return Err(()),
        }
    }
}

/// A lock client: acquire, do one to three fenced writes, release; again until time is up.
pub async fn client(id: u32, nodes: u64, seed: u64, secs: u64, rec: Recorder) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1000) + id as u64);
    let mut conn = Conn::new(rec.clone(), nodes);
    let mut counter = 0u64;
    while !rec.done(secs) {
        if conn.get(&mut rng).await.is_none() {
            continue;
        }
        let session = conn.session();
        let invoke = rec.now();
        let req = CreateRequest {
            path: format!("{LOCK}/l-"),
            data: None,
            acl: zraft::tree::acl::open_acl(),
            flags: CreateMode::EphemeralSequential.code(),
        };
        let (r, zxid) = conn.call(Request::Create(req)).await;
        let mine = match r {
            Ok(Response::Create(cr)) => cr.path,
            Ok(_) | Err(ClientError::Server(_)) => {
                rec.push(session, LOCK, RegOp::SeqCreate, invoke, Outcome::Fail, zxid);
                madsim::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => {
                rec.push(session, LOCK, RegOp::SeqCreate, invoke, Outcome::Info, 0);
                conn.vanish();
                continue;
            }
        };
        rec.push(
            session,
            LOCK,
            RegOp::SeqCreate,
            invoke,
            Outcome::Created(mine.clone()),
            zxid,
        );
        match acquire(&mut conn, &rec, &mine, secs).await {
            Ok(true) => {}
            Ok(false) | Err(()) => {
                conn.vanish();
                continue;
            }
        }
        rec.push(
            session,
            LOCK,
            RegOp::LockAcquire,
            invoke,
            Outcome::Created(mine.clone()),
            0,
        );
        let mut holding = true;
        for _ in 0..rng.gen_range(1..=3) {
            let version = match conn
                .call(Request::GetData(GetDataRequest {
                    path: DATA.into(),
                    watch: false,
                }))
                .await
            {
                (Ok(Response::GetData(g)), _) => g.stat.version,
                _ => {
                    holding = false;
                    break;
                }
            };
            counter += 1;
            let value = ((id as u64) << 32) | counter;
            let invoke = rec.now();
            let req = MultiRequest {
                ops: vec![
                    MultiOp::Check(CheckVersionRequest {
                        path: mine.clone(),
                        version: -1,
                    }),
                    MultiOp::SetData(SetDataRequest {
                        path: DATA.into(),
                        data: Some(value.to_string().into_bytes()),
                        version,
                    }),
                ],
            };
            let (r, zxid) = conn.call(Request::Multi(req)).await;
            let outcome = fenced_outcome(r, value);
            let ok = matches!(outcome, Outcome::Ok(_));
            let op = RegOp::LockWrite {
                lock: mine.clone(),
                value,
            };
            rec.push(session, DATA, op, invoke, outcome, zxid);
            if !ok {
                holding = false;
                break;
            }
        }
        if !holding {
            conn.vanish();
            continue;
        }
        let req = DeleteRequest {
            path: mine.clone(),
            version: -1,
        };
        if conn.call(Request::Delete(req)).await.0.is_err() {
            conn.vanish();
        }
    }
    // Leave without closing: whatever node is left must go when the session expires.
    conn.vanish();
}
