//! Every opcode, the way real clients issue them: pipelined batches of random requests on a
//! small shared subtree under `/t` — creates of every mode (persistent, ephemeral,
//! sequential, container, TTL) by create and create2, deletes (of whole subtrees by multi),
//! setData/setACL with and without versions, every read, multi with failing ops, multiRead,
//! sync, watches of every kind (the same one twice, persistent and recursive ones, removed
//! and checked), and now and then a session closed or abandoned with requests in flight.
//! Nothing here is judged on the spot: the client's wire records go to the model checker,
//! which knows what every reply must be.

use super::Conn;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use zraft::jute::*;

/// The subtree the workload shares (created by the setup).
pub const ROOT: &str = "/t";

/// A random path of the shared subtree: few names, so that clients collide.
fn path(rng: &mut ChaCha8Rng) -> String {
    let a = ["a", "b", "c"].choose(rng).expect("names");
    match rng.gen_range(0..10) {
        0 => ROOT.to_string(),
        1..=5 => format!("{ROOT}/{a}"),
        _ => format!("{ROOT}/{a}/{}", ["x", "y"].choose(rng).expect("names")),
    }
}

/// An ACL: mostly open; sometimes without CREATE and DELETE, or without WRITE and ADMIN
/// (always with READ: the model checker judges world:anyone only, and a watcher without READ
/// would not be told).
fn acl(rng: &mut ChaCha8Rng) -> Vec<Acl> {
    let perms = match rng.gen_range(0..10) {
        0 => perms::READ | perms::WRITE | perms::ADMIN,
        1 => perms::READ | perms::CREATE | perms::DELETE,
        _ => perms::ALL,
    };
    vec![Acl {
        perms,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

fn version(rng: &mut ChaCha8Rng) -> i32 {
    if rng.gen_bool(0.6) {
        -1
    } else {
        rng.gen_range(0..3)
    }
}

fn data(rng: &mut ChaCha8Rng) -> Option<Vec<u8>> {
    match rng.gen_range(0..8) {
        0 => None,
        n => Some(format!("{}", rng.gen::<u32>() % (1 << (4 * n))).into_bytes()),
    }
}

/// A create of any mode, by any create opcode.
fn create(rng: &mut ChaCha8Rng) -> Request {
    let p = path(rng);
    let p = if p == ROOT { format!("{ROOT}/a") } else { p };
    let r = |flags: CreateMode, rng: &mut ChaCha8Rng| CreateRequest {
        path: p.clone(),
        data: data(rng),
        acl: acl(rng),
        flags: flags.code(),
    };
    match rng.gen_range(0..12) {
        0..=2 => Request::Create(r(CreateMode::Persistent, rng)),
        3 => Request::Create2(r(CreateMode::Persistent, rng)),
        4 => Request::Create(r(CreateMode::Ephemeral, rng)),
        5 => Request::Create2(r(CreateMode::EphemeralSequential, rng)),
        6 => Request::Create(r(CreateMode::PersistentSequential, rng)),
        7 => Request::CreateContainer(r(CreateMode::Container, rng)),
        8 | 9 => {
            let flags = if rng.gen_bool(0.7) {
                CreateMode::PersistentWithTtl
            } else {
                CreateMode::PersistentSequentialWithTtl
            };
            Request::CreateTtl(CreateTtlRequest {
                path: p.clone(),
                data: data(rng),
                acl: acl(rng),
                flags: flags.code(),
                // Now and then an invalid TTL (BadArguments).
                ttl: if rng.gen_bool(0.1) { 0 } else { rng.gen_range(1..3000) },
            })
        }
        _ => Request::Create2(r(CreateMode::PersistentSequential, rng)),
    }
}

/// A multi's write op.
fn multi_op(rng: &mut ChaCha8Rng) -> MultiOp {
    match rng.gen_range(0..5) {
        0 => match create(rng) {
            Request::Create(r) => MultiOp::Create(OpCode::Create, r),
            Request::Create2(r) => MultiOp::Create(OpCode::Create2, r),
            Request::CreateContainer(r) => MultiOp::Create(OpCode::CreateContainer, r),
            Request::CreateTtl(r) => MultiOp::CreateTtl(r),
            _ => unreachable!("create gives creates"),
        },
        1 => MultiOp::Delete(DeleteRequest {
            path: match path(rng) {
                p if p == ROOT => format!("{ROOT}/c"),
                p => p,
            },
            version: version(rng),
        }),
        2 => MultiOp::SetData(SetDataRequest {
            path: path(rng),
            data: data(rng),
            version: version(rng),
        }),
        _ => MultiOp::Check(CheckVersionRequest {
            path: path(rng),
            version: version(rng),
        }),
    }
}

/// One random request.
fn request(rng: &mut ChaCha8Rng) -> Request {
    let p = path(rng);
    // The shared root stays, with its ACL: deletes and setACL aim below it.
    let below = if p == ROOT { format!("{ROOT}/b") } else { p.clone() };
    match rng.gen_range(0..26) {
        0..=3 => create(rng),
        4 | 5 => Request::Delete(DeleteRequest {
            path: below,
            version: version(rng),
        }),
        6 | 7 => Request::SetData(SetDataRequest {
            path: p,
            data: data(rng),
            version: version(rng),
        }),
        8 => Request::SetAcl(SetAclRequest {
            path: below,
            acl: acl(rng),
            version: version(rng),
        }),
        9 => Request::Exists(ExistsRequest {
            path: p,
            watch: rng.gen_bool(0.5),
        }),
        10 => Request::GetData(GetDataRequest {
            path: p,
            watch: rng.gen_bool(0.5),
        }),
        11 => Request::GetChildren(GetChildrenRequest {
            path: p,
            watch: rng.gen_bool(0.5),
        }),
        12 => Request::GetChildren2(GetChildren2Request {
            path: p,
            watch: rng.gen_bool(0.5),
        }),
        13 => Request::GetAllChildrenNumber(GetAllChildrenNumberRequest { path: p }),
        14 => Request::GetEphemerals(GetEphemeralsRequest {
            prefix_path: Some(ROOT.into()),
        }),
        15 => Request::GetAcl(GetAclRequest { path: p }),
        16 | 17 => Request::Multi(MultiRequest {
            ops: (0..rng.gen_range(1..=4)).map(|_| multi_op(rng)).collect(),
        }),
        18 => {
            // A subtree delete as one multi, deepest first (fails if the tree differs).
            let a = format!("{ROOT}/{}", ["a", "b", "c"].choose(rng).expect("names"));
            let mut ops: Vec<MultiOp> = ["x", "y"]
                .iter()
                .filter(|_| rng.gen_bool(0.6))
                .map(|c| {
                    MultiOp::Delete(DeleteRequest {
                        path: format!("{a}/{c}"),
                        version: -1,
                    })
                })
                .collect();
            ops.push(MultiOp::Delete(DeleteRequest { path: a, version: -1 }));
            Request::Multi(MultiRequest { ops })
        }
        19 => Request::MultiRead(MultiRequest {
            ops: (0..rng.gen_range(1..=3))
                .map(|_| {
                    let path = path(rng);
                    if rng.gen_bool(0.5) {
                        MultiOp::GetData(GetDataRequest { path, watch: false })
                    } else {
                        MultiOp::GetChildren(GetChildrenRequest { path, watch: false })
                    }
                })
                .collect(),
        }),
        20 => Request::Sync(SyncRequest { path: ROOT.into() }),
        21 | 22 => Request::AddWatch(AddWatchRequest {
            path: p,
            mode: rng.gen_range(0..2),
        }),
        23 => Request::RemoveWatches(RemoveWatchesRequest {
            path: p,
            r#type: rng.gen_range(1..=3),
        }),
        24 => Request::CheckWatches(CheckWatchesRequest {
            path: p,
            r#type: rng.gen_range(1..=3),
        }),
        _ => Request::SetData(SetDataRequest {
            path: format!("{ROOT}/a"),
            data: data(rng),
            version: -1,
        }),
    }
}

/// Sends one pipelined batch of up to `depth` random requests and collects the replies; the
/// watches they leave are noted on the connection (for setWatches after a reconnect). Now
/// and then the session ends with requests in flight: closed (closeSession sent behind
/// them, and an ephemeral create behind that, which must fail), or abandoned (the client
/// vanishes without waiting; the session expires later).
pub async fn step(depth: u32, conn: &mut Conn, rng: &mut ChaCha8Rng) {
    let n = rng.gen_range(1..=depth.max(1));
    let mut requests: Vec<Request> = (0..n).map(|_| request(rng)).collect();
    let end = rng.gen_range(0..100);
    if end == 0 {
        requests.push(Request::CloseSession);
        requests.push(Request::Create(CreateRequest {
            path: format!("{ROOT}/a"),
            data: None,
            acl: acl(rng),
            flags: CreateMode::Ephemeral.code(),
        }));
    }
    if end == 1 {
        conn.send_and_vanish(requests);
        return;
    }
    let replies = conn.pipeline(requests.clone()).await;
    for (q, (r, _)) in requests.iter().zip(&replies) {
        conn.note_watch(q, r);
    }
    if end == 0 {
        conn.vanish();
    }
}
