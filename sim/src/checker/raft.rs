//! Raft's invariants across the nodes of a run, from the server's test-only observer: at most
//! one leader per term, and every node that applied an index holds an identical tree there
//! (same entry at the same index; state-machine safety).

use std::collections::{BTreeMap, BTreeSet};
use zraft::server::observer::Observation;

/// A broken Raft invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftViolation {
    TwoLeaders {
        term: u64,
        nodes: Vec<u64>,
    },
    Diverged {
        index: u64,
        a: (u64, u64, u64),
        b: (u64, u64, u64),
    },
}

/// Checks the observations; returns (terms with a leader, indices compared across nodes).
pub fn check(obs: &[Observation]) -> Result<(usize, usize), Box<RaftViolation>> {
    let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    // index -> (node, term, tree hash) of the first node that applied it.
    let mut applied: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    let mut compared = 0;
    for o in obs {
        match *o {
            Observation::Leader { node, term } => {
                let set = leaders.entry(term).or_default();
                set.insert(node);
                if set.len() > 1 {
                    return Err(Box::new(RaftViolation::TwoLeaders {
                        term,
                        nodes: set.iter().copied().collect(),
                    }));
                }
            }
            Observation::Applied {
                node,
                index,
                term,
                tree,
            } => match applied.get(&index) {
                Some(&(n, t, h)) if (t, h) != (term, tree) => {
                    return Err(Box::new(RaftViolation::Diverged {
                        index,
                        a: (n, t, h),
                        b: (node, term, tree),
                    }));
                }
                Some(_) => compared += 1,
                None => {
                    applied.insert(index, (node, term, tree));
                }
            },
            Observation::Snapshot { .. } => {}
        }
    }
    Ok((leaders.len(), compared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        let ok = [
            Observation::Leader { node: 1, term: 1 },
            Observation::Applied {
                node: 1,
                index: 1,
                term: 1,
                tree: 7,
            },
            Observation::Applied {
                node: 2,
                index: 1,
                term: 1,
                tree: 7,
            },
            Observation::Leader { node: 2, term: 2 },
        ];
        assert_eq!(check(&ok).unwrap(), (2, 1));
        let two = [
            Observation::Leader { node: 1, term: 3 },
            Observation::Leader { node: 2, term: 3 },
        ];
        assert!(matches!(
            *check(&two).unwrap_err(),
            RaftViolation::TwoLeaders { term: 3, .. }
        ));
        let div = [
            Observation::Applied {
                node: 1,
                index: 5,
                term: 2,
                tree: 7,
            },
            Observation::Applied {
                node: 3,
                index: 5,
                term: 2,
                tree: 8,
            },
        ];
        assert!(matches!(
            *check(&div).unwrap_err(),
            RaftViolation::Diverged { index: 5, .. }
        ));
        let other_entry = [
            Observation::Applied {
                node: 1,
                index: 5,
                term: 2,
                tree: 7,
            },
            Observation::Applied {
                node: 3,
                index: 5,
                term: 3,
                tree: 7,
            },
        ];
        assert!(check(&other_entry).is_err(), "a different entry at the same index");
    }
}
