//! Registers: sync + getData (leaving a data watch where none is pending), setData and
//! compare-and-set (setData with the version last read or written) over a few keys.

use super::{Conn, Recorder};
use crate::history::{Outcome, RegOp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use zraft::client::ClientError;
use zraft::jute::{GetDataRequest, Request, Response, SetDataRequest, SyncRequest};

/// Which register operation to run.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Read,
    Write,
    Cas,
}

/// A client's register state: the versions it knows (its pending watches live on `Conn`).
#[derive(Default)]
pub struct Registers {
    versions: BTreeMap<String, i32>,
    counter: u64,
}

fn parse(d: &Option<Vec<u8>>) -> u64 {
    d.as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Registers {
    /// Runs one operation on a random key and records it.
    pub async fn step(&mut self, kind: Kind, conn: &mut Conn, rec: &Recorder, rng: &mut ChaCha8Rng, keys: u32) {
        let key = format!("/k{}", rng.gen_range(0..keys));
        self.counter += 1;
        let value = ((rec.client as u64) << 32) | self.counter;
        let session = conn.session();
        let invoke = rec.now();
        let (op, result, zxid) = match kind {
            Kind::Read => {
                // Some reads skip sync: ZooKeeper promises them less (no linearizability).
                let plain = rng.gen_bool(0.3);
                let watch = !plain && !conn.watching(&key);
                let synced = match plain {
                    true => (Ok(Response::Empty), 0),
                    false => conn.call(Request::Sync(SyncRequest { path: key.clone() })).await,
                };
                let (r, zxid) = match synced {
                    (Ok(_), _) => {
                        let req = GetDataRequest {
                            path: key.clone(),
                            watch,
                        };
                        conn.call(Request::GetData(req)).await
                    }
                    (Err(e), z) => (Err(e), z),
                };
                // The events that came before the reply were recorded by `call`, in order (and
                // spent their watches).
                let r = match r {
                    Ok(Response::GetData(g)) => Ok(Some((parse(&g.data), g.stat.version))),
                    Ok(other) => Err(ClientError::Protocol(format!("{other:?}"))),
                    Err(e) => Err(e),
                };
                if watch && r.is_ok() {
                    conn.watch(&key);
                }
                let op = match (plain, watch) {
                    (true, _) => RegOp::PlainRead,
                    (false, true) => RegOp::ReadWatch,
                    (false, false) => RegOp::Read,
                };
                (op, r, zxid)
            }
            Kind::Write | Kind::Cas => {
                let version = match kind {
                    Kind::Cas => self.versions.get(&key).copied().unwrap_or(0),
                    _ => -1,
                };
                let req = SetDataRequest {
                    path: key.clone(),
                    data: Some(value.to_string().into_bytes()),
                    version,
                };
                let (r, zxid) = conn.call(Request::SetData(req)).await;
                let op = match kind {
                    Kind::Cas => RegOp::Cas { version, value },
                    _ => RegOp::Write(value),
                };
                (op, r.map(|_| None), zxid)
            }
        };
        let outcome = match result {
            Ok(seen) => {
                if let Some((_, v)) = seen {
                    self.versions.insert(key.clone(), v);
                }
                Outcome::Ok(seen)
            }
            Err(ClientError::Server(_)) => Outcome::Fail,
            // Unknown outcome; the connection was dropped and the session will be resumed.
            Err(_) => Outcome::Info,
        };
        if matches!(kind, Kind::Read) && outcome == Outcome::Info {
            // A read that never answered constrains nothing.
            return;
        }
        rec.push(session, &key, op, invoke, outcome, zxid);
    }
}

/// The register a client's pipelined batches use. Its own: a batch's compare-and-sets are
/// concurrent in the history (sent together), and the WGL search explodes on many concurrent
/// writes with unknown outcomes on one key; on a key of one client the version chain leaves
/// one order to try. (The zxid-ordered model checker of issue 10 will lift this.)
pub fn pipeline_key(client: u32) -> String {
    format!("/p{client}")
}

impl Registers {
    /// A pipelined batch on one key: after a plain read gives the version, `depth` requests
    /// go out at once — compare-and-sets, each expecting the version the one before it makes,
    /// with plain reads (sometimes behind a sync) between them — and only then are the replies
    /// collected. Every read must see the compare-and-sets its session sent before it; the
    /// replies must come back in order.
    pub async fn pipelined(&mut self, depth: u32, conn: &mut Conn, rec: &Recorder, rng: &mut ChaCha8Rng) {
        let key = pipeline_key(rec.client);
        let session = conn.session();
        let invoke = rec.now();
        let (r, zxid) = conn
            .call(Request::GetData(GetDataRequest {
                path: key.clone(),
                watch: false,
            }))
            .await;
        let Ok(Response::GetData(g)) = r else { return };
        let mut version = g.stat.version;
        rec.push(
            session,
            &key,
            RegOp::PlainRead,
            invoke,
            Outcome::Ok(Some((parse(&g.data), version))),
            zxid,
        );
        // What each request of the batch is, for recording its reply.
        enum Sent {
            Cas { version: i32, value: u64 },
            Read { synced: bool },
            Sync,
        }
        let mut sent = vec![];
        let mut requests = vec![];
        while (requests.len() as u32) < depth.max(2) {
            if sent.is_empty() || rng.gen_bool(0.5) {
                self.counter += 1;
                let value = ((rec.client as u64) << 32) | self.counter;
                requests.push(Request::SetData(SetDataRequest {
                    path: key.clone(),
                    data: Some(value.to_string().into_bytes()),
                    version,
                }));
                sent.push(Sent::Cas { version, value });
                version += 1;
            } else {
                let synced = rng.gen_bool(0.3);
                if synced {
                    requests.push(Request::Sync(SyncRequest { path: key.clone() }));
                    sent.push(Sent::Sync);
                }
                requests.push(Request::GetData(GetDataRequest {
                    path: key.clone(),
                    watch: false,
                }));
                sent.push(Sent::Read { synced });
            }
        }
        let invoke = rec.now();
        let replies = conn.pipeline(requests).await;
        let mut synced_ok = false;
        for (what, (r, zxid)) in sent.into_iter().zip(replies) {
            let outcome = match (&what, r) {
                (Sent::Sync, r) => {
                    synced_ok = r.is_ok();
                    continue;
                }
                (Sent::Read { .. }, Ok(Response::GetData(g))) => Outcome::Ok(Some((parse(&g.data), g.stat.version))),
                (Sent::Read { .. }, _) => continue,
                (Sent::Cas { version, .. }, Ok(_)) => {
                    self.versions.insert(key.clone(), version + 1);
                    Outcome::Ok(None)
                }
                (Sent::Cas { .. }, Err(ClientError::Server(_))) => Outcome::Fail,
                (Sent::Cas { .. }, Err(_)) => Outcome::Info,
            };
            let op = match what {
                Sent::Cas { version, value } => RegOp::Cas { version, value },
                // A read right behind a successful sync is linearizable; others promise less.
                Sent::Read { synced: true } if synced_ok => RegOp::Read,
                Sent::Read { .. } => RegOp::PlainRead,
                Sent::Sync => unreachable!("skipped above"),
            };
            rec.push(session, &key, op, invoke, outcome, zxid);
        }
    }
}
