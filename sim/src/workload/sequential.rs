//! Sequential creates under shared parents: persistent-sequential under /seq, and
//! ephemeral-sequential under /eph, which the creating session lists now and then (its own
//! ephemerals must be there while it lives; they must go when it expires).

use super::{Conn, Recorder};
use crate::history::{Outcome, RegOp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use zraft::client::ClientError;
use zraft::jute::{CreateMode, CreateRequest, GetChildrenRequest, Request, Response};

/// Parents the sequential workload creates under (the setup creates them).
pub const PARENTS: [&str; 2] = ["/seq", "/eph"];

/// A client's sequential state: the session it last created ephemerals in.
#[derive(Default)]
pub struct Sequential {
    ephemerals_in: Option<i64>,
}

impl Sequential {
    /// Runs one create (or a listing of /eph) and records it.
    pub async fn step(&mut self, conn: &mut Conn, rec: &Recorder, rng: &mut ChaCha8Rng) {
        let session = conn.session();
        let invoke = rec.now();
        if self.ephemerals_in == Some(session) && rng.gen_bool(0.3) {
            let req = GetChildrenRequest {
                path: "/eph".into(),
                watch: false,
            };
            let (r, zxid) = conn.call(Request::GetChildren(req)).await;
            let outcome = match r {
                Ok(Response::GetChildren(g)) => Outcome::Children(g.children),
                Ok(_) | Err(ClientError::Server(_)) => Outcome::Fail,
                Err(_) => return,
            };
            rec.push(session, "/eph", RegOp::ListChildren, invoke, outcome, zxid);
            return;
        }
        let (parent, mode) = if rng.gen_bool(0.5) {
            ("/eph", CreateMode::EphemeralSequential)
        } else {
            ("/seq", CreateMode::PersistentSequential)
        };
        let req = CreateRequest {
            path: format!("{parent}/s-"),
            data: None,
            acl: zraft::tree::acl::open_acl(),
            flags: mode.code(),
        };
        let (r, zxid) = conn.call(Request::Create(req)).await;
        let outcome = match r {
            Ok(Response::Create(cr)) => {
                if mode == CreateMode::EphemeralSequential {
                    self.ephemerals_in = Some(session);
                }
                Outcome::Created(cr.path)
            }
            Ok(_) | Err(ClientError::Server(_)) => Outcome::Fail,
            Err(_) => Outcome::Info,
        };
        rec.push(session, parent, RegOp::SeqCreate, invoke, outcome, zxid);
    }
}
