//! Versioned, checksummed snapshots of the whole tree.
//!
//! Layout: magic `ZRSN` (4 bytes), format version (u32 BE), payload length (u64 BE), CRC32C of
//! the payload (u32 BE), payload (bincode 2, standard config, of `DataTree`). BTreeMaps make the
//! payload a pure function of the tree, so equal trees give byte-identical snapshots.

use super::data_tree::DataTree;
use thiserror::Error;

const MAGIC: &[u8; 4] = b"ZRSN";
/// The only snapshot format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 4 + 4 + 8 + 4;

/// Why a snapshot could not be loaded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("not a zraft snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {0} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("snapshot truncated: {0} bytes")]
    Truncated(usize),
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("snapshot payload does not decode: {0}")]
    Decode(String),
    #[error("snapshot tree violates an invariant: {0}")]
    Invariant(String),
}

/// Serializes the tree.
pub fn encode(tree: &DataTree) -> Vec<u8> {
    let payload = bincode::serde::encode_to_vec(tree, bincode::config::standard()).expect("tree always encodes");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Loads a snapshot, verifying magic, version, length, checksum and tree invariants.
pub fn decode(bytes: &[u8]) -> Result<DataTree, SnapshotError> {
    if bytes.len() < HEADER {
        return Err(SnapshotError::Truncated(bytes.len()));
    }
    if &bytes[0..4] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    let len = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if len != (bytes.len() - HEADER) as u64 {
        return Err(SnapshotError::Truncated(bytes.len()));
    }
    let stored = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER..];
    let computed = crc32c::crc32c(payload);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let (tree, used): (DataTree, usize) = bincode::serde::decode_from_slice(payload, bincode::config::standard())
        .map_err(|e| SnapshotError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(SnapshotError::Decode(format!(
            "{} trailing bytes",
            payload.len() - used
        )));
    }
    tree.check_invariants().map_err(SnapshotError::Invariant)?;
    Ok(tree)
}
