//! The recorded history of a run: every client operation as invoke → ok / fail / info, with
//! simulated timestamps, client, session and zxid.

use serde::{Deserialize, Serialize};

/// What an operation asked for (or, for `Connected` and `WatchEvent`, what a client saw).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RegOp {
    /// sync + getData: must observe (value, version).
    Read,
    /// sync + getData that also left a data watch on the key.
    ReadWatch,
    /// getData without sync: not linearizable by contract, but monotonic per session.
    PlainRead,
    /// setData with version -1.
    Write(u64),
    /// setData expecting `version`.
    Cas { version: i32, value: u64 },
    /// A persistent- or ephemeral-sequential create under the key (a parent path).
    SeqCreate,
    /// getChildren of the key (a parent of ephemerals) by a session that created some there.
    ListChildren,
    /// The client opened a new connection (resuming or starting a session): its watches are gone.
    Connected,
    /// On a connection that resumed its session, the client re-sent these data watches
    /// (setWatches, relative to the last zxid it saw), as kazoo and the Java client do: changes
    /// it missed fire at once, the others stay armed.
    SetWatches(Vec<String>),
    /// A data-watch notification for the key reached the client.
    WatchEvent,
    /// Lock recipe: the client's ephemeral-sequential node (outcome `Created`) is the lowest.
    LockAcquire,
    /// Lock recipe: multi [check(lock, -1), setData(key, value, version read after acquiring)].
    LockWrite { lock: String, value: u64 },
    /// A reply came back out of request order on the client's connection (which the client
    /// then dropped, as the Java client does on "Xid out of order").
    OutOfOrder,
}

impl RegOp {
    /// Whether this is a register operation (checked for linearizability).
    pub fn is_register(&self) -> bool {
        matches!(
            self,
            RegOp::Read | RegOp::ReadWatch | RegOp::Write(_) | RegOp::Cas { .. }
        )
    }

    /// Whether this reads a register (with or without sync or a watch).
    pub fn is_read(&self) -> bool {
        matches!(self, RegOp::Read | RegOp::ReadWatch | RegOp::PlainRead)
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// A listing succeeded with these children.
    Children(Vec<String>),
    /// Failed with this ZooKeeper error code (kept where the code matters to a checker).
    Error(i32),
}

/// One completed (or abandoned) operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// zxid in the reply's header (0 when there was no reply).
    pub zxid: i64,
    /// The client's request order: ops of a client are recorded in the order it sent them
    /// (pipelined ones share an invoke time, so only this orders them).
    #[serde(default)]
    pub seq: u64,
}

/// One thing a client's connection did or saw, in the order it happened: the model checker's
/// input. Unlike `Op`, nothing is summarised: every request and reply is kept whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// A new connection to `server` holding `session` (new or resumed).
    Connected { server: u64, session: i64 },
    /// A request went out with this xid.
    Sent { xid: i32, request: zraft::jute::Request },
    /// The reply to `xid` came in.
    Replied {
        xid: i32,
        err: i32,
        zxid: i64,
        response: zraft::jute::Response,
    },
    /// A watch notification came in.
    Event { r#type: i32, path: String },
}

/// A `Wire` record of one client's connection `conn` (its n-th), at simulated `at` ns.
#[derive(Debug, Clone, PartialEq)]
pub struct WireRec {
    pub client: u32,
    pub conn: u64,
    pub at: u64,
    pub wire: Wire,
}
