//! The model checker's speed on generated register histories of known verdict: clients set
//! and get a few keys (or one hot key), 1% of the writes lose their reply (half of those
//! committed). The default run checks 20,000 operations and a corrupted copy (which must be
//! rejected) and 100,000 on one hot key; `ZRAFT_MODEL_BENCH=1 cargo test -p zraft-sim --release
//! --test model_speed -- --nocapture` times 100,000 and 1,000,000 operations on 1, 10 and
//! 1,000 keys, and the WGL cross-check on 10,000 and 100,000 register operations.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use zraft::jute::*;
use zraft::server::observer::Committed;
use zraft_sim::checker::model::{check, Commit, Kind};
use zraft_sim::history::{Wire, WireRec};

const CLIENTS: u32 = 50;
/// Share of register writes whose reply is lost in the WGL histories (half of them committed),
/// as in the model checker's. An unanswered write may take effect anywhere after its call, or
/// never: before the search tried such ops last and bounded versions by what unplaced reads
/// saw, 0.1% of them on one hot key exhausted a 50M-configuration budget at 100,000 ops (and
/// 1% at 10,000).
const LOST: f64 = 0.01;

/// A history of `n` operations on `keys` keys, correct by construction, and its commits.
fn history(n: usize, keys: usize, seed: u64) -> (Vec<WireRec>, Vec<Commit>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut wire = vec![];
    let mut commits = vec![];
    let mut t = 0u64;
    let mut zxid = 0i64;
    let mut push = |wire: &mut Vec<WireRec>, client: u32, w: Wire| {
        t += 1000;
        wire.push(WireRec {
            client,
            conn: 1,
            at: t,
            wire: w,
        });
    };
    // Sessions, then a setup session (client CLIENTS) creating the keys.
    for c in 0..=CLIENTS {
        zxid += 1;
        let session = 0x100 + c as i64;
        commits.push(Commit {
            zxid,
            session,
            cxid: 0,
            kind: Committed::CreateSession,
        });
        push(&mut wire, c, Wire::Connected { server: 1, session });
    }
    // key -> (czxid, version, mzxid, data)
    let mut state: BTreeMap<usize, (i64, i32, i64, Vec<u8>)> = BTreeMap::new();
    let setup = CLIENTS;
    for k in 0..keys {
        zxid += 1;
        let xid = k as i32 + 1;
        let path = format!("/k{k}");
        let request = Request::Create(CreateRequest {
            path: path.clone(),
            data: Some(b"0".to_vec()),
            acl: zraft::tree::acl::open_acl(),
            flags: 0,
        });
        push(&mut wire, setup, Wire::Sent { xid, request });
        commits.push(Commit {
            zxid,
            session: 0x100 + setup as i64,
            cxid: xid,
            kind: Committed::Request,
        });
        push(
            &mut wire,
            setup,
            Wire::Replied {
                xid,
                err: 0,
                zxid,
                response: Response::Create(CreateResponse { path }),
            },
        );
        state.insert(k, (zxid, 0, zxid, b"0".to_vec()));
    }
    let stat = |s: &(i64, i32, i64, Vec<u8>)| Stat {
        czxid: s.0,
        mzxid: s.2,
        version: s.1,
        data_length: s.3.len() as i32,
        pzxid: s.0,
        ..Stat::default()
    };
    let mut next_xid = vec![1i32; CLIENTS as usize];
    for i in 0..n {
        let c = rng.gen_range(0..CLIENTS);
        let xid = next_xid[c as usize];
        next_xid[c as usize] += 1;
        let k = rng.gen_range(0..keys);
        let path = format!("/k{k}");
        if rng.gen_bool(0.5) {
            let data = i.to_string().into_bytes();
            let request = Request::SetData(SetDataRequest {
                path,
                data: Some(data.clone()),
                version: -1,
            });
            push(&mut wire, c, Wire::Sent { xid, request });
            let lost = rng.gen_bool(0.01);
            if lost && rng.gen_bool(0.5) {
                continue; // never reached the leader
            }
            zxid += 1;
            commits.push(Commit {
                zxid,
                session: 0x100 + c as i64,
                cxid: xid,
                kind: Committed::Request,
            });
            let s = state.get_mut(&k).expect("key");
            s.1 += 1;
            s.2 = zxid;
            s.3 = data;
            if !lost {
                let response = Response::SetData(SetDataResponse { stat: stat(s) });
                push(
                    &mut wire,
                    c,
                    Wire::Replied {
                        xid,
                        err: 0,
                        zxid,
                        response,
                    },
                );
            }
        } else {
            let request = Request::GetData(GetDataRequest { path, watch: false });
            push(&mut wire, c, Wire::Sent { xid, request });
            let s = &state[&k];
            let response = Response::GetData(GetDataResponse {
                data: Some(s.3.clone()),
                stat: stat(s),
            });
            push(
                &mut wire,
                c,
                Wire::Replied {
                    xid,
                    err: 0,
                    zxid,
                    response,
                },
            );
        }
    }
    (wire, commits)
}

#[test]
fn accepts_generated_histories_and_rejects_a_corrupted_one() {
    let (wire, commits) = history(20_000, 10, 1);
    let s = check(&wire, &commits).expect("a correct history");
    assert!(s.replies > 19_000, "{s:?}");
    assert!(s.unknown_committed > 0, "{s:?}");
    // Corrupt one read in the middle: it must be caught.
    let mut bad = wire.clone();
    let i = bad
        .iter()
        .enumerate()
        .skip(bad.len() / 2)
        .find(|(_, r)| {
            matches!(
                &r.wire,
                Wire::Replied {
                    response: Response::GetData(_),
                    ..
                }
            )
        })
        .map(|(i, _)| i)
        .expect("a read");
    if let Wire::Replied {
        response: Response::GetData(g),
        ..
    } = &mut bad[i].wire
    {
        g.stat.version += 1;
    }
    assert_eq!(check(&bad, &commits).unwrap_err().kind, Kind::WrongReply);
}

/// 100,000 operations on one hot key always (a correct history must pass); with
/// ZRAFT_MODEL_BENCH, also 10 and 1,000 keys and 1,000,000 operations. Prints the times (a
/// benchmark's figures, not asserted: the machine decides them).
#[test]
fn model_checker_speed() {
    let bench = std::env::var("ZRAFT_MODEL_BENCH").is_ok();
    let sizes: &[usize] = if bench { &[100_000, 1_000_000] } else { &[100_000] };
    let key_counts: &[usize] = if bench { &[1, 10, 1000] } else { &[1] };
    for &n in sizes {
        for &keys in key_counts {
            let (wire, commits) = history(n, keys, 7);
            let t = std::time::Instant::now();
            let s = check(&wire, &commits).expect("a correct history");
            let secs = t.elapsed().as_secs_f64();
            println!(
                "model checker: {n} ops on {keys} key(s) ({} replies, {} transactions, {} lost replies committed, {} dropped): {secs:.3} s, {:.1} ms per 100k ops",
                s.replies,
                s.txns,
                s.unknown_committed,
                s.unknown_dropped,
                secs * 1e3 / (n as f64 / 1e5)
            );
        }
    }
}

/// A register history of `n` operations on `keys` keys for the WGL cross-check, linearizable
/// by construction: `clients` clients each issue one operation at a time (reads, writes,
/// compare-and-sets), each taking effect at a random instant inside its own interval, 1% of
/// writes unanswered (half of them never taking effect).
fn register_history(n: usize, keys: usize, clients: u32, seed: u64) -> Vec<zraft_sim::history::Op> {
    use zraft_sim::history::{Op, Outcome, RegOp};
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut free_at = vec![0u64; clients as usize];
    // (effect instant, op index, whether it takes effect)
    let mut ops: Vec<Op> = Vec::with_capacity(n);
    let mut points: Vec<(u64, usize, bool)> = Vec::with_capacity(n);
    for i in 0..n {
        let c = rng.gen_range(0..clients);
        let invoke = free_at[c as usize] + rng.gen_range(0..2_000);
        let point = invoke + rng.gen_range(1..5_000);
        let complete = point + rng.gen_range(1..5_000);
        let key = format!("/k{}", rng.gen_range(0..keys));
        let op = match rng.gen_range(0..10) {
            0..=4 => RegOp::Read,
            5..=7 => RegOp::Write(i as u64 + 1),
            _ => RegOp::Cas {
                version: 0,
                value: i as u64 + 1,
            },
        };
        let lost = matches!(op, RegOp::Write(_)) && rng.gen_bool(LOST);
        free_at[c as usize] = if lost { point } else { complete };
        points.push((point, i, !lost || rng.gen_bool(0.5)));
        ops.push(Op {
            client: c,
            session: c as i64,
            key,
            op,
            invoke,
            complete: (!lost).then_some(complete),
            outcome: Outcome::Info,
            zxid: 0,
            seq: i as u64,
        });
    }
    points.sort();
    let mut state: BTreeMap<String, (u64, i32)> = BTreeMap::new();
    for (_, i, takes_effect) in points {
        let o = &mut ops[i];
        let s = state.entry(o.key.clone()).or_insert((0, 0));
        let outcome = match o.op {
            RegOp::Read => Outcome::Ok(Some(*s)),
            RegOp::Write(v) => {
                if takes_effect {
                    *s = (v, s.1 + 1);
                }
                Outcome::Ok(None)
            }
            RegOp::Cas { value, .. } => {
                // Compare against the version the register has now, so that most succeed.
                o.op = RegOp::Cas { version: s.1, value };
                *s = (value, s.1 + 1);
                Outcome::Ok(None)
            }
            _ => unreachable!(),
        };
        if o.complete.is_some() {
            o.outcome = outcome;
        }
    }
    ops
}

/// The WGL search (the cross-check beside the model checker) on 10,000 (and, with
/// ZRAFT_MODEL_BENCH, 100,000) generated register operations of 10 clients (the swarm's concurrency; the search is exponential in
/// it, which is why the model checker, linear in the history, is the one that decides): must
/// accept them, and reject a copy with one read corrupted. Prints the times (figures, not
/// asserted).
#[test]
fn linearizability_search_speed() {
    use zraft_sim::checker::linear;
    use zraft_sim::history::Outcome;
    let sizes: &[(usize, usize)] = if std::env::var("ZRAFT_MODEL_BENCH").is_ok() {
        &[(10_000, 1), (100_000, 1), (100_000, 10)]
    } else {
        &[(10_000, 1)]
    };
    for &(n, keys) in sizes {
        let h = register_history(n, keys, 10, 11);
        let t = std::time::Instant::now();
        let v = linear::check_from(&h, (0, 0), 50_000_000);
        let secs = t.elapsed().as_secs_f64();
        assert!(v.violation.is_none(), "{n} ops on {keys} key(s): {:?}", v.violation);
        println!(
            "WGL search: {n} register ops on {keys} key(s): {secs:.3} s ({} configurations explored)",
            v.explored
        );
        let mut bad = h.clone();
        let r = bad
            .iter_mut()
            .rev()
            .find(|o| matches!(o.outcome, Outcome::Ok(Some(_))))
            .expect("a read");
        r.outcome = Outcome::Ok(Some((u64::MAX, 1 << 30)));
        let v = linear::check_from(&bad, (0, 0), 50_000_000);
        assert!(
            v.violation.as_ref().is_some_and(|x| !x.budget_exhausted),
            "a read of a value never written must be rejected"
        );
    }
}
