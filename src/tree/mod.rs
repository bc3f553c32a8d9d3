//! The znode tree: ZooKeeper's DataTree as a pure state machine. `prepare` validates a request
//! and yields a transaction; `apply` executes a committed transaction and never fails.

pub mod acl;
pub mod data_tree;
pub mod digest;
pub mod name;
pub mod path;
pub mod prepare;
pub mod read;
mod slots;
pub mod snapshot;
pub mod txn;

pub use acl::AuthIds;
pub use data_tree::{DataTree, Node, StatPersisted};
pub use prepare::{Pending, PrepareCtx, TreeConfig};
pub use txn::{Txn, TxnEntry, TxnResult, WatchTrigger};
