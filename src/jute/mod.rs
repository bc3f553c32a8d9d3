//! The ZooKeeper client wire format (jute, protocol version 0): pure encode/decode, no I/O.

pub mod codec;
pub mod codes;
pub mod frame;
pub mod message;
pub mod records;

pub use codec::{JuteError, Reader, Record, Writer};
pub use codes::{perms, xid, AddWatchMode, CreateMode, ErrorCode, EventType, KeeperState, OpCode, WatcherType};
pub use frame::{encode_frame, FrameDecoder, DEFAULT_MAX_BUFFER};
pub use message::{MultiOp, MultiRequest, OpResult, ReplyFrame, Request, RequestFrame, Response};
pub use records::*;
