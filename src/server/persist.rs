//! The WAL stage (ZooKeeper's SyncRequestProcessor): one task owns storage and makes what the
//! replica loop hands it durable, in order, while the loop goes on. Group commit: everything
//! queued while a batch was being written goes into the next batch, with one fsync for all.
//! Completion comes back to the loop as `Event::Persisted` with the last `Ready` id covered.

use super::node::Event;
use crate::raft::{Entry, HardState, Snapshot, SnapshotMeta};
use crate::storage::{delete_files, Disk, Storage, StorageError};
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
    /// checksumming and writing it happen here and not on the replica loop (its index is
    /// applied, so the entries up to it are in the jobs before it). Reported back with
    /// `Event::Snapshotted` once durable; only then does Raft drop the log before it.
    Snapshot { meta: SnapshotMeta, tree: Box<DataTree> },
}

/// Runs storage work where blocking is allowed: the blocking pool in real builds. Under madsim
/// the simulated disk takes no real time and runs inline; its latency is a separate await.
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

/// Writes a batch; the snapshots it took for compaction.
fn persist(storage: &mut Storage<Box<dyn Disk>>, batch: Vec<Job>) -> Result<Vec<Snapshot>, StorageError> {
    let mut taken = vec![];
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
                storage.save_snapshot(&s)?;
                taken.push(s);
            }
        }
    }
    storage.sync()?;
    Ok(taken)
}

/// Persists jobs until the replica loop goes away or storage fails (then it reports the error
/// and stops: the node stops too, fail-stop).
pub async fn run(
    mut storage: Storage<Box<dyn Disk>>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while let Ok(j) = jobs.try_recv() {
            batch.push(j);
        }
        let upto = batch
            .iter()
            .filter_map(|j| match j {
                Job::Ready { id, .. } => Some(*id),
                Job::Snapshot { .. } => None,
            })
            .max();
        // A simulated disk takes simulated time (drawn per seed): a crash meanwhile loses the
        // whole batch, so nothing may have been acknowledged on the strength of it.
        let latency = storage.disk().latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let (s, result) = blocking(move || {
            let r = persist(&mut storage, batch);
            (storage, r)
        })
        .await;
        storage = s;
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
        let (taken, result) = match result {
            Ok(taken) => (taken, Ok(upto)),
            Err(e) => (vec![], Err(e)),
        };
        let failed = result.is_err();
        if events.send(Event::Persisted(result)).is_err() || failed {
            return;
        }
        for s in taken {
            let _ = events.send(Event::Snapshotted(s));
        }
    }
}
