//! The in-memory Raft log: a snapshot point followed by entries, with stable/commit marks.

use super::message::{Entry, EntryKind, Snapshot, SnapshotMeta};

/// Entries after the last snapshot; `handed` marks what was given to storage, `stable` what
/// storage has confirmed durable (stable ≤ handed ≤ last index).
#[derive(Debug, Clone)]
pub struct RaftLog {
    snap_index: u64,
    snap_term: u64,
    entries: Vec<Entry>,
    /// Highest index known committed.
    pub committed: u64,
    /// Highest index handed out for applying.
    pub applied: u64,
    /// Highest index persisted.
    pub stable: u64,
    /// Highest index handed to storage in a `Ready` (durable or not yet).
    pub handed: u64,
    /// Entries up to here (applied, durable, held by every member) have had their data
    /// dropped (`release`), membership changes excepted: only their index and term remain.
    released: u64,
}

impl RaftLog {
    /// A log recovered from storage: everything given is already durable.
    pub fn recovered(meta: &SnapshotMeta, entries: Vec<Entry>, committed: u64) -> Self {
        for (expect, e) in (meta.index + 1..).zip(entries.iter()) {
            assert_eq!(e.index, expect, "recovered entries are not contiguous");
        }
        let last = meta.index + entries.len() as u64;
        assert!(committed <= last, "commit {committed} beyond last index {last}");
        RaftLog {
            snap_index: meta.index,
            snap_term: meta.term,
            entries,
            committed: committed.max(meta.index),
            applied: meta.index,
            stable: last,
            handed: last,
            released: meta.index,
        }
    }

    /// Highest index whose data may have been dropped (`release`).
    pub fn released(&self) -> u64 {
        self.released
    }

    /// Drops the data of the ordinary entries up to `index`, which must be applied and durable:
    /// nothing reads it again unless a follower needs it, which the caller has ruled out.
    /// Membership changes keep theirs (the membership in force is recomputed from them).
    pub fn release(&mut self, index: u64) {
        assert!(
            index <= self.applied && index <= self.stable,
            "releasing unapplied or volatile entries"
        );
        let lo = self.released.max(self.snap_index) + 1;
        if index < lo {
            return;
        }
        let (a, b) = ((lo - self.snap_index - 1) as usize, (index - self.snap_index) as usize);
        for e in &mut self.entries[a..b] {
            if e.kind != EntryKind::ConfChange {
                e.data = bytes::Bytes::new();
            }
        }
        self.released = index;
    }

    /// Index of the snapshot the log starts after.
    pub fn snap_index(&self) -> u64 {
        self.snap_index
    }

    /// Index of the first entry held.
    pub fn first_index(&self) -> u64 {
        self.snap_index + 1
    }

    /// Index of the last entry (the snapshot index if empty).
    pub fn last_index(&self) -> u64 {
        self.snap_index + self.entries.len() as u64
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snap_term, |e| e.term)
    }

    /// Term at `index`: `None` if compacted away or beyond the end.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snap_index {
            return Some(self.snap_term);
        }
        if index < self.snap_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.snap_index - 1) as usize].term)
    }

    /// Entries in `lo..=hi` (clamped to what is held), at most `max_bytes` (but at least one).
    pub fn slice(&self, lo: u64, hi: u64, max_bytes: usize) -> Vec<Entry> {
        debug_assert!(
            lo > self.released.max(self.snap_index) || lo > hi.min(self.last_index()),
            "entries from {lo} asked for, whose data up to {} was released",
            self.released
        );
        if lo > hi || lo <= self.snap_index || lo > self.last_index() {
            return Vec::new();
        }
        let hi = hi.min(self.last_index());
        let held = &self.entries[(lo - self.snap_index - 1) as usize..=(hi - self.snap_index - 1) as usize];
        // Counted first, then copied into one allocation (pushing grew the Vec by doubling on
        // every append to a follower). At least one entry, however large.
        let (mut size, mut n) = (0, 0);
        for e in held {
            size += e.size();
            if n > 0 && size > max_bytes {
                break;
            }
            n += 1;
        }
        held[..n].to_vec()
    }

    /// The entries in `lo..=hi` held (clamped), borrowed: for scans that need no copies.
    pub fn iter(&self, lo: u64, hi: u64) -> impl Iterator<Item = &Entry> {
        let lo = lo.max(self.snap_index + 1);
        let hi = hi.min(self.last_index());
        let range = if lo > hi {
            0..0
        } else {
            (lo - self.snap_index - 1) as usize..(hi - self.snap_index) as usize
        };
        self.entries[range].iter()
    }

    /// Whether (index, term) matches our log.
    pub fn matches(&self, index: u64, term: u64) -> bool {
        self.term(index) == Some(term)
    }

    /// Whether a candidate's (last_index, last_term) is at least as up to date as ours.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Appends entries that follow on from our last one (leader path).
    pub fn append(&mut self, e: Entry) {
        assert_eq!(e.index, self.last_index() + 1, "append must be contiguous");
        assert!(e.term >= self.last_term(), "append must not go back in term");
        self.entries.push(e);
    }

    /// Follower path: entries after (prev_index, prev_term). Returns the last index known to
    /// match the leader, or `None` if prev does not match. Conflicting suffixes are truncated;
    /// entries already present are kept (a stale, reordered append must not truncate).
    pub fn maybe_append(&mut self, prev_index: u64, prev_term: u64, entries: &[Entry]) -> Option<u64> {
        if prev_index < self.snap_index {
            // Everything up to the snapshot is committed and matches; skip that part.
            let skip = (self.snap_index - prev_index) as usize;
            if skip >= entries.len() {
                return Some(self.snap_index.max(prev_index + entries.len() as u64));
            }
            let rest = &entries[skip..];
            return self.maybe_append(self.snap_index, self.snap_term, rest);
        }
        if !self.matches(prev_index, prev_term) {
            return None;
        }
        if crate::bug("raft-truncate-on-append") && !entries.is_empty() {
            // Broken on purpose: every append cuts the log after prev_index, so a stale,
            // reordered or replayed append erases entries this follower already acknowledged.
            let keep = prev_index.max(self.committed);
            self.entries.truncate((keep - self.snap_index) as usize);
            self.stable = self.stable.min(keep);
            self.handed = self.handed.min(keep);
        }
        for e in entries {
            match self.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    assert!(e.index > self.committed, "truncating committed entry {}", e.index);
                    self.entries.truncate((e.index - self.snap_index - 1) as usize);
                    self.stable = self.stable.min(e.index - 1);
                    self.handed = self.handed.min(e.index - 1);
                    self.entries.push(e.clone());
                }
                None => self.entries.push(e.clone()),
            }
        }
        Some(prev_index + entries.len() as u64)
    }

    /// The hint a rejecting follower sends: the largest index ≤ `index` whose term is ≤
    /// `term`, and that term (etcd's findConflictByTerm).
    pub fn conflict_hint(&self, index: u64, term: u64) -> (u64, u64) {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Some(t) if t > term => i -= 1,
                Some(t) => return (i, t),
                None => return (self.snap_index, self.snap_term),
            }
        }
    }

    /// Entries not yet handed to storage.
    pub fn unstable(&self) -> Vec<Entry> {
        self.slice(self.handed + 1, self.last_index(), usize::MAX)
    }

    /// Committed entries not yet handed out for applying.
    pub fn to_apply(&self) -> Vec<Entry> {
        self.slice(self.applied + 1, self.committed, usize::MAX)
    }

    /// Raises the commit mark (never lowers it).
    pub fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {index} beyond last {}",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Drops entries up to `index` (which must be applied), keeping the term for matching.
    pub fn compact(&mut self, index: u64) {
        if index <= self.snap_index {
            return;
        }
        assert!(index <= self.applied, "compacting unapplied entries");
        let term = self.term(index).expect("compact index held");
        self.entries.drain(..(index - self.snap_index) as usize);
        // The Vec keeps the capacity of the longest log it held (12 MB of Entry headers after
        // 250k entries): give back what the next stretch between snapshots will not need.
        if self.entries.capacity() > 4 * self.entries.len() + 1024 {
            self.entries.shrink_to(2 * self.entries.len() + 1024);
        }
        self.snap_index = index;
        self.snap_term = term;
    }

    /// Replaces the log with a received snapshot.
    pub fn restore(&mut self, snap: &Snapshot) {
        let m = &snap.meta;
        // Broken on purpose under raft-snapshot-keeps-suffix: the entries after the snapshot
        // are kept even when our entry at its index conflicts with it.
        let matches = self.matches(m.index, m.term);
        let held = m.index <= self.last_index() && m.index >= self.snap_index;
        let keep = matches || crate::bug("raft-snapshot-keeps-suffix");
        if keep && !matches && held {
            crate::bug_taken();
        }
        if keep && held {
            // We hold the snapshot's last entry: keep what follows.
            self.entries.drain(..(m.index - self.snap_index) as usize);
        } else {
            // Storage replaces its whole log with the snapshot.
            self.entries.clear();
            self.stable = m.index;
            self.handed = m.index;
        }
        self.snap_index = m.index;
        self.snap_term = m.term;
        self.committed = self.committed.max(m.index);
        self.applied = self.applied.max(m.index);
        self.stable = self.stable.max(m.index);
        self.handed = self.handed.max(m.index);
    }
}
