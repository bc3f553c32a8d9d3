//! The WAL stage (ZooKeeper's SyncRequestProcessor): one task owns storage and makes what the
//! replica loop hands it durable, in order, while the loop goes on. Group commit: everything
//! queued while a batch was being written goes into the next batch, with one fsync for all.
//! Completion comes back to the loop as `Event::Persisted` with the last `Ready` id covered.

use super::node::Event;
use crate::raft::{Entry, HardState, Snapshot, SnapshotMeta};
use crate::storage::{delete_files, write_snapshot_pieces, Disk, Storage, StorageError};
use crate::tree::{snapshot, DataTree};
use tokio::sync::mpsc;

/// Work for the WAL stage, in the order the replica loop produced it.
#[derive(Debug)]
pub enum Job {
    /// What one Raft `Ready` asks to persist.
    Ready {
        id: u64,
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
        hard_state: Option<HardState>,
    },
    /// A snapshot of the local tree for log compaction, taken from a copy so that encoding,
    /// checksumming and writing it happen off the replica loop: in a task of its own beside
    /// this stage (so that appends go on meanwhile: writing a million znodes' snapshot took
    /// a second, and stalled every write for as long), which reports `Event::SnapshotWritten`;
    /// the loop then hands it back as `AdoptSnapshot`. Where the disk has no second handle,
    /// here in order. Its index is applied, so the entries up to it are in the jobs before it.
    Snapshot { meta: SnapshotMeta, tree: Box<DataTree> },
    /// A snapshot written beside this stage (its bytes on disk only; `size` of them): take it
    /// as current and drop the log it covers. Reported back with `Event::Snapshotted`; only
    /// then does Raft drop the log before it.
    AdoptSnapshot { snapshot: Snapshot, size: u64 },
    /// Read the current snapshot back: Raft dropped its bytes and a follower needs them.
    /// Reported with `Event::SnapshotLoaded`.
    LoadSnapshot,
    /// A replica rebuilt from its peers caught up: drop the mark (after everything before).
    Rebuilt,
}

/// Runs storage work beside the stage (snapshot writes, deletions) where blocking is allowed:
/// the blocking pool of the stage's runtime in real builds. Under madsim the simulated disk
/// takes no real time and runs inline; its latency is a separate await.
#[cfg(not(madsim))]
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    tokio::task::spawn_blocking(f)
        .await
        .expect("the storage thread panicked")
}

#[cfg(madsim)]
async fn blocking<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Starts making the next segment's spare (zeros written ahead, so that the log's fsyncs
/// never make a new file length durable) beside the stage, if storage wants one. A disk with
/// no second handle (none but test doubles) makes it here.
fn make_spare(storage: &mut Storage<Box<dyn Disk>>) {
    let Some(job) = storage.spare_job() else { return };
    let warn = |r: Result<(), StorageError>| {
        if let Err(e) = r {
            tracing::warn!("preallocating the next log segment (segments grow as written instead): {e}");
        }
    };
    let Some(mut side) = storage.disk().detached() else {
        return warn(job.run(storage.disk()));
    };
    // A real disk's share for it is bounded (about 200 MB/s); the simulator's takes no time.
    #[cfg(not(madsim))]
    let job = job.paced(std::time::Duration::from_millis(5));
    // The simulated disk takes simulated time for it, so a roll can find it not yet ready.
    let latency = side.latency();
    tokio::spawn(async move {
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        warn(blocking(move || job.run(&mut *side)).await);
    });
}

/// Snapshots a batch took for compaction (with their sizes), and read back for Raft.
#[derive(Default)]
struct Done {
    taken: Vec<(Snapshot, u64)>,
    loaded: Vec<Snapshot>,
}

/// Writes a batch.
fn persist(storage: &mut Storage<Box<dyn Disk>>, batch: Vec<Job>) -> Result<Done, StorageError> {
    let mut done = Done::default();
    for job in batch {
        match job {
            Job::Ready {
                snapshot,
                entries,
                hard_state,
                ..
            } => {
                if let Some(s) = snapshot {
                    storage.save_snapshot(&s)?;
                }
                storage.append(&entries)?;
                if let Some(hs) = hard_state {
                    storage.set_hard_state(hs);
                }
            }
            Job::Snapshot { meta, tree } => {
                let s = Snapshot {
                    meta,
                    data: snapshot::encode(&tree),
                };
                drop(tree);
                release_free_memory();
                storage.save_snapshot(&s)?;
                let size = s.data.len() as u64;
                done.taken.push((s, size));
            }
            Job::AdoptSnapshot { snapshot, size } => {
                storage.adopt_snapshot(&snapshot.meta)?;
                // Reported even if a newer snapshot superseded it: Raft refuses the stale one.
                done.taken.push((snapshot, size));
            }
            Job::LoadSnapshot => done.loaded.push(storage.load_snapshot()?),
            Job::Rebuilt => {
                // What the rebuilt state says must be durable first.
                storage.sync()?;
                storage.rebuilt()?;
            }
        }
    }
    storage.sync()?;
    Ok(done)
}

/// Hands memory the allocator holds free back to the system. Once a snapshot is encoded, its
/// buffer and the chunks of the tree the loop copied meanwhile are free, and glibc would keep
/// them in its free lists (measured when a snapshot copied the whole tree: 1M znodes, 442 MB →
/// 268 MB after trimming, 47 ms, here on the WAL stage's thread).
pub fn release_free_memory() {
    #[cfg(all(not(madsim), target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages to the system; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Bytes of a compaction snapshot encoded at a time: written as they are encoded, so that
/// no buffer as large as the tree is ever allocated.
const SNAPSHOT_PIECE: usize = 1 << 20;

/// Encodes and writes a compaction snapshot in a task of its own, through a second disk
/// handle, while the stage goes on with appends; the loop is told with `SnapshotWritten`
/// (without the bytes, which Raft reads back from disk if a follower needs them), or with a
/// storage error (which stops the node, as any other).
fn write_beside(
    mut disk: Box<dyn Disk>,
    dir: String,
    meta: SnapshotMeta,
    tree: Box<DataTree>,
    events: mpsc::UnboundedSender<Event>,
) {
    tokio::spawn(async move {
        // Simulated time, like any write: a crash meanwhile leaves no snapshot.
        let latency = disk.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let written = blocking(move || {
            // Its own temp file: the stage may be saving a snapshot from the leader meanwhile.
            let tmp = format!("snap-{}.tmp", meta.index);
            let size = write_snapshot_pieces(&mut *disk, &dir, &meta, &tmp, snapshot::HEADER, |sink| {
                snapshot::encode_pieces(&tree, SNAPSHOT_PIECE, sink).map(|h| h.to_vec())
            });
            drop(tree);
            release_free_memory();
            size.map(|size| (Snapshot { meta, data: vec![] }, size))
        })
        .await;
        let _ = events.send(match written {
            Ok((snapshot, size)) => Event::SnapshotWritten { snapshot, size },
            Err(e) => Event::Persisted(Err(e)),
        });
    });
}

/// Starts the stage: on a thread of its own (with a runtime of its own for the snapshot
/// writes and deletions it starts beside it), where it may block on the disk. Each batch was
/// a `spawn_blocking` before, with a task woken on each side of it: four hand-offs between
/// threads per batch where two are needed (the loop wakes the stage, the stage the loop).
/// Under the simulator a task like any other, the disk taking simulated time instead.
pub fn start(
    storage: Storage<Box<dyn Disk>>,
    jobs: mpsc::UnboundedReceiver<Job>,
    events: mpsc::UnboundedSender<Event>,
    metrics: std::sync::Arc<super::metrics::Metrics>,
    node: u64,
) {
    #[cfg(not(madsim))]
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            // At startup, before anything is served.
            .expect("a runtime for the WAL stage");
        std::thread::Builder::new()
            .name("zraft-wal".into())
            .spawn(move || runtime.block_on(run(storage, jobs, events, metrics, node)))
            .expect("a thread for the WAL stage");
    }
    #[cfg(madsim)]
    tokio::spawn(run(storage, jobs, events, metrics, node));
}

/// Persists jobs until the replica loop goes away or storage fails (then it reports the error
/// and stops: the node stops too, fail-stop). Runs where it may block (`start`).
async fn run(
    mut storage: Storage<Box<dyn Disk>>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    events: mpsc::UnboundedSender<Event>,
    metrics: std::sync::Arc<super::metrics::Metrics>,
    #[cfg_attr(not(madsim), allow(unused_variables))] storage_node: u64,
) {
    #[cfg(madsim)]
    let mut rolled = storage.segments_started();
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while let Ok(j) = jobs.try_recv() {
            batch.push(j);
        }
        let mut here = Vec::with_capacity(batch.len());
        for job in batch {
            match job {
                Job::Snapshot { meta, tree } => match storage.disk().detached() {
                    Some(side) => write_beside(side, storage.dir().to_string(), meta, tree, events.clone()),
                    None => here.push(Job::Snapshot { meta, tree }),
                },
                job => here.push(job),
            }
        }
        let batch = here;
        let upto = batch
            .iter()
            .filter_map(|j| match j {
                Job::Ready { id, .. } => Some(*id),
                _ => None,
            })
            .max();
        let entries: usize = batch
            .iter()
            .map(|j| match j {
                Job::Ready { entries, .. } => entries.len(),
                _ => 0,
            })
            .sum();
        let started = tokio::time::Instant::now();
        // A simulated disk takes simulated time (drawn per seed): a crash meanwhile loses the
        // whole batch, so nothing may have been acknowledged on the strength of it.
        let latency = storage.disk().latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let result = persist(&mut storage, batch);
        metrics.fsync.observe(started.elapsed());
        metrics.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics
            .batch_entries
            .fetch_add(entries as u64, std::sync::atomic::Ordering::Relaxed);
        // What a compaction made obsolete is deleted by another task, so that no write waits
        // for large files to be unlinked (deleting 64 MiB segments stalled every queued write
        // by 25-45 ms per snapshot). Left over after a crash, such files are ignored.
        let garbage = storage.take_garbage();
        if !garbage.is_empty() {
            let dir = storage.dir().to_string();
            match storage.disk().detached() {
                Some(mut side) => {
                    tokio::spawn(async move {
                        if let Err(e) = blocking(move || delete_files(&mut *side, &dir, garbage)).await {
                            tracing::warn!("deleting obsolete log files: {e}");
                        }
                    });
                }
                None => {
                    if let Err(e) = storage.delete(garbage) {
                        tracing::warn!("deleting obsolete log files: {e}");
                    }
                }
            }
        }
        make_spare(&mut storage);
        #[cfg(madsim)]
        {
            // Coverage: the simulator's runs roll segments, from spares or not.
            let now = storage.segments_started();
            for _ in rolled.0..now.0 {
                super::observer::report(super::observer::Observation::Event {
                    node: storage_node,
                    what: "segment-started",
                });
            }
            for _ in rolled.1..now.1 {
                super::observer::report(super::observer::Observation::Event {
                    node: storage_node,
                    what: "segment-preallocated",
                });
            }
            rolled = now;
        }
        let (done, result) = match result {
            Ok(done) => (done, Ok(upto)),
            Err(e) => (Done::default(), Err(e)),
        };
        let failed = result.is_err();
        if events.send(Event::Persisted(result)).is_err() || failed {
            return;
        }
        for (snapshot, size) in done.taken {
            let _ = events.send(Event::Snapshotted { snapshot, size });
        }
        for s in done.loaded {
            let _ = events.send(Event::SnapshotLoaded(s));
        }
    }
}
