//! WAL throughput benchmark: `cargo bench --bench wal` (ZRAFT_BENCH_SECS per phase, default 3;
//! ZRAFT_BENCH_DIR for the directory, default target/wal-bench — keep it on the disk you care
//! about). Prints, in one run on one disk: raw 4 KiB write+fdatasync per second, and WAL
//! entries per second with 1, 8 and 64 concurrent proposers of 1 KiB entries, where a single
//! writer applies group commit: everything queued while an fsync runs goes into the next one.

use std::time::{Duration, Instant};
use zraft::raft::{ConfState, Entry, EntryKind};
use zraft::storage::{Disk, RealDisk, Storage, WalOptions};

fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("ZRAFT_BENCH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3.0),
    )
}

fn raw_fsync(dir: &str) -> f64 {
    let mut disk = RealDisk::new();
    let path = format!("{dir}/raw.dat");
    let _ = disk.remove(&path);
    let block = vec![0xabu8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < secs() {
        disk.append(&path, &block).unwrap();
        disk.sync(&path).unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct Req {
    data: Vec<u8>,
    done: tokio::sync::oneshot::Sender<u64>,
}

fn wal(dir: &str, proposers: usize) -> (f64, f64, f64) {
    let path = format!("{dir}/wal-{proposers}");
    let _ = std::fs::remove_dir_all(&path);
    let (mut st, _, _) = Storage::open(RealDisk::new(), &path, ConfState::voters([1]), WalOptions::default()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Req>();
    let deadline = Instant::now() + secs();
    // The writer (the storage thread): take one request (waiting), then everything else
    // already queued; one fsync for the lot.
    let writer = std::thread::spawn(move || {
        let mut next = 1u64;
        let (mut fsyncs, mut entries) = (0u64, 0u64);
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            // Gather the burst: proposers acked by the last fsync are re-proposing right now.
            // Keep draining until a couple of yields bring nothing new.
            let mut idle = 0;
            while idle < 3 {
                let before = batch.len();
                while let Ok(r) = rx.try_recv() {
                    batch.push(r);
                }
                if batch.len() == before {
                    idle += 1;
                    std::thread::yield_now();
                } else {
                    idle = 0;
                }
            }
            let mut acks = Vec::with_capacity(batch.len());
            let es: Vec<Entry> = batch
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    acks.push(r.done);
                    Entry {
                        term: 1,
                        index: next + i as u64,
                        kind: EntryKind::Normal,
                        data: r.data.into(),
                    }
                })
                .collect();
            st.append(&es).unwrap();
            st.sync().unwrap();
            fsyncs += 1;
            entries += es.len() as u64;
            for (i, done) in acks.into_iter().enumerate() {
                let _ = done.send(next + i as u64);
            }
            next += es.len() as u64;
        }
        (fsyncs, entries)
    });
    let start = Instant::now();
    // Proposers are async tasks, as client connections are in the server.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let acked: u64 = rt.block_on(async move {
        let workers: Vec<_> = (0..proposers)
            .map(|_| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let (dtx, drx) = tokio::sync::oneshot::channel();
                        tx.send(Req {
                            data: vec![0x5a; 1024],
                            done: dtx,
                        })
                        .unwrap();
                        drx.await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        drop(tx);
        let mut total = 0;
        for w in workers {
            total += w.await.unwrap();
        }
        total
    });
    let elapsed = start.elapsed().as_secs_f64();
    let (fsyncs, entries) = writer.join().unwrap();
    let _ = std::fs::remove_dir_all(&path);
    (
        acked as f64 / elapsed,
        entries as f64 / fsyncs.max(1) as f64,
        fsyncs as f64 / elapsed,
    )
}

fn main() {
    let dir = std::env::var("ZRAFT_BENCH_DIR").unwrap_or_else(|_| "target/wal-bench".into());
    std::fs::create_dir_all(&dir).unwrap();
    println!("WAL benchmark in {dir}, {:.1} s per phase", secs().as_secs_f64());
    // The disk's speed drifts; measure the raw rate before and after and use the mean.
    let raw_before = raw_fsync(&dir);
    println!("raw 4 KiB write+fdatasync (before): {raw_before:>10.0} /s");
    let results: Vec<(usize, (f64, f64, f64))> = [1usize, 8, 64].into_iter().map(|p| (p, wal(&dir, p))).collect();
    let raw_after = raw_fsync(&dir);
    println!("raw 4 KiB write+fdatasync (after):  {raw_after:>10.0} /s");
    let raw = (raw_before + raw_after) / 2.0;
    let mut at64 = 0.0;
    for (p, (eps, batch, fsyncs)) in results {
        println!(
            "WAL 1 KiB entries, {p:>2} proposers: {eps:>10.0} entries/s  ({:.1}x raw fsync; {fsyncs:.0} fsyncs/s, {batch:.1} entries per fsync)",
            eps / raw
        );
        at64 = eps;
    }
    let ratio = at64 / raw;
    println!(
        "target: 64 proposers >= 20x raw fsync rate: {ratio:.1}x -> {}",
        if ratio >= 20.0 { "met" } else { "NOT met" }
    );
    let _ = std::fs::remove_file(format!("{dir}/raw.dat"));
}
