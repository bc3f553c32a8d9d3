//! Raft storage on a `Disk`: a write-ahead log of entries and hard states in checksummed
//! segments, plus snapshot files, with crash recovery.
//!
//! Segment `wal-<first index>.log`: a 24-byte header (magic `ZRWL`, version, first index,
//! reserved, CRC32C of the header), then records `[len u32][crc32c u32][type u8][payload]`
//! with the CRC over type and payload. Each batch written by `sync` opens with a `Mark`
//! record holding the offset up to which the segment was already fsynced, so recovery can
//! tell a torn tail (damage after the last mark: never acknowledged, truncated) from
//! corruption of acknowledged data (damage before it: a typed error naming file and offset).
//!
//! Segments may be preallocated (`WalOptions::preallocate`): a spare file of zeros, written
//! and fsynced off the write path (`SpareJob`), becomes the next segment by a rename. An
//! fdatasync then never has to make a new file length durable (measured on this VM: 4 KiB
//! write+fdatasync 9-10k/s appending, 11-12k/s into zeros; etcd and ZooKeeper preallocate
//! for the same reason). Such a segment's header holds its preallocated length (in the field
//! that is otherwise zero), and recovery reads zeros from a record boundary to the end of a
//! file of exactly that length as its unused end. Anywhere else zeros are damage like any
//! other (a record header of zeros cannot checksum): a segment cut shorter (a conflicting
//! suffix truncated, a torn tail cut) keeps reporting a lost batch that left zeros.
//!
//! Snapshot `snap-<index>.snap`: magic `ZRSP`, version, bincode meta and data, CRC32C;
//! written to a temp file, fsynced, renamed, and the directory fsynced.

use super::disk::{Disk, DiskError};
use super::index::LogIndex;
use crate::raft::{ConfState, Entry, HardState, Recovered, Snapshot, SnapshotMeta};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use thiserror::Error;

const WAL_MAGIC: &[u8; 4] = b"ZRWL";
const SNAP_MAGIC: &[u8; 4] = b"ZRSP";
/// The storage format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const RECORD_HEAD: usize = 9;
/// The zero-filled file that becomes the next segment (not a segment: no `.log`).
const SPARE: &str = "wal-spare";
/// The spare while it is written (a `.tmp`, removed at open like any other).
const SPARE_TMP: &str = "wal-spare.tmp";
/// `Storage::spare` states.
const SPARE_NONE: u8 = 0;
const SPARE_MAKING: u8 = 1;
const SPARE_READY: u8 = 2;
const SPARE_FAILED: u8 = 3;

/// Why storage could not be opened or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorageError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("{file}: corrupt record at offset {offset}: {what}")]
    Corrupt { file: String, offset: u64, what: String },
    #[error("{file}: format version {version} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion { file: String, version: u32 },
    #[error("{file}: not a zraft file (bad magic)")]
    BadMagic { file: String },
    #[error("log has a gap: expected index {expected}, found {found} in {file}")]
    Gap { file: String, expected: u64, found: u64 },
}

/// Result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Record {
    /// Everything before this offset in this segment was fsynced when the batch began.
    Mark(u64),
    Entry(Entry),
    HardState(HardState),
}

/// A `Record` to encode, borrowing its entry (same variants in the same order, so the same
/// bytes): the write path does not copy an entry to log it.
#[derive(Serialize)]
enum RecordRef<'a> {
    Mark(u64),
    Entry(&'a Entry),
    HardState(HardState),
}

/// What recovery did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub entries: usize,
    /// (file, offset) of a torn tail that was cut off.
    pub truncated: Option<(String, u64)>,
    /// The cut-off tail held a complete record with a bad checksum: a torn write that
    /// garbled it, or damage to the last batch (indistinguishable; worth an operator's look).
    pub damaged_tail: bool,
    /// Reads that failed their checksum once and passed on re-read.
    pub reread: u64,
}

struct Segment {
    first_index: u64,
    path: String,
    len: u64,
    /// Made from a spare (its header states the length).
    preallocated: bool,
}

/// Tunables.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// Start a new segment once the current one exceeds this.
    pub segment_bytes: u64,
    /// Leave the files a compaction makes obsolete for `take_garbage` (the caller deletes
    /// them off the write path) instead of deleting them inside `save_snapshot`.
    pub defer_deletes: bool,
    /// Start each new segment from a spare file of `segment_bytes` zeros when one is ready
    /// (`spare_job` makes it).
    pub preallocate: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            defer_deletes: false,
            preallocate: false,
        }
    }
}

/// Durable Raft state on a disk.
pub struct Storage<D: Disk> {
    disk: D,
    dir: String,
    opts: WalOptions,
    segments: Vec<Segment>,
    /// Offset in its segment and term of each entry after the snapshot.
    index: LogIndex,
    last_index: u64,
    hard_state: HardState,
    snapshot: SnapshotMeta,
    /// The next batch for the current segment: a `Mark` record first, then what was buffered
    /// (so entries' offsets are final when buffered, and the batch is written as it is).
    pending: Vec<u8>,
    synced_len: u64,
    /// Files a compaction made obsolete (old segments, old snapshots), not yet deleted:
    /// recovery ignores them (entries at or below the snapshot are skipped, the newest
    /// snapshot wins), so deleting them can wait and happen off the write path.
    garbage: Vec<String>,
    /// Whether the spare segment is absent, being made, ready or failed (`SPARE_*`), shared
    /// with the `SpareJob` making it.
    spare: Arc<AtomicU8>,
    /// Segments started since open, and how many of them from a spare.
    rolls: (u64, u64),
}

/// What a spare segment is written from, a MiB at a time: zeroed by the loader, where a
/// fresh buffer was zeroed (and freed) for every spare.
static SPARE_ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// Writes the spare segment: `size` zeros, fsynced, then renamed into place (so a spare that
/// exists is whole). Runs wherever it may block, through a disk handle of its own.
#[must_use = "a spare job does nothing until run"]
pub struct SpareJob {
    dir: String,
    size: u64,
    state: Arc<AtomicU8>,
    pace: std::time::Duration,
}

impl SpareJob {
    /// Sleeps `pace` after each MiB written (on a thread where that is allowed): zeros
    /// written flat out made the log's own fsyncs wait behind them (one node, 64 sessions of
    /// 1 KiB writes: p99 3.1-3.5 ms against 2.6-2.8 without preallocation; 2.7-3.0 paced at
    /// 5 ms per MiB).
    pub fn paced(mut self, pace: std::time::Duration) -> Self {
        self.pace = pace;
        self
    }

    /// Makes the spare; on failure it is not tried again (segments then grow as written).
    pub fn run<D: Disk + ?Sized>(self, disk: &mut D) -> StorageResult<()> {
        let tmp = format!("{}/{SPARE_TMP}", self.dir);
        let made = (|| -> StorageResult<()> {
            let zeros = &SPARE_ZEROS[..];
            let mut off = 0;
            while off < self.size {
                let n = (self.size - off).min(zeros.len() as u64);
                disk.write_at(&tmp, off, &zeros[..n as usize])?;
                // Trickled out piece by piece, as snapshots are: a 64 MiB burst of dirty
                // pages would stall the log's own fsyncs.
                disk.write_behind(&tmp, off, n)?;
                off += n;
                if !self.pace.is_zero() {
                    std::thread::sleep(self.pace);
                }
            }
            disk.sync(&tmp)?;
            disk.rename(&tmp, &format!("{}/{SPARE}", self.dir))?;
            disk.sync_dir(&self.dir)?;
            Ok(())
        })();
        match made {
            Ok(()) => self.state.store(SPARE_READY, Ordering::Release),
            Err(_) => {
                let _ = disk.remove(&tmp);
                self.state.store(SPARE_FAILED, Ordering::Release);
            }
        }
        made
    }
}

/// The length of a spare segment (a segment's header states it in 32 bits; 0: too long).
fn spare_len(opts: &WalOptions) -> u32 {
    u32::try_from(opts.segment_bytes).unwrap_or(0)
}

/// Whether every byte of `b` is zero (OR-folded in blocks, which vectorizes).
fn all_zero(b: &[u8]) -> bool {
    b.chunks(4096).all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0)
}

impl StorageError {
    /// Whether the files are damaged (a checksum, structure or sequence failed), as opposed
    /// to the disk failing or the files being from another version: a replica of an ensemble
    /// can rebuild them from its peers.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StorageError::Corrupt { .. } | StorageError::BadMagic { .. } | StorageError::Gap { .. }
        )
    }
}

/// Marks a replica being rebuilt from its peers (durable: a restart meanwhile must not make it
/// a fresh node that votes).
pub const REBUILDING: &str = "REBUILDING";

/// Moves every file of `dir` into a new sibling `<dir>.damaged-<n>` (kept for a person to look
/// at; nothing reads it again) and syncs both: `dir` then holds only the `REBUILDING` mark.
/// Returns the sibling's path.
pub fn quarantine<D: Disk + ?Sized>(disk: &mut D, dir: &str) -> StorageResult<String> {
    // A name that holds no file yet (a missing directory lists as an error).
    let n = (1..)
        .find(|n| disk.list(&format!("{dir}.damaged-{n}")).map_or(true, |f| f.is_empty()))
        .expect("a free name");
    let to = format!("{dir}.damaged-{n}");
    disk.create_dir(&to)?;
    for f in disk.list(dir)? {
        disk.rename(&format!("{dir}/{f}"), &format!("{to}/{f}"))?;
    }
    disk.sync_dir(&to)?;
    let mark = format!("{dir}/{REBUILDING}");
    disk.append(&mark, b"rebuilding from the ensemble\n")?;
    disk.sync(&mark)?;
    disk.sync_dir(dir)?;
    Ok(to)
}

/// Deletes files of `dir` durably (a file already gone is fine): a compaction's garbage.
pub fn delete_files<D: Disk + ?Sized>(disk: &mut D, dir: &str, paths: Vec<String>) -> StorageResult<()> {
    if paths.is_empty() {
        return Ok(());
    }
    for p in paths {
        match disk.remove(&p) {
            // Another deleter (or a crash's recovery) got there first.
            Ok(()) | Err(DiskError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    disk.sync_dir(dir)?;
    Ok(())
}

fn crc(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

/// Appends `r` as `[len][crc][type][payload]` to `out`, the header filled in after encoding.
fn encode_record_into(r: &RecordRef, out: &mut Vec<u8>) {
    let ty = match r {
        RecordRef::Mark(_) => 0u8,
        RecordRef::Entry(_) => 1,
        RecordRef::HardState(_) => 2,
    };
    let start = out.len();
    out.reserve(64 + if let RecordRef::Entry(e) = r { e.data.len() } else { 0 });
    out.extend_from_slice(&[0u8; 8]);
    out.push(ty);
    bincode::serde::encode_into_std_write(r, out, bincode::config::standard()).expect("records encode");
    let payload_len = (out.len() - start - RECORD_HEAD) as u32;
    let c = crc(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&c.to_be_bytes());
}

/// A segment's header; `preallocated` is the length of the spare it was made from (0: none).
fn segment_header(first_index: u64, preallocated: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(WAL_MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    h.extend_from_slice(&first_index.to_be_bytes());
    h.extend_from_slice(&preallocated.to_be_bytes());
    let c = crc(&h);
    h.extend_from_slice(&c.to_be_bytes());
    h
}

enum Parsed {
    /// The records and where they end (before a preallocated segment's zeros).
    Ok(Vec<(u64, Record)>, u64),
    /// Records before the failure, the failing offset and why.
    Bad(Vec<(u64, Record)>, u64, String),
}

/// Parses a segment's records; `zero_end` says that zeros from a record boundary to the end
/// are the unused end of a preallocated segment (see the module's comment).
fn parse_records(b: &[u8], zero_end: bool) -> Parsed {
    let mut out = Vec::new();
    let mut off = HEADER_LEN;
    while off < b.len() {
        // (A real record's header never is all zeros: its checksum covers its type byte.)
        if zero_end && b[off..(off + RECORD_HEAD).min(b.len())].iter().all(|&x| x == 0) && all_zero(&b[off..]) {
            return Parsed::Ok(out, off as u64);
        }
        if b.len() - off < RECORD_HEAD {
            return Parsed::Bad(out, off as u64, "incomplete record header".into());
        }
        let len = u32::from_be_bytes(b[off..off + 4].try_into().expect("4")) as usize;
        let stored = u32::from_be_bytes(b[off + 4..off + 8].try_into().expect("4"));
        if len > b.len() - off - RECORD_HEAD {
            return Parsed::Bad(out, off as u64, format!("record length {len} runs past the end"));
        }
        let body = &b[off + 8..off + RECORD_HEAD + len];
        if crc(body) != stored {
            return Parsed::Bad(out, off as u64, "checksum mismatch".into());
        }
        match bincode::serde::decode_from_slice::<Record, _>(&body[1..], bincode::config::standard()) {
            Ok((r, used)) if used == len => out.push((off as u64, r)),
            _ => return Parsed::Bad(out, off as u64, "record does not decode".into()),
        }
        off += RECORD_HEAD + len;
    }
    Parsed::Ok(out, b.len() as u64)
}

/// Valid records found by scanning byte by byte after a damaged one (failure path only).
fn scan_after(b: &[u8], from: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let mut off = from + 1;
    while off + RECORD_HEAD <= b.len() {
        if b[off..off + RECORD_HEAD].iter().all(|&x| x == 0) {
            // No record starts in a run of zeros (a preallocated segment's end can be 64 MiB
            // of them): skip to where one could, a header's length before the next non-zero.
            match b[off..].iter().position(|&x| x != 0) {
                Some(p) => off = (off + p).saturating_sub(RECORD_HEAD - 1).max(off + 1),
                None => break,
            }
            continue;
        }
        let len = u32::from_be_bytes(b[off..off + 4].try_into().expect("4")) as usize;
        if len <= b.len() - off - RECORD_HEAD {
            let stored = u32::from_be_bytes(b[off + 4..off + 8].try_into().expect("4"));
            let body = &b[off + 8..off + RECORD_HEAD + len];
            if crc(body) == stored {
                if let Ok((r, used)) =
                    bincode::serde::decode_from_slice::<Record, _>(&body[1..], bincode::config::standard())
                {
                    if used == len {
                        out.push(r);
                        off += RECORD_HEAD + len;
                        continue;
                    }
                }
            }
        }
        off += 1;
    }
    out
}

/// Storage half opened: its snapshot is read and checked, its log not yet (`read_log`), so
/// that a caller can decode the snapshot while the log is read.
pub struct Opening<D: Disk> {
    st: Storage<D>,
    seg_names: Vec<String>,
    report: RecoveryReport,
    fresh: bool,
}

/// What `Opening::read_log` recovered besides the snapshot.
pub struct LogRead<D: Disk> {
    pub storage: Storage<D>,
    pub hard_state: HardState,
    /// Entries after the snapshot.
    pub entries: Vec<Entry>,
    pub report: RecoveryReport,
}

impl<D: Disk> Storage<D> {
    /// Opens (or creates, with `initial` as the first configuration) storage in `dir` and
    /// recovers what it holds.
    pub fn open(
        disk: D,
        dir: &str,
        initial: ConfState,
        opts: WalOptions,
    ) -> StorageResult<(Self, Recovered, RecoveryReport)> {
        let (opening, snapshot) = Self::open_snapshot(disk, dir, initial, opts)?;
        let log = opening.read_log()?;
        let rec = Recovered {
            hard_state: log.hard_state,
            snapshot,
            entries: log.entries,
        };
        Ok((log.storage, rec, log.report))
    }

    /// The first half of `open`: the directory's newest snapshot (or, for a new directory,
    /// the initial one, written), and what reading the log needs.
    pub fn open_snapshot(
        mut disk: D,
        dir: &str,
        initial: ConfState,
        opts: WalOptions,
    ) -> StorageResult<(Opening<D>, Snapshot)> {
        disk.create_dir(dir)?;
        let names = disk.list(dir)?;
        let mut report = RecoveryReport::default();
        // Leftover temp files are from an interrupted snapshot or spare write; a spare left
        // over may be another run's length, or hold a header already (a crash during a roll).
        for n in names.iter().filter(|n| n.ends_with(".tmp") || *n == SPARE) {
            disk.remove(&format!("{dir}/{n}"))?;
        }
        let snap_names: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("snap-") && n.ends_with(".snap"))
            .collect();
        let mut seg_names: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("wal-") && n.ends_with(".log"))
            .collect();
        seg_names.sort();
        let fresh = snap_names.is_empty() && seg_names.is_empty();
        let mut st = Storage {
            disk,
            dir: dir.to_string(),
            opts,
            segments: vec![],
            index: LogIndex::default(),
            last_index: 0,
            hard_state: HardState::default(),
            snapshot: SnapshotMeta::default(),
            pending: vec![],
            synced_len: 0,
            garbage: vec![],
            spare: Arc::new(AtomicU8::new(SPARE_NONE)),
            rolls: (0, 0),
        };
        if fresh {
            let boot = Snapshot {
                meta: SnapshotMeta {
                    index: 0,
                    term: 0,
                    conf: initial,
                },
                data: vec![],
            };
            st.write_snapshot_file(&boot)?;
            st.snapshot = boot.meta.clone();
            st.new_segment(1)?;
            return Ok((
                Opening {
                    st,
                    seg_names: vec![],
                    report,
                    fresh: true,
                },
                boot,
            ));
        }
        // The newest snapshot; a damaged one is an error, never skipped.
        let snapshot = match snap_names.iter().max() {
            Some(n) => st.read_snapshot_file(&format!("{dir}/{n}"), &mut report)?,
            None => Snapshot::default(),
        };
        st.snapshot = snapshot.meta.clone();
        st.last_index = snapshot.meta.index;
        let seg_names = seg_names.into_iter().cloned().collect();
        Ok((
            Opening {
                st,
                seg_names,
                report,
                fresh: false,
            },
            snapshot,
        ))
    }
}

impl<D: Disk> Opening<D> {
    /// The second half of `open`: reads the log segments (cutting a torn tail), and returns
    /// the storage ready for appends.
    pub fn read_log(self) -> StorageResult<LogRead<D>> {
        let Opening {
            mut st,
            seg_names,
            mut report,
            fresh,
        } = self;
        if fresh {
            return Ok(LogRead {
                storage: st,
                hard_state: HardState::default(),
                entries: vec![],
                report,
            });
        }
        let dir = st.dir.clone();
        let dir = dir.as_str();
        let mut entries: Vec<Entry> = Vec::new();
        let n_segs = seg_names.len();
        for (k, name) in seg_names.iter().enumerate() {
            let path = format!("{dir}/{name}");
            let is_last = k + 1 == n_segs;
            let bytes = st.disk.read(&path)?;
            if bytes.len() < HEADER_LEN {
                if is_last {
                    // A segment whose header never became durable: it held nothing acknowledged.
                    st.disk.remove(&path)?;
                    st.disk.sync_dir(dir)?;
                    report.truncated = Some((path, 0));
                    continue;
                }
                return Err(StorageError::Corrupt {
                    file: path,
                    offset: 0,
                    what: "truncated header".into(),
                });
            }
            let (first_index, preallocated) = st.check_header(&path, &bytes, &mut report)?;
            // The length of what parsed whole (the segment is not read again for it: that was a
            // second read of every segment at each start, 67 MB for a million znodes).
            let (records, bad, parsed_len) = st.parse_with_reread(&path, bytes, preallocated, &mut report)?;
            let mut seg_len = None;
            if let Some((off, what)) = bad {
                // Marks before and after the damage say how far the segment was fsynced.
                let bytes = st.disk.read(&path)?;
                let marked = records
                    .iter()
                    .map(|(_, r)| r)
                    .chain(scan_after(&bytes, off as usize).iter())
                    .filter_map(|r| if let Record::Mark(m) = r { Some(*m) } else { None })
                    .max()
                    .unwrap_or(0);
                if !is_last || off < marked {
                    return Err(StorageError::Corrupt {
                        file: path,
                        offset: off,
                        what,
                    });
                }
                // Against the bytes written, not a preallocated segment's length: a torn record
                // followed by zeros is not complete.
                let written = bytes.iter().rposition(|&x| x != 0).map_or(0, |p| p + 1);
                let complete = (off as usize + RECORD_HEAD) <= written && {
                    let len = u32::from_be_bytes(bytes[off as usize..off as usize + 4].try_into().expect("4")) as usize;
                    off as usize + RECORD_HEAD + len <= written
                };
                report.damaged_tail = complete;
                st.disk.truncate(&path, off)?;
                st.disk.sync(&path)?;
                report.truncated = Some((path.clone(), off));
                seg_len = Some(off);
            }
            let len = seg_len.unwrap_or(parsed_len);
            st.segments.push(Segment {
                first_index,
                path: path.clone(),
                len,
                preallocated: preallocated != 0,
            });
            report.segments += 1;
            for (off, r) in records {
                match r {
                    Record::Mark(_) => {}
                    Record::HardState(hs) => st.hard_state = hs,
                    Record::Entry(e) => {
                        if e.index <= st.snapshot.index {
                            continue;
                        }
                        let expected = st.last_index + 1;
                        if e.index != expected {
                            return Err(StorageError::Gap {
                                file: path,
                                expected,
                                found: e.index,
                            });
                        }
                        if e.index < first_index {
                            // The segment's name says where it starts: an entry before that
                            // means the files were mixed up, and offsets would be looked up in
                            // the wrong one.
                            return Err(StorageError::Corrupt {
                                file: path,
                                offset: off,
                                what: format!("entry {} in a segment starting at {first_index}", e.index),
                            });
                        }
                        st.index.push(e.index, off, e.term);
                        st.last_index = e.index;
                        entries.push(e);
                    }
                }
            }
        }
        if st.segments.is_empty() {
            st.new_segment(st.last_index + 1)?;
            st.write_hard_state_now()?;
        }
        st.synced_len = st.segments.last().map_or(0, |s| s.len);
        // Commit can never exceed what survived (entries precede their hard state in a batch).
        st.hard_state.commit = st.hard_state.commit.min(st.last_index).max(st.snapshot.index);
        report.entries = entries.len();
        Ok(LogRead {
            hard_state: st.hard_state,
            storage: st,
            entries,
            report,
        })
    }
}

impl<D: Disk> Storage<D> {
    /// Whether this replica is being rebuilt (`quarantine` marked it).
    pub fn rebuilding(&mut self) -> StorageResult<bool> {
        Ok(self.disk.list(&self.dir)?.iter().any(|n| n == REBUILDING))
    }

    /// The replica is rebuilt: drops the mark (durably; what made that safe is persisted
    /// before, in order).
    pub fn rebuilt(&mut self) -> StorageResult<()> {
        let mark = format!("{}/{REBUILDING}", self.dir);
        match self.disk.remove(&mark) {
            Ok(()) | Err(DiskError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.disk.sync_dir(&self.dir)?;
        Ok(())
    }

    /// Checks a segment's header; returns its first index and preallocated length.
    fn check_header(&mut self, path: &str, b: &[u8], report: &mut RecoveryReport) -> StorageResult<(u64, u64)> {
        let mut b = b.to_vec();
        for attempt in 0..3 {
            if crc(&b[..20]) == u32::from_be_bytes(b[20..24].try_into().expect("4")) {
                break;
            }
            if attempt == 2 {
                return Err(StorageError::Corrupt {
                    file: path.into(),
                    offset: 0,
                    what: "header checksum".into(),
                });
            }
            report.reread += 1;
            b = self.disk.read(path)?;
        }
        if &b[..4] != WAL_MAGIC {
            return Err(StorageError::BadMagic { file: path.into() });
        }
        let version = u32::from_be_bytes(b[4..8].try_into().expect("4"));
        if version != FORMAT_VERSION {
            return Err(StorageError::UnsupportedVersion {
                file: path.into(),
                version,
            });
        }
        Ok((
            u64::from_be_bytes(b[8..16].try_into().expect("8")),
            u64::from(u32::from_be_bytes(b[16..20].try_into().expect("4"))),
        ))
    }

    /// Parses a segment. A failure is re-read up to four more times and the longest valid
    /// prefix seen wins, so a transient read error is never mistaken for damage on the platter
    /// (and never causes a truncation). Returns the records, the damage if any, and the length
    /// of the bytes last parsed.
    #[allow(clippy::type_complexity)]
    fn parse_with_reread(
        &mut self,
        path: &str,
        mut bytes: Vec<u8>,
        preallocated: u64,
        report: &mut RecoveryReport,
    ) -> StorageResult<(Vec<(u64, Record)>, Option<(u64, String)>, u64)> {
        let mut best: Option<(Vec<(u64, Record)>, u64, String)> = None;
        for attempt in 0..5 {
            let zero_end = preallocated != 0 && bytes.len() as u64 == preallocated;
            match parse_records(&bytes, zero_end) {
                Parsed::Ok(r, end) => return Ok((r, None, end)),
                Parsed::Bad(r, off, what) => {
                    if best.as_ref().is_none_or(|(_, b, _)| off > *b) {
                        best = Some((r, off, what));
                    }
                    if attempt == 4 {
                        break;
                    }
                    report.reread += 1;
                    bytes = self.disk.read(path)?;
                }
            }
        }
        let (r, off, what) = best.expect("at least one failed parse");
        Ok((r, Some((off, what)), bytes.len() as u64))
    }

    fn new_segment(&mut self, first_index: u64) -> StorageResult<()> {
        let path = format!("{}/wal-{first_index:020}.log", self.dir);
        let mut preallocated = 0;
        if self.opts.preallocate
            && self
                .spare
                .compare_exchange(SPARE_READY, SPARE_NONE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // Durable with the directory sync below; until then a crash leaves the spare
            // (which open deletes: it may hold this header already).
            self.disk.rename(&format!("{}/{SPARE}", self.dir), &path)?;
            preallocated = spare_len(&self.opts);
        }
        self.disk
            .write_at(&path, 0, &segment_header(first_index, preallocated))?;
        self.disk.sync(&path)?;
        self.disk.sync_dir(&self.dir)?;
        self.segments.push(Segment {
            first_index,
            path,
            len: HEADER_LEN as u64,
            preallocated: preallocated != 0,
        });
        self.rolls.0 += 1;
        self.rolls.1 += u64::from(preallocated != 0);
        self.synced_len = HEADER_LEN as u64;
        Ok(())
    }

    fn write_hard_state_now(&mut self) -> StorageResult<()> {
        self.buffer(&RecordRef::HardState(self.hard_state));
        self.sync()
    }

    /// Adds a record to the next batch, which opens with a `Mark` of what is durable now.
    /// Returns the record's offset in the current segment.
    fn buffer(&mut self, r: &RecordRef) -> u64 {
        let seg_len = self.segments.last().expect("a segment is open").len;
        // The segment does not grow while a batch is pending (only `sync` writes to it), so
        // the mark is still right when the batch is written.
        debug_assert_eq!(seg_len, self.synced_len, "the segment grew with a batch pending");
        if self.pending.is_empty() {
            encode_record_into(&RecordRef::Mark(self.synced_len), &mut self.pending);
        }
        let off = seg_len + self.pending.len() as u64;
        encode_record_into(r, &mut self.pending);
        off
    }

    /// The job that makes the next segment's spare, when preallocating and none is ready or
    /// being made (and segments are small enough for a header to state their length); run it off the write path (`SpareJob::run`).
    pub fn spare_job(&mut self) -> Option<SpareJob> {
        (self.opts.preallocate
            && spare_len(&self.opts) > 0
            && self
                .spare
                .compare_exchange(SPARE_NONE, SPARE_MAKING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok())
        .then(|| SpareJob {
            dir: self.dir.clone(),
            size: u64::from(spare_len(&self.opts)),
            state: self.spare.clone(),
            pace: std::time::Duration::ZERO,
        })
    }

    /// Segments started since open, and how many of them were preallocated.
    pub fn segments_started(&self) -> (u64, u64) {
        self.rolls
    }

    /// The last durable-or-buffered entry index.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The snapshot the log starts after.
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// Buffers entries; an entry at or below the last index first truncates the log there
    /// (a conflicting suffix from an old leader).
    pub fn append(&mut self, entries: &[Entry]) -> StorageResult<()> {
        let Some(first) = entries.first() else { return Ok(()) };
        if first.index <= self.last_index {
            self.truncate_from(first.index)?;
        }
        assert_eq!(first.index, self.last_index + 1, "append must be contiguous");
        for e in entries {
            let off = self.buffer(&RecordRef::Entry(e));
            self.index.push(e.index, off, e.term);
            self.last_index = e.index;
        }
        Ok(())
    }

    /// Buffers a hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
        self.buffer(&RecordRef::HardState(hs));
    }

    /// Writes everything buffered and makes it durable with one fsync (group commit: call it
    /// once for all the proposals that queued up meanwhile).
    pub fn sync(&mut self) -> StorageResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let seg = self.segments.len() - 1;
        let path = self.segments[seg].path.clone();
        let base = self.segments[seg].len;
        debug_assert_eq!(
            self.index.len() as u64,
            self.last_index - self.snapshot.index,
            "the index holds every entry after the snapshot"
        );
        debug_assert_eq!(self.index.is_empty(), self.last_index == self.snapshot.index);
        self.disk.write_at(&path, base, &self.pending)?;
        self.disk.sync(&path)?;
        self.segments[seg].len = base + self.pending.len() as u64;
        self.synced_len = self.segments[seg].len;
        self.pending.clear();
        // A segment that grows as written (a new directory's first, or one from before
        // preallocation) is left as soon as a spare is ready, not when it is full.
        // (Once it holds an entry: the next segment is named for the next index.)
        let early = self.opts.preallocate
            && !self.segments[seg].preallocated
            && self.last_index >= self.segments[seg].first_index
            && self.spare.load(Ordering::Acquire) == SPARE_READY;
        if self.segments[seg].len > self.opts.segment_bytes || early {
            let next = self.last_index + 1;
            self.new_segment(next)?;
            self.write_hard_state_now()?;
        }
        Ok(())
    }

    fn truncate_from(&mut self, index: u64) -> StorageResult<()> {
        self.sync()?;
        let Some(off) = self.index.offset(index) else {
            // Nothing at or after `index` is on disk (it was below the snapshot).
            return Ok(());
        };
        let seg = self
            .segments
            .iter()
            .rposition(|s| s.first_index <= index)
            .expect("an indexed entry is in a segment");
        // Later segments go first, durably: a crash in between then leaves the old suffix
        // whole (merely not yet truncated) instead of a segment after a gap.
        while self.segments.len() > seg + 1 {
            let s = self.segments.pop().expect("checked");
            self.disk.remove(&s.path)?;
        }
        self.disk.sync_dir(&self.dir)?;
        let path = self.segments[seg].path.clone();
        self.disk.truncate(&path, off)?;
        self.disk.sync(&path)?;
        self.segments[seg].len = off;
        self.synced_len = off;
        self.index.truncate_from(index);
        self.last_index = index - 1;
        // The hard state record may have been cut off with the suffix: write it again.
        self.buffer(&RecordRef::HardState(self.hard_state));
        Ok(())
    }

    /// Saves a snapshot durably, then drops log segments it makes unnecessary. A snapshot the
    /// log does not lead up to (installed from the leader) replaces the log entirely.
    pub fn save_snapshot(&mut self, snap: &Snapshot) -> StorageResult<()> {
        self.sync()?;
        self.write_snapshot_file(snap)?;
        self.adopt(&snap.meta)
    }

    /// Takes as current a snapshot that `write_snapshot` wrote through another handle (off
    /// the write path) and drops the log segments it makes unnecessary. A snapshot older than
    /// the current one (a newer one was installed from the leader meanwhile) is not taken: its
    /// file becomes garbage. Whether it was taken.
    ///
    /// Only for snapshots of this log's own applied state: a crash after the file was written
    /// and before this leaves a snapshot newer than the recorded one, which recovery takes (the
    /// newest file wins, entries it covers are skipped), and the log still leads up to it.
    pub fn adopt_snapshot(&mut self, meta: &SnapshotMeta) -> StorageResult<bool> {
        if meta.index < self.snapshot.index {
            self.garbage.push(format!("{}/{}", self.dir, snap_name(meta.index)));
            return Ok(false);
        }
        self.sync()?;
        self.adopt(meta)?;
        Ok(true)
    }

    fn adopt(&mut self, meta: &SnapshotMeta) -> StorageResult<()> {
        let old = std::mem::replace(&mut self.snapshot, meta.clone());
        // Keep the log only if it holds the snapshot's last entry (same term): otherwise its
        // entries after the snapshot may come from a divergent history.
        let matches = meta.index == old.index || self.index.term(meta.index) == Some(meta.term);
        if !matches {
            let old = std::mem::take(&mut self.segments);
            let new_path = format!("{}/wal-{:020}.log", self.dir, meta.index + 1);
            // A segment starting where the new log will holds only entries after the snapshot,
            // from the divergent history: it goes first.
            if old.iter().any(|s| s.path == new_path) {
                self.disk.remove(&new_path)?;
            }
            self.index.reset(meta.index + 1);
            self.last_index = meta.index;
            // The new log holds the hard state before the old segments go: a failure in
            // between (an I/O error stops the node there) must not lose the term and vote
            // (found by the membership sweep: a vote forgotten after a snapshot install).
            self.new_segment(meta.index + 1)?;
            self.write_hard_state_now()?;
            for s in old.into_iter().filter(|s| s.path != new_path) {
                self.disk.remove(&s.path)?;
            }
            self.disk.sync_dir(&self.dir)?;
        } else {
            // Whole segments that end at or before the snapshot are garbage now.
            while self.segments.len() > 1 && self.segments[1].first_index <= meta.index + 1 {
                let s = self.segments.remove(0);
                self.garbage.push(s.path);
            }
            self.index.drop_through(meta.index);
        }
        // Older snapshot files are no longer needed.
        for n in self.disk.list(&self.dir)? {
            if n.starts_with("snap-") && n.ends_with(".snap") && n != snap_name(meta.index) {
                self.garbage.push(format!("{}/{n}", self.dir));
            }
        }
        if !matches || !self.opts.defer_deletes {
            // A divergent log is gone for good before anything is appended after it.
            let g = self.take_garbage();
            self.delete(g)?;
        }
        Ok(())
    }

    /// Files made obsolete by compaction, for `delete` (now, or elsewhere through a detached
    /// disk handle, off the write path).
    pub fn take_garbage(&mut self) -> Vec<String> {
        for p in &self.garbage {
            self.disk.forget(p);
        }
        std::mem::take(&mut self.garbage)
    }

    /// Deletes files durably (a file already gone is fine).
    pub fn delete(&mut self, paths: Vec<String>) -> StorageResult<()> {
        delete_files(&mut self.disk, &self.dir, paths)
    }

    fn write_snapshot_file(&mut self, snap: &Snapshot) -> StorageResult<()> {
        write_snapshot(&mut self.disk, &self.dir, snap, "snap.tmp")
    }

    fn read_snapshot_file(&mut self, path: &str, report: &mut RecoveryReport) -> StorageResult<Snapshot> {
        let corrupt = |what: &str| StorageError::Corrupt {
            file: path.to_string(),
            offset: 0,
            what: what.to_string(),
        };
        let mut last_err = corrupt("unreadable");
        for _ in 0..3 {
            let mut b = self.disk.read(path)?;
            if b.len() < 28 {
                last_err = corrupt("truncated snapshot");
            } else if &b[..4] != SNAP_MAGIC {
                last_err = StorageError::BadMagic { file: path.to_string() };
            } else if crc(&b[..b.len() - 4]) != u32::from_be_bytes(b[b.len() - 4..].try_into().expect("4")) {
                last_err = corrupt("snapshot checksum mismatch");
            } else {
                let version = u32::from_be_bytes(b[4..8].try_into().expect("4"));
                if version != FORMAT_VERSION {
                    return Err(StorageError::UnsupportedVersion {
                        file: path.to_string(),
                        version,
                    });
                }
                let ml = u64::from_be_bytes(b[8..16].try_into().expect("8")) as usize;
                let meta_end = 16usize
                    .checked_add(ml)
                    .filter(|&e| e + 8 <= b.len() - 4)
                    .ok_or_else(|| corrupt("meta length"))?;
                let (meta, _): (SnapshotMeta, usize) =
                    bincode::serde::decode_from_slice(&b[16..meta_end], bincode::config::standard())
                        .map_err(|_| corrupt("meta"))?;
                let dl = u64::from_be_bytes(b[meta_end..meta_end + 8].try_into().expect("8")) as usize;
                if meta_end + 8 + dl + 4 != b.len() {
                    return Err(corrupt("data length"));
                }
                // The data in place, not copied out of the file's bytes.
                b.truncate(meta_end + 8 + dl);
                b.drain(..meta_end + 8);
                return Ok(Snapshot { meta, data: b });
            }
            report.reread += 1;
        }
        Err(last_err)
    }

    /// Reads the current snapshot back (for a Raft that dropped its bytes and has a follower
    /// to send them to); checked as at recovery.
    pub fn load_snapshot(&mut self) -> StorageResult<Snapshot> {
        let path = format!("{}/{}", self.dir, snap_name(self.snapshot.index));
        self.read_snapshot_file(&path, &mut RecoveryReport::default())
    }

    /// The directory the log and snapshots are in.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The disk, e.g. to inspect a simulated one.
    pub fn disk(&mut self) -> &mut D {
        &mut self.disk
    }
}

/// A snapshot file's header: magic, format, the metadata and the data's length.
fn snapshot_head(meta: &SnapshotMeta, data_len: u64) -> Vec<u8> {
    let meta = bincode::serde::encode_to_vec(meta, bincode::config::standard()).expect("meta encodes");
    let mut head = Vec::with_capacity(meta.len() + 32);
    head.extend_from_slice(SNAP_MAGIC);
    head.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    head.extend_from_slice(&(meta.len() as u64).to_be_bytes());
    head.extend_from_slice(&meta);
    head.extend_from_slice(&data_len.to_be_bytes());
    head
}

/// Writes a snapshot file durably: to `tmp_name`, synced, renamed into place, directory
/// synced. Callable through a detached disk handle, so that a large snapshot is written off
/// the WAL's write path (`Storage::adopt_snapshot` then takes it).
pub fn write_snapshot<D: Disk + ?Sized>(disk: &mut D, dir: &str, snap: &Snapshot, tmp_name: &str) -> StorageResult<()> {
    let head = snapshot_head(&snap.meta, snap.data.len() as u64);
    // Written in three pieces rather than copied into one buffer: the data is the whole
    // tree (a million znodes are 120 MB).
    let c = crc32c::crc32c_append(crc(&head), &snap.data);
    let tmp = format!("{dir}/{tmp_name}");
    let _ = disk.remove(&tmp);
    disk.write_at(&tmp, 0, &head)?;
    disk.write_at(&tmp, head.len() as u64, &snap.data)?;
    disk.write_at(&tmp, (head.len() + snap.data.len()) as u64, &c.to_be_bytes())?;
    install_snapshot_file(disk, dir, &tmp, snap.meta.index)
}

/// Writes the same file as `write_snapshot` for data that arrives in pieces, without holding
/// it all: `produce` hands each piece to its sink in order and returns the data's first
/// `prefix` bytes as they are to be (a header whose length and checksum are known only at the
/// end). The first piece is held back and written, with that prefix, after the others; a
/// snapshot of one piece is written exactly as `write_snapshot` writes it. Returns the data's
/// length.
pub fn write_snapshot_pieces<D: Disk + ?Sized>(
    disk: &mut D,
    dir: &str,
    meta: &SnapshotMeta,
    tmp_name: &str,
    prefix: usize,
    produce: impl FnOnce(&mut dyn FnMut(&[u8]) -> StorageResult<()>) -> StorageResult<Vec<u8>>,
) -> StorageResult<u64> {
    let head_len = snapshot_head(meta, 0).len() as u64;
    let tmp = format!("{dir}/{tmp_name}");
    let _ = disk.remove(&tmp);
    let mut first: Option<Vec<u8>> = None;
    // Bytes of data handed over so far, and the checksum of those after the first piece.
    let (mut len, mut rest_crc) = (0u64, 0u32);
    let final_prefix = produce(&mut |piece: &[u8]| {
        if first.is_none() {
            first = Some(piece.to_vec());
        } else {
            disk.write_at(&tmp, head_len + len, piece)?;
            // Trickled to the device piece by piece: a tree-sized burst of dirty pages stalled
            // the WAL's fsyncs (4 KiB write+fdatasync beside a 600 MB file written in 1 MiB
            // pieces: p999 34-71 ms, max 122-218 ms; with this 3-5 ms and 67-110 ms).
            disk.write_behind(&tmp, head_len + len, piece.len() as u64)?;
            rest_crc = crc32c::crc32c_append(rest_crc, piece);
        }
        len += piece.len() as u64;
        Ok(())
    })?;
    let mut first = first.unwrap_or_default();
    assert!(
        final_prefix.len() == prefix && first.len() >= prefix,
        "the first piece ({} bytes) holds the {prefix}-byte prefix ({} given)",
        first.len(),
        final_prefix.len()
    );
    first[..prefix].copy_from_slice(&final_prefix);
    let head = snapshot_head(meta, len);
    debug_assert_eq!(head.len() as u64, head_len);
    let c = crc32c::crc32c_combine(
        crc32c::crc32c_append(crc(&head), &first),
        rest_crc,
        (len - first.len() as u64) as usize,
    );
    disk.write_at(&tmp, 0, &head)?;
    disk.write_at(&tmp, head_len, &first)?;
    disk.write_at(&tmp, head_len + len, &c.to_be_bytes())?;
    install_snapshot_file(disk, dir, &tmp, meta.index)?;
    Ok(len)
}

/// Syncs a snapshot written under `tmp` and renames it into place, durably.
fn install_snapshot_file<D: Disk + ?Sized>(disk: &mut D, dir: &str, tmp: &str, index: u64) -> StorageResult<()> {
    disk.sync(tmp)?;
    disk.rename(tmp, &format!("{}/{}", dir, snap_name(index)))?;
    disk.sync_dir(dir)?;
    Ok(())
}

fn snap_name(index: u64) -> String {
    format!("snap-{index:020}.snap")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::EntryKind;

    /// A snapshot written in pieces is the same file as one written whole, for every way of
    /// cutting its data, and reads back.
    #[test]
    fn snapshots_written_in_pieces_are_the_same_file() {
        use crate::storage::{Faults, SimDisk};
        let meta = SnapshotMeta {
            index: 42,
            term: 3,
            ..SnapshotMeta::default()
        };
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut disk = SimDisk::new(1, Faults::default());
        let snap = Snapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        write_snapshot(&mut disk, "d", &snap, "whole.tmp").unwrap();
        let whole = disk.read(&format!("d/{}", snap_name(42))).unwrap();
        for piece in [20, 21, 333, 4999, 5000, 9000] {
            disk.remove(&format!("d/{}", snap_name(42))).unwrap();
            // The producer hands over the data with its first 20 bytes zeroed, and the real
            // ones at the end (as the tree's snapshot does with its length and checksum).
            let mut zeroed = data.clone();
            zeroed[..20].fill(0);
            let len = write_snapshot_pieces(&mut disk, "d", &meta, "p.tmp", 20, |sink| {
                for p in zeroed.chunks(piece) {
                    sink(p)?;
                }
                Ok(data[..20].to_vec())
            })
            .unwrap();
            assert_eq!(len, 5000);
            assert!(
                disk.read(&format!("d/{}", snap_name(42))).unwrap() == whole,
                "piece {piece}"
            );
        }
        let mut st = Storage::open(disk, "d", ConfState::voters([1]), WalOptions::default())
            .unwrap()
            .0;
        st.adopt_snapshot(&meta).unwrap();
        assert_eq!(st.load_snapshot().unwrap(), snap);
    }

    /// On a real disk too (where every piece after the first is trickled to the device with
    /// `write_behind` as it is written), pieces make the file a whole snapshot makes.
    #[test]
    fn snapshots_written_in_pieces_on_a_real_disk_are_the_same_file() {
        use crate::storage::RealDisk;
        let dir = std::env::temp_dir().join(format!("zraft-pieces-{}", std::process::id()));
        let dir = dir.to_str().unwrap().to_string();
        let mut disk = RealDisk::new();
        disk.create_dir(&dir).unwrap();
        let meta = SnapshotMeta {
            index: 7,
            term: 2,
            ..SnapshotMeta::default()
        };
        let data: Vec<u8> = (0..(3 << 20) + 12_345u32).map(|i| (i * 13 % 251) as u8).collect();
        let snap = Snapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        let path = format!("{dir}/{}", snap_name(7));
        write_snapshot(&mut disk, &dir, &snap, "whole.tmp").unwrap();
        let whole = disk.read(&path).unwrap();
        disk.remove(&path).unwrap();
        let mut zeroed = data.clone();
        zeroed[..20].fill(0);
        let len = write_snapshot_pieces(&mut disk, &dir, &meta, "p.tmp", 20, |sink| {
            for p in zeroed.chunks(1 << 20) {
                sink(p)?;
            }
            Ok(data[..20].to_vec())
        })
        .unwrap();
        assert_eq!(len, data.len() as u64);
        let pieces = disk.read(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(pieces == whole, "the files differ");
    }

    /// The write path encodes borrowed `RecordRef`s; recovery decodes `Record`s: same bytes.
    #[test]
    fn borrowed_records_encode_as_records() {
        let cfg = bincode::config::standard();
        let e = Entry {
            term: 3,
            index: 70_000,
            kind: EntryKind::Normal,
            data: (0..=255).collect(),
        };
        let hs = HardState {
            term: 3,
            vote: 2,
            commit: 69_999,
        };
        let pairs = [
            (RecordRef::Mark(4096), Record::Mark(4096)),
            (RecordRef::Entry(&e), Record::Entry(e.clone())),
            (RecordRef::HardState(hs), Record::HardState(hs)),
        ];
        for (borrowed, owned) in &pairs {
            assert_eq!(
                bincode::serde::encode_to_vec(borrowed, cfg).unwrap(),
                bincode::serde::encode_to_vec(owned, cfg).unwrap()
            );
        }
    }

    /// Zeros after the last record end a segment only where its header says it was
    /// preallocated to exactly the file's length; anywhere else they are damage. A record after
    /// a long run of zeros is still found when looking for marks past damage.
    #[test]
    fn zeros_end_only_a_preallocated_segment_of_its_length() {
        let e = |index: u64| Entry {
            term: 1,
            index,
            kind: EntryKind::Normal,
            data: vec![7; 50].into(),
        };
        let mut b = segment_header(1, 4096);
        for i in 1..=3 {
            encode_record_into(&RecordRef::Entry(&e(i)), &mut b);
        }
        let end = b.len() as u64;
        b.resize(4096, 0);
        let parsed = |b: &[u8], zero_end: bool| match parse_records(b, zero_end) {
            Parsed::Ok(r, end) => Ok((r.len(), end)),
            Parsed::Bad(r, off, what) => Err((r.len(), off, what)),
        };
        assert_eq!(
            parsed(&b, true),
            Ok((3, end)),
            "the unused end of a preallocated segment"
        );
        match parsed(&b, false) {
            Err((3, off, _)) => assert_eq!(off, end),
            other => panic!("zeros in a segment grown as written are damage: {other:?}"),
        }
        // A lost batch that left zeros before a later one is damage even when preallocated.
        let mut holed = b.clone();
        let mut later = vec![];
        encode_record_into(&RecordRef::Entry(&e(4)), &mut later);
        holed[3000..3000 + later.len()].copy_from_slice(&later);
        assert!(matches!(parsed(&holed, true), Err((3, off, _)) if off == end));
        // Scanning past the damage skips the zeros and finds that batch.
        let found = scan_after(&holed, end as usize);
        assert_eq!(found.len(), 1);
        assert!(matches!(&found[0], Record::Entry(x) if x.index == 4));
        // Recovery decides by the header: the same file read with a header stating another
        // length (or none) does not end at the zeros.
        let stated = |b: &[u8]| u64::from(u32::from_be_bytes(b[16..20].try_into().unwrap()));
        assert_eq!(stated(&b), 4096);
        assert_eq!(stated(&segment_header(1, 0)), 0);
    }
}
