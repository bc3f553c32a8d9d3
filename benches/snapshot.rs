//! Snapshot benchmark: `cargo bench --bench snapshot` (ZRAFT_BENCH_ZNODES, default 1,000,000).
//! Builds a tree shaped like `scripts/bench_vs_zk.py --big`'s load (one parent, N children of
//! 100 bytes), then times encoding and decoding its snapshot, which bound a restart with a big
//! tree. Prints the median and fastest of five rounds of each.

use std::time::{Duration, Instant};
use zraft::jute::OpCode;
use zraft::tree::acl::open_acl;
use zraft::tree::snapshot;
use zraft::tree::{DataTree, Txn, TxnEntry};

fn rounds(f: &mut dyn FnMut()) -> (Duration, Duration) {
    let mut t: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    (t[2], t[0])
}

fn main() {
    let n: usize = std::env::var("ZRAFT_BENCH_ZNODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut tree = DataTree::new();
    let mut zxid = 0;
    let mut create = |tree: &mut DataTree, path: String, data: Vec<u8>| {
        zxid += 1;
        tree.apply(&TxnEntry {
            session_id: 1,
            zxid,
            time: 1_700_000_000_000 + zxid,
            txn: Txn::Create {
                op: OpCode::Create,
                path,
                data: Some(data),
                acl: open_acl(),
                ephemeral_owner: 0,
                parent_cversion: -1,
            },
        });
    };
    create(&mut tree, "/big".into(), vec![]);
    create(&mut tree, "/big/new".into(), vec![]);
    for i in 0..n {
        create(
            &mut tree,
            format!("/big/new/s{}-{}", i % 64, i / 64),
            vec![(i % 251) as u8; 100],
        );
    }
    let mut bytes = vec![];
    let (enc, enc_min) = rounds(&mut || bytes = snapshot::encode(&tree));
    let mut back = None;
    let (dec, dec_min) = rounds(&mut || back = Some(snapshot::decode(&bytes).expect("decodes")));
    let back = back.expect("decoded");
    assert_eq!(back.node_count(), tree.node_count());
    assert_eq!(back.digest(), tree.digest(), "the decoded tree is the encoded one");
    println!(
        "snapshot of {} znodes, {:.1} MB: encode {:.0} ms (fastest {:.0}), decode {:.0} ms (fastest {:.0})",
        tree.node_count(),
        bytes.len() as f64 / 1e6,
        enc.as_secs_f64() * 1e3,
        enc_min.as_secs_f64() * 1e3,
        dec.as_secs_f64() * 1e3,
        dec_min.as_secs_f64() * 1e3,
    );
}
