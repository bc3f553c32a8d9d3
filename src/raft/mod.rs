//! Raft consensus as a pure state machine (in the spirit of raft-rs/etcd-raft `Ready`):
//! no I/O, clocks or global randomness inside.

pub mod core;
pub mod log;
pub mod message;
pub mod progress;
pub mod wire;

pub use self::core::{Config, Raft, RaftError, ReadState, Ready, Recovered, Role};
pub use message::*;

#[cfg(test)]
mod tests;
