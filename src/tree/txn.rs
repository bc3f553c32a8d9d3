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

/// Envelope every transaction travels in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnEntry {
    pub session_id: i64,
    pub zxid: i64,
    /// Leader wall-clock milliseconds, assigned at prepare so every node stores the same times.
    pub time: i64,
    pub txn: Txn,
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
