//! Checkers over a recorded history.

pub mod ephemeral;
pub mod linear;
pub mod lock;
pub mod membership;
pub mod model;
pub mod raft;
pub mod sequential;
pub mod session;
pub mod watch;
