//! A znode's name (one path component) as a parent's children map keeps it: short names, which
//! are most names, inline, so that a million children cost no million small allocations. It
//! orders and is looked up by its bytes (which is how `str` orders), so that a lookup does not
//! re-check UTF-8 at every comparison.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

/// Bytes a name may have and still be kept inline.
const INLINE: usize = 22;

/// One path component; orders, compares and borrows as its bytes.
#[derive(Clone)]
pub enum Name {
    /// Up to `INLINE` bytes of UTF-8 (the first `len` of `bytes`).
    Inline { len: u8, bytes: [u8; INLINE] },
    /// Longer names.
    Heap(Box<str>),
}

impl Name {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        match self {
            // Only ever filled from a `str` (see `From`), so always valid UTF-8.
            Name::Inline { len, bytes } => std::str::from_utf8(&bytes[..*len as usize]).expect("a name is UTF-8"),
            Name::Heap(s) => s,
        }
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..*len as usize],
            Name::Heap(s) => s.as_bytes(),
        }
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Name::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            Name::Heap(s.into())
        }
    }
}

impl Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_name_is_no_larger_than_three_words() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
    }

    proptest! {
        /// Inline or not, a name reads back as itself and orders as its string.
        #[test]
        fn names_behave_as_their_strings(a in ".{0,40}", b in ".{0,40}") {
            let (na, nb) = (Name::from(a.as_str()), Name::from(b.as_str()));
            prop_assert_eq!(na.as_str(), a.as_str());
            prop_assert_eq!(na.cmp(&nb), a.cmp(&b));
            prop_assert_eq!(na == nb, a == b);
        }
    }
}
