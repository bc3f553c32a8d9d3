//! The tree's digest: one number for the whole replicated state, kept up to date by every
//! change, in the spirit of ZooKeeper's `DigestCalculator` (3.6+). It is a wrapping sum of a
//! hash per node (its path, data, ACL and stored stat) and per session, so a change costs the
//! hashes of the nodes it touches, not a walk of the tree: the simulator compares replicas'
//! digests after every applied entry, where encoding the tree every 16th entry was a tenth of
//! its time. `DataTree::check_digest` recomputes it from scratch.

use super::data_tree::{AclRef, Node};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The root's key.
pub const ROOT_KEY: u64 = 0;

/// A path's key: the root's is `ROOT_KEY`, and a child's is made from its parent's and its name
/// (`child_key`), so that a walk of the tree keys every node without making its path.
pub fn path_key(path: &str) -> u64 {
    path.split('/').filter(|c| !c.is_empty()).fold(ROOT_KEY, child_key)
}

/// The key of `name`'s path under a parent whose key is `parent`.
pub fn child_key(parent: u64, name: &str) -> u64 {
    xxh3_64_with_seed(name.as_bytes(), parent)
}

/// Mixes `v` into `h` (a multiply-xorshift round: every input bit reaches every output bit).
fn mix(h: u64, v: u64) -> u64 {
    let x = (h ^ v)
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 29)
}

/// The hash of a node's data in its share (kept with the data: `Node::data_hash`).
pub fn data_hash(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// A node's share of the digest, given its path's key, from its contents: the data hashed
/// anew, so that a recomputation checks the hashes kept with the data too.
pub fn node(key: u64, n: &Node) -> u64 {
    node_parts(key, n, acl(n.acl()), n.data().map(data_hash))
}

/// `node`, given its ACL's share (`acl`), which nodes sharing a list can share, with the
/// data's hash as kept.
pub fn node_with_acl(key: u64, n: &Node, acl: u64) -> u64 {
    node_parts(key, n, acl, n.data_hash())
}

/// A node's share from its parts (`data`: the hash of its data, None for null data).
fn node_parts(key: u64, n: &Node, acl: u64, data: Option<u64>) -> u64 {
    let s = &n.stat;
    // Null data and empty data differ, as they do on the wire.
    let (has_data, data) = data.map_or((0, 0), |h| (1, h));
    let words = [
        key,
        has_data,
        data,
        acl,
        s.czxid as u64,
        s.mzxid as u64,
        s.ctime as u64,
        s.mtime as u64,
        s.ephemeral_owner as u64,
        s.pzxid as u64,
        (u64::from(s.version as u32) << 32) | u64::from(s.cversion as u32),
        u64::from(s.aversion as u32),
    ];
    // One hash of the fixed-size fields (96 bytes): a chain of eleven multiply rounds and
    // CRC32C of the data and path were a third of decoding a snapshot.
    let mut bytes = [0u8; 96];
    for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    xxh3_64(&bytes)
}

/// An ACL list's part of its nodes' shares.
pub fn acl(a: &AclRef) -> u64 {
    a.iter().fold(a.len() as u64, |h, e| {
        let h = xxh3_64_with_seed(e.id.scheme.as_bytes(), h ^ u64::from(e.perms as u32));
        xxh3_64_with_seed(e.id.id.as_bytes(), h)
    })
}

/// A live session's share of the digest.
pub fn session(id: i64, timeout: i32) -> u64 {
    mix(mix(0x5e55_1011, id as u64), u64::from(timeout as u32))
}

/// The sessions' shares, summed.
pub fn sessions(sessions: &std::collections::BTreeMap<i64, i32>) -> u64 {
    sessions
        .iter()
        .fold(0, |sum, (&id, &timeout)| sum.wrapping_add(session(id, timeout)))
}

/// The digest of a tree whose shares sum to `sum`, with `count` nodes, at `last_zxid`.
pub fn finish(sum: u64, count: usize, last_zxid: i64) -> u64 {
    mix(mix(sum, count as u64), last_zxid as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_key_is_the_key_of_its_path() {
        assert_eq!(path_key("/"), ROOT_KEY);
        assert_eq!(child_key(path_key("/"), "a"), path_key("/a"));
        assert_eq!(child_key(path_key("/a"), "bc"), path_key("/a/bc"));
        assert_ne!(path_key("/ab"), path_key("/a/b"));
    }

    #[test]
    fn mixing_separates_neighbours() {
        let hs: std::collections::BTreeSet<u64> = (0..1000u64).map(|v| mix(0, v)).collect();
        assert_eq!(hs.len(), 1000);
        assert_ne!(session(1, 2), session(2, 1));
        assert_ne!(finish(0, 1, 2), finish(0, 2, 1));
    }
}
