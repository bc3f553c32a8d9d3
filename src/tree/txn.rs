//! Transactions: what prepare produces, the log replicates and apply executes.

use crate::jute::{Acl, ErrorCode, EventType, OpCode, OpResult, Stat};
use serde::{Deserialize, Serialize};

/// A state change, already validated against the tree it will be applied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Txn {
    /// Create a node; `op` (create, create2, createTTL, createContainer) picks the reply shape.
    Create {
        op: OpCode,
        path: String,
        // As bytes, not a sequence of u8: bincode then copies them in one go (decoding them
        // one by one was 6.6% of a loaded server's time).
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        ephemeral_owner: i64,
        parent_cversion: i32,
    },
    /// Delete a node.
    Delete { path: String },
    /// Replace a node's data; `version` is the new version.
    SetData {
        path: String,
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
        version: i32,
    },
    /// Replace a node's ACL; `version` is the new aversion.
    SetAcl { path: String, acl: Vec<Acl>, version: i32 },
    /// A version check that passed (inside multi).
    Check { path: String },
    /// All ops of a multi, or error entries for every op when one failed.
    Multi(Vec<Txn>),
    /// A write that failed in prepare; it still takes a zxid, as in ZooKeeper.
    Error(ErrorCode),
    /// A new session.
    CreateSession { timeout: i32 },
    /// A closed or expired session and the ephemerals it owned when prepared.
    CloseSession { ephemerals: Vec<String> },
}

/// Longest bincode varint (a marker byte and eight bytes).
pub const VARINT: usize = 9;

impl Txn {
    /// Bytes the transaction takes at most in bincode's standard encoding (every integer at its
    /// longest varint), so that its buffer is allocated once: grown by doubling, a 1 KiB
    /// setData reallocated eight times, and the last ones go through glibc's slow path.
    pub fn encoded_size_bound(&self) -> usize {
        let s = |x: &str| VARINT + x.len();
        let data = |d: &Option<Vec<u8>>| 1 + VARINT + d.as_ref().map_or(0, Vec::len);
        let acl = |a: &[Acl]| VARINT + a.iter().map(|e| VARINT + s(&e.id.scheme) + s(&e.id.id)).sum::<usize>();
        VARINT
            + match self {
                Txn::Create {
                    path, data: d, acl: a, ..
                } => VARINT + s(path) + data(d) + acl(a) + 2 * VARINT,
                Txn::Delete { path } | Txn::Check { path } => s(path),
                Txn::SetData { path, data: d, .. } => s(path) + data(d) + VARINT,
                Txn::SetAcl { path, acl: a, .. } => s(path) + acl(a) + VARINT,
                Txn::Multi(ts) => VARINT + ts.iter().map(Txn::encoded_size_bound).sum::<usize>(),
                Txn::Error(_) | Txn::CreateSession { .. } => VARINT,
                Txn::CloseSession { ephemerals } => VARINT + ephemerals.iter().map(|p| s(p)).sum::<usize>(),
            }
    }
}

/// Envelope every transaction travels in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnEntry {
    pub session_id: i64,
    pub zxid: i64,
    /// Leader wall-clock milliseconds, assigned at prepare so every node stores the same times.
    pub time: i64,
    pub txn: Txn,
}

impl TxnEntry {
    /// Bytes the entry takes at most in bincode's standard encoding.
    pub fn encoded_size_bound(&self) -> usize {
        3 * VARINT + self.txn.encoded_size_bound()
    }
}

/// What applying one transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    Created { op: OpCode, path: String, stat: Stat },
    Deleted,
    DataSet(Stat),
    AclSet(Stat),
    Checked,
    Multi(Vec<TxnResult>),
    Error(ErrorCode),
    SessionCreated,
    SessionClosed,
}

impl TxnResult {
    /// The error code a client sees in the reply header (first failure for multi).
    pub fn err(&self) -> ErrorCode {
        match self {
            TxnResult::Error(e) => *e,
            TxnResult::Multi(rs) => rs
                .iter()
                .map(|r| r.err())
                .find(|e| *e != ErrorCode::Ok)
                .unwrap_or(ErrorCode::Ok),
            _ => ErrorCode::Ok,
        }
    }

    /// This result as one entry of a multi reply. Inside a multi, ZooKeeper 3.8 answers
    /// create2 like create (path only) and createTTL/createContainer as create2 (with stat).
    pub fn to_op_result(&self) -> OpResult {
        match self {
            TxnResult::Created {
                op: OpCode::Create | OpCode::Create2,
                path,
                ..
            } => OpResult::Create(path.clone()),
            TxnResult::Created { path, stat, .. } => OpResult::Create2(OpCode::Create2, path.clone(), stat.clone()),
            TxnResult::Deleted => OpResult::Delete,
            TxnResult::DataSet(s) => OpResult::SetData(s.clone()),
            TxnResult::Checked => OpResult::Check,
            TxnResult::Error(e) => OpResult::Error(*e),
            // Not valid inside a multi; prepare never nests them.
            TxnResult::AclSet(_) | TxnResult::Multi(_) | TxnResult::SessionCreated | TxnResult::SessionClosed => {
                OpResult::Error(ErrorCode::RuntimeInconsistency)
            }
        }
    }
}

/// A change that fires watches: an event type on a path, and the ACL of the node it is about
/// (a watcher without READ on it is not told, as ZooKeeper 3.8 decides per watcher).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchTrigger {
    pub event: EventType,
    pub path: String,
    pub acl: super::data_tree::AclRef,
}

impl TxnResult {
    /// The reply header error and body a client gets for this result.
    pub fn reply(&self) -> (ErrorCode, crate::jute::Response) {
        use crate::jute::*;
        match self {
            TxnResult::Created {
                op: OpCode::Create,
                path,
                ..
            } => (ErrorCode::Ok, Response::Create(CreateResponse { path: path.clone() })),
            TxnResult::Created { path, stat, .. } => (
                ErrorCode::Ok,
                Response::Create2(Create2Response {
                    path: path.clone(),
                    stat: stat.clone(),
                }),
            ),
            TxnResult::DataSet(stat) => (ErrorCode::Ok, Response::SetData(SetDataResponse { stat: stat.clone() })),
            TxnResult::AclSet(stat) => (ErrorCode::Ok, Response::SetAcl(SetAclResponse { stat: stat.clone() })),
            // ZooKeeper reports a failed multi inside the results; the header says ok.
            TxnResult::Multi(rs) => (
                ErrorCode::Ok,
                Response::Multi(rs.iter().map(TxnResult::to_op_result).collect()),
            ),
            TxnResult::Error(e) => (*e, Response::Empty),
            TxnResult::Deleted | TxnResult::Checked | TxnResult::SessionCreated | TxnResult::SessionClosed => {
                (ErrorCode::Ok, Response::Empty)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::Id;

    /// The bound holds for every kind of transaction, at extreme integers too, and stays
    /// close for the common ones (or the buffer would be trimmed on every write).
    #[test]
    fn the_encoded_size_bound_holds() {
        let acl = vec![Acl {
            perms: -1,
            id: Id {
                scheme: "digest".into(),
                id: "user:0123456789abcdefghijklmnopq=".into(),
            },
        }];
        let set = |n: usize| Txn::SetData {
            path: "/bench/k123".into(),
            data: Some(vec![7; n]),
            version: i32::MAX,
        };
        let create = Txn::Create {
            op: OpCode::Create2,
            path: "/a/b/c-0000000001".into(),
            data: None,
            acl: acl.clone(),
            ephemeral_owner: i64::MIN,
            parent_cversion: -1,
        };
        let txns = [
            set(0),
            set(1024),
            set(1 << 20),
            create.clone(),
            Txn::Delete { path: "/x".into() },
            Txn::SetAcl {
                path: "/x".into(),
                acl: acl.clone(),
                version: i32::MIN,
            },
            Txn::Check { path: "/".into() },
            Txn::Multi(vec![
                create,
                set(10),
                Txn::Multi(vec![Txn::Error(ErrorCode::BadVersion)]),
            ]),
            Txn::Error(ErrorCode::NoNode),
            Txn::CreateSession { timeout: i32::MIN },
            Txn::CloseSession {
                ephemerals: vec!["/e1".into(), "/e/2".into()],
            },
        ];
        for (i, txn) in txns.into_iter().enumerate() {
            for (zxid, time) in [(1, 0), (i64::MAX, i64::MIN)] {
                let e = TxnEntry {
                    session_id: i64::MIN,
                    zxid,
                    time,
                    txn: txn.clone(),
                };
                let len = bincode::serde::encode_to_vec(&e, bincode::config::standard())
                    .unwrap()
                    .len();
                let bound = e.encoded_size_bound();
                assert!(len <= bound, "txn {i}: {len} bytes, bound {bound}");
                if i == 1 {
                    assert!(bound - len <= 64, "a 1 KiB setData: {len} bytes, bound {bound}");
                }
            }
        }
    }
}
