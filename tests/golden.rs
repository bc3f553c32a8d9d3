//! Golden frames captured from kazoo 2.11 and zkCli.sh (ZooKeeper 3.8.0) talking to a real
//! ZooKeeper 3.8.0 (tests/golden/capture.py). Every frame must decode, re-encode byte for byte,
//! and its decoded form is pinned by an insta snapshot.

use std::collections::BTreeMap;
use std::fmt::Write;
use zraft::jute::*;

#[test]
fn golden_frames_round_trip() {
    let text = include_str!("golden/frames.txt");
    // Per connection: whether the handshake was seen in each direction, and xid -> opcode.
    let mut handshake: BTreeMap<(u32, bool), bool> = BTreeMap::new();
    let mut ops: BTreeMap<(u32, i32), OpCode> = BTreeMap::new();
    let mut out = String::new();
    let mut count = 0;
    let mut seen_ops: BTreeMap<OpCode, usize> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split(' ');
        let conn: u32 = parts.next().unwrap().parse().unwrap();
        let c2s = parts.next().unwrap() == "c2s";
        let bytes = hex::decode(parts.next().unwrap()).unwrap();
        let first = !handshake.insert((conn, c2s), true).unwrap_or(false);
        let (decoded, reencoded) = match (c2s, first) {
            (true, true) => {
                let r = ConnectRequest::from_bytes(&bytes).unwrap();
                (format!("{r:?}"), r.to_bytes())
            }
            (false, true) => {
                let r = ConnectResponse::from_bytes(&bytes).unwrap();
                (format!("{r:?}"), r.to_bytes())
            }
            (true, false) => {
                let r = RequestFrame::from_bytes(&bytes).unwrap_or_else(|e| panic!("{line}: {e}"));
                ops.insert((conn, r.xid), r.request.op_code());
                *seen_ops.entry(r.request.op_code()).or_default() += 1;
                (format!("{r:?}"), r.to_bytes())
            }
            (false, false) => {
                let r = ReplyFrame::from_bytes(&bytes, |xid| ops.get(&(conn, xid)).copied())
                    .unwrap_or_else(|e| panic!("{line}: {e}"));
                (format!("{r:?}"), r.to_bytes())
            }
        };
        assert_eq!(reencoded, bytes, "frame does not re-encode identically: {line}");
        writeln!(out, "{conn} {} {decoded}", if c2s { "c2s" } else { "s2c" }).unwrap();
        count += 1;
    }
    assert!(count >= 100, "only {count} golden frames");
    // Both clients are present and the capture exercised a broad set of opcodes.
    assert!(handshake.keys().filter(|(_, c2s)| *c2s).count() >= 2);
    assert!(
        seen_ops.len() >= 15,
        "only {} opcodes in the capture: {seen_ops:?}",
        seen_ops.len()
    );
    insta::assert_snapshot!("golden_frames", out);
}
