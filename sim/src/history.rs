//! The recorded history of a run: every client operation as invoke → ok / fail / info, with
//! simulated timestamps, client, session and zxid.

use serde::{Deserialize, Serialize};

/// What a register operation asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegOp {
    /// sync + getData: must observe (value, version).
    Read,
    /// setData with version -1.
    Write(u64),
    /// setData expecting `version`.
    Cas { version: i32, value: u64 },
    /// A persistent-sequential create under the key (a parent path).
    SeqCreate,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Succeeded; a read carries what it saw (value, version).
    Ok(Option<(u64, i32)>),
    /// Definitely did not take effect (e.g. BadVersion for a CAS, which still says the version
    /// differed at some point inside the operation).
    Fail,
    /// Unknown: timeout or connection loss. It may have happened, at any time after invoke.
    Info,
    /// A sequential create succeeded with this name.
    Created(String),
}

/// One completed (or abandoned) operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub client: u32,
    pub session: i64,
    pub key: String,
    pub op: RegOp,
    /// Simulated nanoseconds.
    pub invoke: u64,
    /// `None` for Info: the operation may take effect at any later time.
    pub complete: Option<u64>,
    pub outcome: Outcome,
    /// zxid of the reply, when there was one.
    pub zxid: i64,
}
