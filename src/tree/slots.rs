//! The tree's arena of node slots, in chunks shared copy-on-write: copying the tree for a
//! compaction snapshot (on the replica loop) copies one pointer per chunk instead of every
//! node, and a chunk is copied only when the loop first changes a node in it while a snapshot
//! still holds it. Measured before this, copying a tree of 240,000 znodes stalled the loop for
//! ~27 ms per snapshot under sequential creates (p99 worse than ZooKeeper's at depth 1).

use std::sync::Arc;

/// Slots a chunk holds (a power of two).
const CHUNK: usize = 1 << 10;

/// A growable array of slots, cheap to clone, whose clones share unchanged chunks.
#[derive(Clone, Default)]
pub(crate) struct Slots<T: Clone> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T: Clone> Slots<T> {
    /// Number of slots.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot at `i`, if there is one.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        (i < self.len).then(|| &self.chunks[i / CHUNK][i % CHUNK])
    }

    /// The slot at `i`, for writing (its chunk is copied first if a clone shares it).
    ///
    /// Panics if `i` is out of bounds, as indexing a `Vec` does.
    pub(crate) fn get_mut(&mut self, i: usize) -> &mut T {
        assert!(i < self.len, "slot {i} of {}", self.len);
        &mut Arc::make_mut(&mut self.chunks[i / CHUNK])[i % CHUNK]
    }

    /// Appends a slot.
    pub(crate) fn push(&mut self, v: T) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        Arc::make_mut(last).push(v);
        self.len += 1;
        debug_assert_eq!(self.chunks.len(), self.len.div_ceil(CHUNK));
    }
}

impl<T: Clone + std::fmt::Debug> std::fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.chunks.iter().flat_map(|c| c.iter()))
            .finish()
    }
}

impl<T: Clone> std::ops::Index<usize> for Slots<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        self.get(i).unwrap_or_else(|| panic!("slot {i} of {}", self.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clone shares every chunk until one side writes, and writes never show through.
    #[test]
    fn clones_share_chunks_until_written() {
        let mut a: Slots<u64> = Slots::default();
        for i in 0..(3 * CHUNK as u64 + 5) {
            a.push(i);
        }
        assert_eq!(a.len(), 3 * CHUNK + 5);
        let b = a.clone();
        assert!(a.chunks.iter().zip(&b.chunks).all(|(x, y)| Arc::ptr_eq(x, y)));
        *a.get_mut(CHUNK + 7) = 0;
        a.push(99);
        assert_eq!(b[CHUNK + 7], CHUNK as u64 + 7, "the clone keeps its value");
        assert_eq!(a[CHUNK + 7], 0);
        assert_eq!(b.len(), 3 * CHUNK + 5);
        assert_eq!(a[3 * CHUNK + 5], 99);
        assert_eq!(b.get(3 * CHUNK + 5), None);
        // Only the written chunks were copied.
        let shared: Vec<bool> = a.chunks.iter().zip(&b.chunks).map(|(x, y)| Arc::ptr_eq(x, y)).collect();
        assert_eq!(shared, [true, false, true, false]);
    }
}
