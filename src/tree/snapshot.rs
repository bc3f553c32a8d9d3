//! Versioned, checksummed snapshots of the whole tree.
//!
//! Layout: magic `ZRSN` (4 bytes), format version (u32 BE), payload length (u64 BE), CRC32C of
//! the payload (u32 BE), payload. Format 2's payload (integers as LEB128 varints, signed ones
//! zigzagged; strings and bytes length-prefixed): last zxid; sessions (count, then id and
//! timeout each); the distinct ACL lists in order of first use (count, then each list: count,
//! then perms, scheme, id); the node count; then every node in pre-order with children by
//! name: name (the root's empty), data (0 for null, else length + 1, then the bytes), ACL
//! list index, the nine stored stat fields, child count. The ephemeral and reaper indexes
//! are derived on load. The payload is a pure function of the tree's contents, so equal
//! trees give byte-identical snapshots. Format 1 (bincode of the old path-keyed tree) is
//! still read, so a data directory from before format 2 loads.

use super::data_tree::{data_of, AclRef, DataTree, Rebuild, StatPersisted};
use crate::jute::{Acl, Id};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use thiserror::Error;

const MAGIC: &[u8; 4] = b"ZRSN";
/// The snapshot format this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The older format this build still reads.
const LEGACY_VERSION: u32 = 1;
/// Bytes of a snapshot's header.
pub const HEADER: usize = 4 + 4 + 8 + 4;

/// Why a snapshot could not be loaded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("not a zraft snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot format version {0} is not supported (this build reads {LEGACY_VERSION} and {FORMAT_VERSION})")]
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
    let mut out = Vec::new();
    let Ok((len, crc)) = encode_into(tree, &mut out, usize::MAX, &mut |_| {
        Ok::<(), std::convert::Infallible>(())
    });
    out[..HEADER].copy_from_slice(&header(len, crc));
    out
}

/// Serializes the tree in pieces of about `piece` bytes, handed to `sink` in order, without
/// ever holding the whole snapshot: a buffer as large as the tree, allocated for every
/// compaction, cost ~8% of the server's CPU under sequential creates (the kernel zeroing and
/// faulting in its fresh pages), and as much memory again as the tree's data. The first piece
/// starts with a header whose length and checksum are zeros; the real header (`HEADER` bytes)
/// is returned, to be written over it once everything else is.
pub fn encode_pieces<E>(
    tree: &DataTree,
    piece: usize,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
) -> Result<[u8; HEADER], E> {
    assert!(piece > HEADER, "a piece holds at least the header");
    let mut out = Vec::new();
    let (len, crc) = encode_into(tree, &mut out, piece, &mut |buf| {
        sink(buf)?;
        buf.clear();
        Ok(())
    })?;
    Ok(header(len, crc))
}

/// A snapshot's header for a payload of `len` bytes with checksum `crc`.
fn header(len: u64, crc: u32) -> [u8; HEADER] {
    let mut h = [0; HEADER];
    h[..4].copy_from_slice(MAGIC);
    h[4..8].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h[8..16].copy_from_slice(&len.to_be_bytes());
    h[16..].copy_from_slice(&crc.to_be_bytes());
    h
}

/// Writes the snapshot into `out`, handing it to `flush` whenever it holds `piece` bytes or
/// more, and at the end (unless `piece` is `usize::MAX`: then `out` holds it all, and `flush`
/// is never called); returns the payload's length and CRC32C. The header is written with a
/// zero length and checksum.
fn encode_into<E>(
    tree: &DataTree,
    out: &mut Vec<u8>,
    piece: usize,
    flush: &mut dyn FnMut(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(u64, u32), E> {
    // ACL lists numbered by first use in the walk, so the numbering depends on contents only.
    // Nodes mostly share one list: the last one looked up is tried first. The same walk sizes
    // the buffer (growing it was a fifth of the simulator's time).
    let mut numbers: BTreeMap<&[Acl], u64> = BTreeMap::new();
    let mut lists: Vec<&AclRef> = vec![];
    let mut last: Option<(&AclRef, u64)> = None;
    let mut acl_of = Vec::with_capacity(tree.node_count());
    let mut size = HEADER + 64 + 24 * tree.sessions().len();
    tree.walk(|_, name, n| {
        size += name.len() + n.data().map_or(0, <[u8]>::len) + 64;
        let acl = n.acl();
        let i = match last {
            Some((l, i)) if Arc::ptr_eq(l, acl) => i,
            _ => *numbers.entry(&acl[..]).or_insert_with(|| {
                lists.push(acl);
                lists.len() as u64 - 1
            }),
        };
        last = Some((acl, i));
        acl_of.push(i);
    });
    // A piece may overshoot by one node (its data up to jute.maxbuffer, plus a little).
    out.reserve(size.min(piece.saturating_add(64 << 10)));
    out.extend_from_slice(&header(0, 0));
    let mut w = Writer(out);
    w.int(tree.last_zxid());
    w.uint(tree.sessions().len() as u64);
    for (&id, &timeout) in tree.sessions() {
        w.int(id);
        w.int(timeout.into());
    }
    w.uint(lists.len() as u64);
    for list in &lists {
        w.uint(list.len() as u64);
        for a in list.iter() {
            w.int(a.perms.into());
            w.bytes(a.id.scheme.as_bytes());
            w.bytes(a.id.id.as_bytes());
        }
    }
    w.uint(tree.node_count() as u64);
    // The payload's length and checksum so far, and where in `out` the bytes not yet counted
    // begin (after the header, in the first piece).
    let (mut len, mut crc, mut from) = (0u64, 0u32, HEADER);
    let mut failed = None;
    let mut acl_of = acl_of.into_iter();
    tree.walk(|_, name, n| {
        if failed.is_some() {
            return;
        }
        w.bytes(name);
        match n.data() {
            None => w.uint(0),
            Some(d) => {
                w.uint(d.len() as u64 + 1);
                w.0.extend_from_slice(d);
            }
        }
        w.uint(acl_of.next().expect("one ACL number per node"));
        let s = &n.stat;
        for v in [s.czxid, s.mzxid, s.ctime, s.mtime] {
            w.int(v);
        }
        for v in [s.version, s.cversion, s.aversion] {
            w.int(v.into());
        }
        w.int(s.ephemeral_owner);
        w.int(s.pzxid);
        w.uint(n.child_count() as u64);
        if w.0.len() >= piece {
            crc = crc32c::crc32c_append(crc, &w.0[from..]);
            len += (w.0.len() - from) as u64;
            from = 0;
            failed = flush(w.0).err();
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    crc = crc32c::crc32c_append(crc, &out[from..]);
    len += (out.len() - from) as u64;
    if piece != usize::MAX && !out.is_empty() {
        flush(out)?;
    }
    Ok((len, crc))
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
    if version != FORMAT_VERSION && version != LEGACY_VERSION {
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
    if version == LEGACY_VERSION {
        return decode_v1(payload);
    }
    let mut r = Reader { buf: payload, at: 0 };
    let last_zxid = r.int()?;
    let mut sessions = BTreeMap::new();
    for _ in 0..r.count(2)? {
        let id = r.int()?;
        sessions.insert(id, r.int32()?);
    }
    let mut acls: Vec<Vec<Acl>> = vec![];
    for _ in 0..r.count(1)? {
        let mut list = vec![];
        for _ in 0..r.count(3)? {
            let perms = r.int32()?;
            let scheme = r.string()?.to_string();
            let id = r.string()?.to_string();
            list.push(Acl {
                perms,
                id: Id { scheme, id },
            });
        }
        acls.push(list);
    }
    let mut rebuild = Rebuild::new(last_zxid, sessions);
    let shared: Vec<AclRef> = acls.iter().map(|a| rebuild.acl(a)).collect();
    let nodes = r.count(13)?;
    for _ in 0..nodes {
        let name = r.string()?;
        let data = match r.uint()? {
            0 => None,
            n => Some(data_of(r.take(n as usize - 1)?)),
        };
        let acl = shared
            .get(r.uint()? as usize)
            .ok_or_else(|| SnapshotError::Decode("ACL index out of range".into()))?
            .clone();
        let stat = StatPersisted {
            czxid: r.int()?,
            mzxid: r.int()?,
            ctime: r.int()?,
            mtime: r.int()?,
            version: r.int32()?,
            cversion: r.int32()?,
            aversion: r.int32()?,
            ephemeral_owner: r.int()?,
            pzxid: r.int()?,
        };
        let children = r.uint()? as usize;
        rebuild
            .push(name, data, acl, stat, children)
            .map_err(SnapshotError::Invariant)?;
    }
    if r.at != payload.len() {
        return Err(SnapshotError::Decode(format!(
            "{} trailing bytes",
            payload.len() - r.at
        )));
    }
    let tree = rebuild.finish().map_err(SnapshotError::Invariant)?;
    if tree.node_count() as u64 != nodes {
        return Err(SnapshotError::Invariant(format!(
            "{nodes} nodes announced, {} linked",
            tree.node_count()
        )));
    }
    Ok(tree)
}

/// A node of format 1.
#[derive(Serialize, Deserialize)]
struct V1Node {
    #[serde(with = "serde_bytes")]
    data: Option<Vec<u8>>,
    acl: Vec<Acl>,
    stat: StatPersisted,
    children: BTreeSet<String>,
}

/// Format 1: the path-keyed tree zraft kept before the arena, as bincode wrote it.
#[derive(Serialize, Deserialize)]
struct V1Tree {
    nodes: BTreeMap<String, V1Node>,
    /// Derived again on load.
    _ephemerals: BTreeMap<i64, BTreeSet<String>>,
    sessions: BTreeMap<i64, i32>,
    last_zxid: i64,
}

/// Format 1: bincode of the path-keyed tree that zraft kept before the arena.
fn decode_v1(payload: &[u8]) -> Result<DataTree, SnapshotError> {
    let (v1, used): (V1Tree, usize) = bincode::serde::decode_from_slice(payload, bincode::config::standard())
        .map_err(|e| SnapshotError::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(SnapshotError::Decode(format!(
            "{} trailing bytes",
            payload.len() - used
        )));
    }
    let mut rebuild = Rebuild::new(v1.last_zxid, v1.sessions);
    // Pre-order from the root, children by name: the order format 2 stores.
    let mut stack = vec!["/".to_string()];
    let mut pushed = 0;
    while let Some(p) = stack.pop() {
        let n = v1
            .nodes
            .get(&p)
            .ok_or_else(|| SnapshotError::Invariant(format!("a parent lists missing node {p}")))?;
        let acl = rebuild.acl(&n.acl);
        let name = if p == "/" { "" } else { super::path::name(&p) };
        rebuild
            .push(name, n.data.as_deref().map(data_of), acl, n.stat, n.children.len())
            .map_err(SnapshotError::Invariant)?;
        pushed += 1;
        stack.extend(n.children.iter().rev().map(|c| super::path::join(&p, c)));
    }
    if pushed != v1.nodes.len() {
        return Err(SnapshotError::Invariant(format!(
            "{} nodes, {pushed} reachable from the root",
            v1.nodes.len()
        )));
    }
    rebuild.finish().map_err(SnapshotError::Invariant)
}

/// Appends varints and length-prefixed bytes.
struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn int(&mut self, v: i64) {
        self.uint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.uint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
}

/// Reads what `Writer` wrote; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn uint(&mut self) -> Result<u64, SnapshotError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.at)
                .ok_or_else(|| SnapshotError::Decode("truncated varint".into()))?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(SnapshotError::Decode("varint longer than 64 bits".into()))
    }

    fn int(&mut self) -> Result<i64, SnapshotError> {
        let u = self.uint()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    fn int32(&mut self) -> Result<i32, SnapshotError> {
        i32::try_from(self.int()?).map_err(|_| SnapshotError::Decode("32-bit field out of range".into()))
    }

    /// A count of items each at least `min_bytes` long: larger than what is left is corrupt.
    fn count(&mut self, min_bytes: usize) -> Result<u64, SnapshotError> {
        let n = self.uint()?;
        if n.saturating_mul(min_bytes as u64) > (self.buf.len() - self.at) as u64 {
            return Err(SnapshotError::Decode(format!("count {n} exceeds what is left")));
        }
        Ok(n)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if n > self.buf.len() - self.at {
            return Err(SnapshotError::Decode("bytes past the end".into()));
        }
        let b = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(b)
    }

    fn string(&mut self) -> Result<&'a str, SnapshotError> {
        let n = self.uint()?;
        let b = self.take(usize::try_from(n).map_err(|_| SnapshotError::Decode("length".into()))?)?;
        std::str::from_utf8(b).map_err(|_| SnapshotError::Decode("a string is not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::OpCode;
    use crate::tree::acl::{open_acl, read_acl};
    use crate::tree::{Txn, TxnEntry};
    use proptest::prelude::*;

    /// A tree with a bit of everything: nested nodes, null and empty data, two ACLs, an
    /// ephemeral, a container, a TTL node and a session.
    fn sample() -> DataTree {
        let mut t = DataTree::new();
        let mut z = 0;
        let mut apply = |t: &mut DataTree, session_id: i64, txn: Txn| {
            z += 1;
            t.apply(&TxnEntry {
                session_id,
                zxid: z,
                time: 1000 + z,
                txn,
            });
        };
        apply(&mut t, 7, Txn::CreateSession { timeout: 4000 });
        let create = |path: &str, data: Option<Vec<u8>>, acl: Vec<Acl>, owner: i64| Txn::Create {
            op: OpCode::Create,
            path: path.into(),
            data,
            acl,
            ephemeral_owner: owner,
            parent_cversion: -1,
        };
        apply(&mut t, 7, create("/a", Some(b"x".to_vec()), open_acl(), 0));
        apply(&mut t, 7, create("/a/b", None, read_acl(), 0));
        apply(&mut t, 7, create("/a/b/c", Some(vec![]), open_acl(), 0));
        apply(&mut t, 7, create("/a/e", Some(vec![9; 300]), open_acl(), 7));
        apply(&mut t, 7, create("/box", None, open_acl(), i64::MIN));
        apply(
            &mut t,
            7,
            create(
                "/ttl",
                None,
                open_acl(),
                crate::tree::data_tree::ttl_owner(500).unwrap(),
            ),
        );
        apply(
            &mut t,
            7,
            create("/a-long-name-that-is-kept-on-the-heap", None, open_acl(), 0),
        );
        t
    }

    /// Encoded in pieces of any size, the snapshot is the same bytes as encoded at once, and
    /// a failing sink stops the encoding with its error.
    #[test]
    fn pieces_make_the_same_snapshot() {
        let mut t = sample();
        for i in 0..200 {
            let z = t.last_zxid() + 1;
            t.apply(&TxnEntry {
                session_id: 7,
                zxid: z,
                time: 5,
                txn: Txn::Create {
                    op: OpCode::Create,
                    path: format!("/a/n{i}"),
                    data: Some(vec![i as u8; i * 3]),
                    acl: open_acl(),
                    ephemeral_owner: 0,
                    parent_cversion: -1,
                },
            });
        }
        let whole = encode(&t);
        for piece in [HEADER + 1, 64, 1000, 4096, whole.len(), 1 << 20] {
            let mut pieces: Vec<Vec<u8>> = vec![];
            let header = encode_pieces(&t, piece, &mut |p| {
                pieces.push(p.to_vec());
                Ok::<(), ()>(())
            })
            .unwrap();
            assert!(pieces.iter().all(|p| !p.is_empty()), "piece {piece}");
            assert!(
                pieces[..pieces.len() - 1].iter().all(|p| p.len() >= piece),
                "piece {piece}"
            );
            let mut joined = pieces.concat();
            assert_eq!(&joined[8..HEADER], &[0; 12], "length and checksum left for later");
            joined[..HEADER].copy_from_slice(&header);
            assert!(
                joined == whole,
                "piece {piece}: {} vs {} bytes",
                joined.len(),
                whole.len()
            );
        }
        let mut calls = 0;
        let r = encode_pieces(&t, 64, &mut |_| {
            calls += 1;
            if calls == 3 {
                Err("disk full")
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err("disk full"));
        assert_eq!(calls, 3, "nothing is handed over after a failure");
    }

    fn framed(version: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A data directory written before format 2 still loads, into the same tree.
    #[test]
    fn format_1_snapshots_still_load() {
        let tree = sample();
        let mut nodes = BTreeMap::new();
        let mut stack = vec!["/".to_string()];
        while let Some(p) = stack.pop() {
            let n = tree.node(&p).unwrap();
            let children: BTreeSet<String> = n.children().map(str::to_string).collect();
            stack.extend(children.iter().map(|c| crate::tree::path::join(&p, c)));
            nodes.insert(
                p,
                V1Node {
                    data: n.data().map(<[u8]>::to_vec),
                    acl: n.acl().to_vec(),
                    stat: n.stat,
                    children,
                },
            );
        }
        let v1 = V1Tree {
            nodes,
            _ephemerals: [(7, ["/a/e".to_string()].into())].into(),
            sessions: tree.sessions().clone(),
            last_zxid: tree.last_zxid(),
        };
        let payload = bincode::serde::encode_to_vec(&v1, bincode::config::standard()).unwrap();
        let loaded = decode(&framed(1, &payload)).unwrap();
        assert_eq!(loaded, tree);
        assert_eq!(encode(&loaded), encode(&tree));
    }

    #[test]
    fn snapshots_round_trip() {
        let tree = sample();
        let bytes = encode(&tree);
        let back = decode(&bytes).unwrap();
        assert_eq!(back, tree);
        assert_eq!(encode(&back), bytes);
        assert_eq!(back.ephemerals_of(7).collect::<Vec<_>>(), ["/a/e"]);
        assert_eq!(back.reap_candidates(i64::MAX).len(), 1, "the TTL node, expired");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        /// A payload whose checksum matches but whose structure is damaged (a bug, or a
        /// checksum collision) is an error or a tree that passes its invariants, never a panic.
        #[test]
        fn damaged_structure_is_an_error_not_a_panic(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            let good = encode(&sample());
            let mut payload = good[HEADER..].to_vec();
            for (i, b) in edits {
                let i = i.index(payload.len());
                payload[i] = b;
            }
            if let Some(c) = cut {
                payload.truncate(c.index(payload.len()));
            }
            if let Ok(t) = decode(&framed(FORMAT_VERSION, &payload)) {
                prop_assert!(t.check_invariants().is_ok());
            }
        }
    }
}
