//! Durable storage: every byte goes through the `Disk` trait (real or simulated), into a
//! checksummed write-ahead log with group commit and snapshot files.

pub mod disk;
mod index;
pub mod wal;

pub use disk::{Disk, DiskError, Faults, RealDisk, SimDisk, SimStats};
pub use wal::{
    delete_files, quarantine, write_snapshot, write_snapshot_pieces, RecoveryReport, SpareJob, Storage, StorageError,
    WalOptions,
};
