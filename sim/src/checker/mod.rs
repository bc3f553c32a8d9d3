//! Checkers over a recorded history.

pub mod linear;
pub mod raft;
pub mod sequential;
pub mod session;
