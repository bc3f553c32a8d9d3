//! Crash-recovery tests of the WAL on the simulated disk: random workloads crash at random
//! points (losing unsynced writes, tearing and garbling the unsynced tail); recovery must return
//! every fsynced entry intact and nothing that was never written. Persistent bit flips in
//! fsynced data must always be detected; transient read flips are re-read; misdirected writes
//! are detected or harmless, never silently applied. Odd seeds preallocate segments (a spare
//! of zeros made now and then, so that a roll finds one ready or not).
//!
//! Default 1,000 crash points per kind; ZRAFT_CRASH_POINTS=N for more.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use zraft::raft::{ConfState, Entry, EntryKind, HardState, Snapshot, SnapshotMeta};
use zraft::storage::{Faults, SimDisk, Storage, StorageError, WalOptions};

const DIR: &str = "/data";

fn points() -> u64 {
    std::env::var("ZRAFT_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn entry(index: u64, term: u64, rng: &mut ChaCha8Rng) -> Entry {
    let n = rng.gen_range(0..300);
    let data = (0..n)
        .map(|i| (index as u8).wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data,
    }
}

fn opts(preallocate: bool) -> WalOptions {
    WalOptions {
        segment_bytes: 4096,
        preallocate,
        ..WalOptions::default()
    }
}

/// Whether a seed's run preallocates segments.
fn prealloc(seed: u64) -> bool {
    seed % 2 == 1
}

/// The bytes of `path` up to its last non-zero one: a preallocated file's zeros after that are
/// not data.
fn written_len(disk: &SimDisk, path: &str) -> usize {
    let mut d = disk.clone();
    let b = zraft::storage::Disk::read(&mut d, path).unwrap();
    b.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1)
}

/// The model: what storage has durably (after the last successful sync) and what it was
/// asked to write since.
#[derive(Clone, Default)]
struct Model {
    snap_index: u64,
    durable: Vec<Entry>,
    written: Vec<Entry>,
    /// Every entry ever handed to storage: the only things recovery may return beyond the
    /// durable log.
    ever_written: Vec<Entry>,
}

/// Whether a recovered log is the durable log followed only by entries really written.
fn consistent(m: &Model, rec: &zraft::raft::Recovered) -> bool {
    let si = rec.snapshot.meta.index;
    let durable: Vec<&Entry> = m.durable.iter().filter(|e| e.index > si).collect();
    let got: Vec<&Entry> = rec.entries.iter().filter(|e| e.index > si).collect();
    got.len() >= durable.len()
        && got[..durable.len()] == durable[..]
        && got[durable.len()..].iter().all(|e| m.ever_written.contains(e))
}

/// Whether a recovered log is a prefix of a consistent one (a cut-off tail).
fn prefix_consistent(m: &Model, rec: &zraft::raft::Recovered) -> bool {
    let si = rec.snapshot.meta.index;
    rec.entries
        .iter()
        .filter(|e| e.index > si)
        .all(|e| m.ever_written.contains(e))
}

struct Outcome {
    synced_entries: usize,
}

/// Runs a random workload and crashes at a random step. Returns the model at the crash.
fn workload(seed: u64, disk: &SimDisk, faults: Faults) -> (Model, Outcome) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pre = prealloc(seed);
    let (mut st, _, _) = Storage::open(disk.clone(), DIR, ConfState::voters([1, 2, 3]), opts(pre)).unwrap();
    // I/O errors make a sync fail after its write reached the disk: unsynced bytes on the
    // platter at the crash, which the torn-write model then tears and garbles.
    disk.set_faults(faults);
    let mut m = Model::default();
    let mut term = 1;
    let steps = rng.gen_range(1..60);
    let mut synced_entries = 0;
    let trace = std::env::var("ZRAFT_STORAGE_TRACE").is_ok();
    for _ in 0..steps {
        // The spare is made beside the log now and then (as the WAL stage does after a
        // batch), so a roll finds one ready or not; a failed one is never retried.
        if pre && rng.gen_bool(0.3) {
            if let Some(job) = st.spare_job() {
                let mut side = zraft::storage::Disk::detached(disk).expect("a second handle");
                let _ = job.run(&mut *side);
            }
        }
        if trace {
            eprintln!(
                "written {:?} durable {:?} snap {}",
                m.written.last().map(|e| e.index),
                m.durable.last().map(|e| e.index),
                m.snap_index
            );
        }
        match rng.gen_range(0..10) {
            0..=5 => {
                let n = rng.gen_range(1..8);
                let mut from = m.written.last().map_or(m.snap_index, |e| e.index) + 1;
                // Sometimes a new leader overwrites an uncommitted suffix.
                if rng.gen_bool(0.1) && from > m.snap_index + 2 {
                    let back = rng.gen_range(1..(from - m.snap_index).min(6));
                    from -= back;
                    term += 1;
                }
                let es: Vec<Entry> = (from..from + n).map(|i| entry(i, term, &mut rng)).collect();
                // The truncation is intended from the moment it is asked for (a new leader's
                // log wins), even if the append then fails part-way.
                m.durable.retain(|e| e.index < from);
                m.ever_written.extend(es.iter().cloned());
                if let Err(e) = st.append(&es) {
                    if trace {
                        eprintln!("append {from}.. failed: {e}");
                    }
                    break;
                }
                if trace {
                    eprintln!("append {from}..{}", from + n);
                }
                // Truncating a conflicting suffix is immediate and durable.
                m.written.retain(|e| e.index < from);
                m.durable.retain(|e| e.index < from);
                m.written.extend(es);
                if rng.gen_bool(0.5) {
                    let hs = HardState {
                        term,
                        vote: 1,
                        commit: m.written.last().unwrap().index.saturating_sub(3).max(m.snap_index),
                    };
                    st.set_hard_state(hs);
                }
            }
            6..=8 => {
                if st.sync().is_ok() {
                    m.durable = m.written.clone();
                    synced_entries += m.durable.len();
                } else {
                    if trace {
                        eprintln!("sync failed");
                    }
                    break;
                }
            }
            _ => {
                // Compact up to a durable index.
                if let Some(e) = m.durable.get(m.durable.len() / 2) {
                    let idx = e.index;
                    let snap = Snapshot {
                        meta: SnapshotMeta {
                            index: idx,
                            term: e.term,
                            conf: ConfState::voters([1, 2, 3]),
                        },
                        data: vec![7; 100],
                    };
                    if st.save_snapshot(&snap).is_ok() {
                        // save_snapshot syncs pending writes first.
                        m.durable = m.written.clone();
                        m.snap_index = idx;
                        m.durable.retain(|e| e.index > idx);
                        m.written.retain(|e| e.index > idx);
                    } else {
                        break;
                    }
                }
            }
        }
    }
    (m, Outcome { synced_entries })
}

#[test]
fn crashes_lose_only_unsynced_writes() {
    let n = points();
    let (mut recovered_total, mut torn, mut synced_total) = (0usize, 0usize, 0usize);
    // Runs whose crash found a segment made from a spare (zeros after its records), and
    // whose recovery then cut a torn tail in one.
    let (mut preallocated, mut torn_preallocated) = (0usize, 0usize);
    for seed in 0..n {
        let disk = SimDisk::new(seed, Faults::default());
        let crash_faults = Faults {
            io_error: 0.02,
            torn: true,
            garble_unsynced: true,
            ..Default::default()
        };
        let (m, out) = workload(seed, &disk, crash_faults);
        synced_total += out.synced_entries;
        // Looked at without faults (no draw: the crash below tears the same way).
        disk.set_faults(Faults::default());
        let mut d = disk.clone();
        let zero_filled = zraft::storage::Disk::list(&mut d, DIR)
            .unwrap()
            .iter()
            .filter(|f| f.ends_with(".log"))
            .any(|f| {
                let path = format!("{DIR}/{f}");
                disk.file_len(&path).unwrap() > written_len(&disk, &path)
            });
        preallocated += usize::from(zero_filled);
        disk.set_faults(crash_faults);
        disk.crash();
        disk.set_faults(Faults::default());
        let (_, rec, report) = Storage::open(disk.clone(), DIR, ConfState::voters([1, 2, 3]), opts(prealloc(seed)))
            .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
        if report.truncated.is_some() {
            torn += 1;
            torn_preallocated += usize::from(zero_filled);
        }
        // Recovered = durable entries, possibly followed by a prefix of the unsynced ones.
        let got: Vec<Entry> = rec.entries.iter().filter(|e| e.index > m.snap_index).cloned().collect();
        assert!(
            rec.snapshot.meta.index >= m.snap_index,
            "seed {seed}: snapshot went back"
        );
        let durable: Vec<&Entry> = m.durable.iter().filter(|e| e.index > rec.snapshot.meta.index).collect();
        let got_ref: Vec<&Entry> = got.iter().filter(|e| e.index > rec.snapshot.meta.index).collect();
        assert!(
            got_ref.len() >= durable.len(),
            "seed {seed}: lost fsynced entries ({} < {}): got {:?} want {:?} report {report:?}",
            got_ref.len(),
            durable.len(),
            got_ref.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
            durable.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>()
        );
        assert!(
            got_ref[..durable.len()] == durable[..],
            "seed {seed}: fsynced entries differ"
        );
        for e in &got_ref[durable.len()..] {
            assert!(
                m.ever_written.contains(e),
                "seed {seed}: recovered an entry that was never written: {}",
                e.index
            );
        }
        assert!(rec.hard_state.commit <= rec.entries.last().map_or(rec.snapshot.meta.index, |e| e.index));
        recovered_total += got.len();
    }
    eprintln!("crash points: {n}, fsynced entries over all runs {synced_total}, recovered entries {recovered_total}, torn tails cut {torn} ({torn_preallocated} of them in runs with a preallocated segment, of {preallocated}); 0 fsynced entries lost");
    assert!(torn > n as usize / 20, "torn tails should be common: {torn}");
    assert!(
        torn_preallocated > n as usize / 100,
        "torn writes into preallocated segments should happen: {torn_preallocated} of {preallocated}"
    );
}

#[test]
fn persistent_bit_flips_in_synced_data_are_always_detected() {
    let n = points();
    let mut detected = 0;
    let mut harmless = 0;
    let mut tail_reported = 0;
    for seed in 0..n {
        let disk = SimDisk::new(seed, Faults::default());
        let (m, _) = workload(seed, &disk, Faults::default());
        disk.set_faults(Faults::default());
        // Make everything durable, then damage one bit of a WAL segment or the snapshot.
        let (mut st, _, _) =
            Storage::open(disk.clone(), DIR, ConfState::voters([1, 2, 3]), opts(prealloc(seed))).unwrap();
        st.sync().unwrap();
        drop(st);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xf11f);
        let mut d = disk.clone();
        // Data only: not the spare segment, nor the zeros after a preallocated one's records.
        let files: Vec<String> = zraft::storage::Disk::list(&mut d, DIR)
            .unwrap()
            .into_iter()
            .filter(|f| f != "wal-spare")
            .collect();
        let f = &files[rng.gen_range(0..files.len())];
        let path = format!("{DIR}/{f}");
        let len = written_len(&disk, &path);
        if len == 0 {
            continue;
        }
        assert!(disk.corrupt(&path, rng.gen_range(0..len), rng.gen_range(0..8)));
        match Storage::open(disk.clone(), DIR, ConfState::voters([1, 2, 3]), opts(prealloc(seed))) {
            Err(
                StorageError::Corrupt { .. }
                | StorageError::BadMagic { .. }
                | StorageError::UnsupportedVersion { .. }
                | StorageError::Gap { .. },
            ) => detected += 1,
            Err(e) => panic!("seed {seed}: unexpected error {e}"),
            Ok((_, rec, report)) => {
                // Only acceptable if the flip hit the unacknowledged tail region and was cut
                // off as torn, or the recovered log is exactly the durable one.
                if !consistent(&m, &rec) {
                    // Damage inside the last batch cannot be told from a torn write; it must at
                    // least be reported (the tail was cut), never pass as a clean log, and what
                    // remains must be a prefix of the real log.
                    assert!(
                        report.truncated.is_some(),
                        "seed {seed}: a flip in {path} changed the recovered log silently ({report:?})"
                    );
                    assert!(
                        prefix_consistent(&m, &rec),
                        "seed {seed}: recovered log is not a prefix of the real one"
                    );
                    tail_reported += 1;
                } else {
                    harmless += 1;
                }
            }
        }
    }
    eprintln!(
        "bit flips: {n} injected into fsynced files: {detected} refused as corruption, {tail_reported} in the last batch cut and reported as a damaged tail, {harmless} with the recovered log identical"
    );
    assert!(detected as u64 >= n * 3 / 4);
}

#[test]
fn transient_read_flips_are_reread() {
    let n = points() / 4;
    let mut rereads = 0;
    for seed in 0..n {
        let disk = SimDisk::new(seed, Faults::default());
        let (m, _) = workload(seed, &disk, Faults::default());
        disk.set_faults(Faults::default());
        let (mut st, _, _) =
            Storage::open(disk.clone(), DIR, ConfState::voters([1, 2, 3]), opts(prealloc(seed))).unwrap();
        st.sync().unwrap();
        drop(st);
        disk.set_faults(Faults {
            read_flip: 0.1,
            ..Default::default()
        });
        match Storage::open(disk.clone(), DIR, ConfState::voters([1, 2, 3]), opts(prealloc(seed))) {
            Ok((_, rec, report)) => {
                rereads += report.reread;
                assert!(consistent(&m, &rec), "seed {seed}: recovered log differs ({report:?})");
            }
            // Three flips in a row on the same file: reported, never applied.
            Err(StorageError::Corrupt { .. } | StorageError::BadMagic { .. }) => {}
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    eprintln!("transient read flips: {n} recoveries at a 10% flip rate, {rereads} re-reads, recovered logs identical");
    assert!(rereads > 0);
}

#[test]
fn misdirected_writes_are_detected_or_harmless() {
    let n = points() / 2;
    let (mut detected, mut ok) = (0, 0);
    for seed in 0..n {
        let disk = SimDisk::new(seed, Faults::default());
        let (m, _) = workload(
            seed,
            &disk,
            Faults {
                misdirect: 0.05,
                ..Default::default()
            },
        );
        disk.set_faults(Faults::default());
        match Storage::open(disk.clone(), DIR, ConfState::voters([1, 2, 3]), opts(prealloc(seed))) {
            Ok((_, rec, report)) => {
                // Whatever was recovered must be entries that were really written, in order.
                for e in &rec.entries {
                    assert!(
                        m.ever_written.contains(e),
                        "seed {seed}: recovered a corrupted entry {}",
                        e.index
                    );
                }
                // And fsynced entries are all there, unless the damage hit the last batch,
                // which cannot be told from a torn write: then it is reported.
                assert!(
                    consistent(&m, &rec) || report.truncated.is_some(),
                    "seed {seed}: fsynced entries lost silently ({report:?}): durable {:?}, recovered {:?}",
                    m.durable.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(),
                    rec.entries.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>()
                );
                ok += 1;
            }
            Err(_) => detected += 1,
        }
    }
    eprintln!("misdirected writes: {n} runs, {detected} detected at recovery, {ok} recovered only genuine entries, every fsynced one among them (or a cut tail reported)");
}

#[test]
fn unknown_format_version_is_refused() {
    let pre = false;
    let disk = SimDisk::new(1, Faults::default());
    let (mut st, _, _) = Storage::open(disk.clone(), DIR, ConfState::voters([1]), opts(pre)).unwrap();
    st.append(&[Entry {
        term: 1,
        index: 1,
        kind: EntryKind::Normal,
        data: vec![1].into(),
    }])
    .unwrap();
    st.sync().unwrap();
    drop(st);
    let mut d = disk.clone();
    let seg = zraft::storage::Disk::list(&mut d, DIR)
        .unwrap()
        .into_iter()
        .find(|f| f.starts_with("wal-"))
        .unwrap();
    let path = format!("{DIR}/{seg}");
    // Version 2 with a valid header checksum.
    let mut bytes = zraft::storage::Disk::read(&mut d, &path).unwrap();
    bytes[4..8].copy_from_slice(&2u32.to_be_bytes());
    let c = crc32c::crc32c(&bytes[..20]);
    bytes[20..24].copy_from_slice(&c.to_be_bytes());
    zraft::storage::Disk::write_at(&mut d, &path, 0, &bytes).unwrap();
    match Storage::open(disk, DIR, ConfState::voters([1]), opts(pre)) {
        Err(StorageError::UnsupportedVersion { version: 2, .. }) => {}
        other => panic!("expected UnsupportedVersion, got {:?}", other.map(|_| ())),
    }
}

/// A compaction snapshot written beside the log through a second disk handle (so that appends
/// go on meanwhile) and adopted afterwards: a crash before adoption recovers from it all the
/// same (the newest snapshot file wins, the log still leads up to it); adopted, it compacts
/// the log; an older one adopted late is refused; the current one reads back.
#[test]
fn snapshots_written_beside_the_log() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let conf = ConfState::voters([1, 2, 3]);
    let snap = |index: u64, fill: u8| Snapshot {
        meta: SnapshotMeta {
            index,
            term: 1,
            conf: ConfState::voters([1, 2, 3]),
        },
        data: vec![fill; 300],
    };
    for (adopt, pre) in [(false, false), (true, false), (false, true), (true, true)] {
        let disk = SimDisk::new(1, Faults::default());
        let (mut st, _, _) = Storage::open(disk.clone(), DIR, conf.clone(), opts(pre)).unwrap();
        let es: Vec<Entry> = (1..=60).map(|i| entry(i, 1, &mut rng)).collect();
        st.append(&es[..40]).unwrap();
        st.sync().unwrap();
        let mut side = zraft::storage::Disk::detached(&disk).expect("the simulated disk has a second handle");
        zraft::storage::write_snapshot(&mut *side, DIR, &snap(30, 3), "snap-30.tmp").unwrap();
        // Appends went on meanwhile, unsynced: a crash may lose them, nothing else.
        st.append(&es[40..]).unwrap();
        if adopt {
            assert!(st.adopt_snapshot(&snap(30, 3).meta).unwrap());
            assert_eq!(st.load_snapshot().unwrap(), snap(30, 3));
            // A snapshot older than the current one is not taken.
            zraft::storage::write_snapshot(&mut *side, DIR, &snap(20, 2), "snap-20.tmp").unwrap();
            assert!(!st.adopt_snapshot(&snap(20, 2).meta).unwrap());
            assert_eq!(st.load_snapshot().unwrap(), snap(30, 3));
            let garbage = st.take_garbage();
            st.delete(garbage).unwrap();
        }
        disk.crash();
        let (mut st, rec, _) = Storage::open(disk.clone(), DIR, conf.clone(), opts(pre)).unwrap();
        assert_eq!(rec.snapshot, snap(30, 3), "adopted: {adopt}, preallocated: {pre}");
        let got: Vec<u64> = rec.entries.iter().map(|e| e.index).collect();
        assert_eq!(got.first(), Some(&31), "adopted: {adopt}");
        assert!(got.len() >= 10 && got.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(rec.entries[..10], es[30..40]);
        assert_eq!(st.load_snapshot().unwrap(), snap(30, 3));
    }
}

/// Replica repair's storage half: damage in synced data is reported as damage (not a disk
/// failure), `quarantine` moves every file aside and marks the directory, which then opens as
/// a fresh replica's until `rebuilt` drops the mark (durably: a crash before keeps it).
#[test]
fn damaged_storage_is_moved_aside_and_marked_until_rebuilt() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let conf = ConfState::voters([1, 2, 3]);
    let pre = false;
    let disk = SimDisk::new(3, Faults::default());
    let (mut st, _, _) = Storage::open(disk.clone(), DIR, conf.clone(), opts(pre)).unwrap();
    let es: Vec<Entry> = (1..=30).map(|i| entry(i, 1, &mut rng)).collect();
    for chunk in es.chunks(5) {
        st.append(chunk).unwrap();
        st.sync().unwrap();
    }
    let mut side = zraft::storage::Disk::detached(&disk).unwrap();
    let files = side.list(DIR).unwrap();
    let seg = format!("{DIR}/{}", files.iter().find(|f| f.starts_with("wal-")).unwrap());
    let len = disk.file_len(&seg).unwrap();
    assert!(disk.corrupt(&seg, len / 2, 3));
    disk.crash();
    let err = Storage::open(disk.clone(), DIR, conf.clone(), opts(pre))
        .err()
        .expect("damage found");
    assert!(err.is_damage(), "{err}");
    let moved = zraft::storage::quarantine(&mut *side, DIR).unwrap();
    assert_eq!(moved, format!("{DIR}.damaged-1"));
    let mut kept = side.list(&moved).unwrap();
    kept.sort();
    let mut before = files.clone();
    before.sort();
    assert_eq!(kept, before, "every file kept for a person to look at");
    disk.crash();
    let (mut st, rec, _) = Storage::open(disk.clone(), DIR, conf.clone(), opts(pre)).unwrap();
    assert!(
        rec.entries.is_empty() && rec.hard_state.term == 0,
        "a fresh replica's state"
    );
    assert!(st.rebuilding().unwrap(), "marked, across the crash");
    st.rebuilt().unwrap();
    disk.crash();
    let (mut st, _, _) = Storage::open(disk.clone(), DIR, conf, opts(pre)).unwrap();
    assert!(!st.rebuilding().unwrap());
    // A second repair takes the next name.
    assert_eq!(
        zraft::storage::quarantine(&mut *side, DIR).unwrap(),
        format!("{DIR}.damaged-2")
    );
}
