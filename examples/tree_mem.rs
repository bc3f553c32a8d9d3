//! What the znode tree alone costs: resident memory per node, and the time to copy it (what a
//! compaction snapshot does on the replica loop), encode and decode it (a restart), for N
//! znodes of 100 bytes under one parent, named as `zraft bench --load create` names them.
//! Encode and decode run five times each (this machine's timings spread by a fifth): the
//! median and the fastest are printed.
//!
//!     cargo run --release --example tree_mem [N]      # default 1,000,000

use std::time::{Duration, Instant};
use zraft::jute::OpCode;
use zraft::tree::acl::open_acl;
use zraft::tree::{snapshot, DataTree, Txn, TxnEntry};

/// Resident memory of this process, MB (Linux).
fn rss_mb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096 / (1 << 20)
}

/// Median and fastest of five runs of `f`.
fn five(f: &mut dyn FnMut()) -> (f64, f64) {
    let mut t: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    (t[2].as_secs_f64() * 1e3, t[0].as_secs_f64() * 1e3)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut tree = DataTree::new();
    let create = |tree: &mut DataTree, path: String| {
        let zxid = tree.last_zxid() + 1;
        tree.apply(&TxnEntry {
            session_id: 1,
            zxid,
            time: zxid,
            txn: Txn::Create {
                op: OpCode::Create,
                path,
                data: Some(vec![7; 100]),
                acl: open_acl(),
                ephemeral_owner: 0,
                parent_cversion: -1,
            },
        });
    };
    create(&mut tree, "/big".into());
    create(&mut tree, "/big/new".into());
    let before = rss_mb();
    for i in 0..n {
        create(&mut tree, format!("/big/new/s{}-{}", i % 64, i / 64));
    }
    let grown = rss_mb() - before;
    println!(
        "{n} znodes: {grown} MB resident ({} bytes a node)",
        grown * (1 << 20) / n.max(1) as u64
    );
    let t = Instant::now();
    let copy = tree.clone();
    println!("copy: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    drop(copy);
    let mut bytes = vec![];
    let (median, fastest) = five(&mut || bytes = snapshot::encode(&tree));
    println!(
        "encode: {median:.0} ms (fastest {fastest:.0}), {} MB",
        bytes.len() >> 20
    );
    let mut back = None;
    let (median, fastest) =
        five(&mut || back = Some(snapshot::decode(&bytes).expect("a snapshot just written decodes")));
    let back = back.expect("decoded");
    println!(
        "decode (checks and digest included): {median:.0} ms (fastest {fastest:.0}), {} nodes",
        back.node_count()
    );
    assert!(back == tree, "the decoded tree differs");
    assert_eq!(back.digest(), tree.digest(), "the decoded tree's digest differs");
}
