//! Where each log entry after the snapshot sits in its segment, and its term: one dense
//! array indexed by log index (16 bytes an entry), rather than two ordered maps (~60 bytes
//! an entry with the tree nodes' overhead), because a big tree keeps 200,000 entries between
//! snapshots.

use std::collections::VecDeque;

/// Offset within its segment and term of the entries `first..first + len`. The segment
/// holding an entry is the last one starting at or before it, so it is not stored.
#[derive(Debug, Default, Clone)]
pub struct LogIndex {
    first: u64,
    slots: VecDeque<(u64, u64)>,
}

impl LogIndex {
    /// Records the entry `index`, which must follow the last one (or start an empty index).
    pub fn push(&mut self, index: u64, offset: u64, term: u64) {
        if self.slots.is_empty() {
            self.first = index;
        }
        assert_eq!(
            index,
            self.first + self.slots.len() as u64,
            "index entries must be contiguous"
        );
        self.slots.push_back((offset, term));
    }

    /// The term of `index`, if held.
    pub fn term(&self, index: u64) -> Option<u64> {
        self.slot(index).map(|s| s.1)
    }

    /// The offset of `index` in its segment, if held.
    pub fn offset(&self, index: u64) -> Option<u64> {
        self.slot(index).map(|s| s.0)
    }

    /// Forgets `index` and everything after it.
    pub fn truncate_from(&mut self, index: u64) {
        let keep = index.saturating_sub(self.first).min(self.slots.len() as u64);
        self.slots.truncate(keep as usize);
    }

    /// Forgets everything up to and including `index`.
    pub fn drop_through(&mut self, index: u64) {
        if index < self.first {
            return;
        }
        let n = (index - self.first + 1).min(self.slots.len() as u64);
        self.slots.drain(..n as usize);
        self.first += n;
        // A log that shrank for good keeps no buffer sized for the longest it ever was.
        if self.slots.capacity() > 4 * self.slots.len() + 1024 {
            self.slots.shrink_to(2 * self.slots.len() + 1024);
        }
    }

    /// Forgets everything; the next entry is `next`.
    pub fn reset(&mut self, next: u64) {
        self.slots = VecDeque::new();
        self.first = next;
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot(&self, index: u64) -> Option<&(u64, u64)> {
        self.slots.get(usize::try_from(index.checked_sub(self.first)?).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_terms_and_offsets_of_a_contiguous_run() {
        let mut ix = LogIndex::default();
        ix.push(5, 24, 1);
        ix.push(6, 90, 2);
        assert_eq!((ix.term(5), ix.offset(5)), (Some(1), Some(24)));
        assert_eq!((ix.term(6), ix.offset(6)), (Some(2), Some(90)));
        assert_eq!((ix.term(4), ix.term(7), ix.offset(7)), (None, None, None));
    }

    #[test]
    fn truncates_and_drops_at_either_end() {
        let mut ix = LogIndex::default();
        for i in 1..=10 {
            ix.push(i, i * 10, i);
        }
        ix.drop_through(3);
        assert_eq!((ix.term(3), ix.term(4), ix.len()), (None, Some(4), 7));
        ix.truncate_from(8);
        assert_eq!((ix.term(7), ix.term(8), ix.len()), (Some(7), None, 4));
        ix.push(8, 1, 9);
        assert_eq!(ix.term(8), Some(9));
        ix.drop_through(100);
        assert!(ix.is_empty());
        // Empty, it starts again wherever the next entry is.
        ix.push(200, 0, 9);
        assert_eq!(ix.term(200), Some(9));
        ix.truncate_from(0);
        assert!(ix.is_empty());
    }

    #[test]
    #[should_panic(expected = "contiguous")]
    fn refuses_a_gap() {
        let mut ix = LogIndex::default();
        ix.push(1, 0, 1);
        ix.push(3, 0, 1);
    }
}
