//! Raft's invariants across the nodes of a run, from the server's test-only observer: at most
//! one leader per term; at most one vote sent per node and term (across its restarts), and a
//! vote that left is durable (a restart recovers that term and vote, or a later term); a leader commits by counting replicas only an entry of its own term
//! (Raft §5.4.2: earlier ones commit only beneath it); and every node that applied an index
//! holds an identical tree there (same entry at the same index; state-machine safety); and
//! log matching: every entry a node appends, or keeps after installing a snapshot, follows the
//! same predecessor term on every node that ever held it.

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
    /// `node` restarted without the vote it had sent (`sent`: term, candidate).
    ForgotVote {
        node: u64,
        sent: (u64, u64),
        recovered: (u64, u64),
    },
    /// `node` voted for two candidates in `term`.
    VotedTwice {
        node: u64,
        term: u64,
        candidates: (u64, u64),
    },
    /// Log matching broken: `node` holds entry (`index`, `term`) right after an entry of
    /// `prev_term`, but `first_node` held that entry after one of `first_prev`.
    LogMismatch {
        node: u64,
        index: u64,
        term: u64,
        prev_term: u64,
        first_node: u64,
        first_prev: u64,
    },
    /// A leader of `term` moved its commit index onto an entry of an earlier term.
    CommittedEarlierTerm {
        node: u64,
        term: u64,
        index: u64,
        entry_term: u64,
    },
}

/// Checks the observations; returns (terms with a leader, indices compared across nodes).
pub fn check(obs: &[Observation]) -> Result<(usize, usize), Box<RaftViolation>> {
    let mut leaders: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
    // index -> (node, term, tree hash) of the first node that applied it.
    let mut applied: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    let mut compared = 0;
    let mut votes: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    // node -> its latest vote sent (term, candidate).
    let mut last_vote: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    // (index, term) -> (node, term of the entry before it) as first seen: an entry's
    // predecessor is fixed by the leader that created it (Raft's log matching property).
    let mut links: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
    for o in obs {
        match *o {
            Observation::Entries {
                node,
                first,
                prev_term,
                ref terms,
            } => {
                let mut prev = prev_term;
                for (k, &term) in terms.iter().enumerate() {
                    let index = first + k as u64;
                    match links.get(&(index, term)) {
                        Some(&(first_node, first_prev)) if first_prev != prev => {
                            return Err(Box::new(RaftViolation::LogMismatch {
                                node,
                                index,
                                term,
                                prev_term: prev,
                                first_node,
                                first_prev,
                            }));
                        }
                        Some(_) => {}
                        None => {
                            links.insert((index, term), (node, prev));
                        }
                    }
                    prev = term;
                }
            }
            Observation::Vote { node, term, candidate } => {
                if let Some(&first) = votes.get(&(node, term)).filter(|&&c| c != candidate) {
                    return Err(Box::new(RaftViolation::VotedTwice {
                        node,
                        term,
                        candidates: (first, candidate),
                    }));
                }
                votes.insert((node, term), candidate);
                last_vote.insert(node, (term, candidate));
            }
            // A replica that found its storage damaged starts over empty: its votes are gone
            // by design (it then votes in no term it may have voted in; VotedTwice holds it to
            // that across the repair).
            Observation::Event { node, what: "repair" } => {
                last_vote.remove(&node);
            }
            Observation::Recovered { node, term, vote } => {
                if let Some(&(t, c)) = last_vote.get(&node) {
                    if term < t || (term == t && vote != c) {
                        return Err(Box::new(RaftViolation::ForgotVote {
                            node,
                            sent: (t, c),
                            recovered: (term, vote),
                        }));
                    }
                }
            }
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
            Observation::LeaderCommit {
                node,
                term,
                index,
                entry_term,
                ..
            } => {
                if entry_term != term {
                    return Err(Box::new(RaftViolation::CommittedEarlierTerm {
                        node,
                        term,
                        index,
                        entry_term,
                    }));
                }
            }
            Observation::Snapshot { .. }
            | Observation::Event { .. }
            | Observation::Committed { .. }
            | Observation::ConfChange { .. }
            | Observation::ConfAppended { .. } => {}
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
        let commit = |entry_term| Observation::LeaderCommit {
            node: 1,
            term: 4,
            prev: 8,
            index: 9,
            entry_term,
        };
        assert!(check(&[commit(4)]).is_ok());
        let vote = |candidate| Observation::Vote {
            node: 2,
            term: 5,
            candidate,
        };
        assert!(check(&[vote(1), vote(1)]).is_ok(), "the same vote sent again");
        let back = |term, vote| Observation::Recovered { node: 2, term, vote };
        assert!(check(&[vote(1), back(5, 1)]).is_ok());
        assert!(check(&[vote(1), back(6, 0)]).is_ok(), "a later term");
        assert!(matches!(
            *check(&[vote(1), back(5, 0)]).unwrap_err(),
            RaftViolation::ForgotVote { node: 2, .. }
        ));
        assert!(check(&[vote(1), back(4, 3)]).is_err(), "an earlier term");
        let repair = Observation::Event {
            node: 2,
            what: "repair",
        };
        assert!(
            check(&[vote(1), repair.clone(), back(0, 0)]).is_ok(),
            "repaired: starts empty"
        );
        assert!(
            matches!(
                *check(&[vote(1), repair, back(0, 0), vote(3)]).unwrap_err(),
                RaftViolation::VotedTwice { node: 2, term: 5, .. }
            ),
            "but votes in no term it voted in before"
        );
        assert!(matches!(
            *check(&[vote(1), vote(3)]).unwrap_err(),
            RaftViolation::VotedTwice { node: 2, term: 5, .. }
        ));
        assert!(matches!(
            *check(&[commit(2)]).unwrap_err(),
            RaftViolation::CommittedEarlierTerm { entry_term: 2, .. }
        ));
    }

    #[test]
    fn log_matching() {
        let entries = |node, first, prev_term, terms: &[u64]| Observation::Entries {
            node,
            first,
            prev_term,
            terms: terms.to_vec(),
        };
        // Node 1 led term 2 after term 1; node 2 received the same entries in two batches;
        // node 3 kept entry (6, 2) after a snapshot at 5 whose term is 1: the same link.
        let ok = [
            entries(1, 4, 1, &[1, 1, 2, 2]),
            entries(2, 4, 1, &[1]),
            entries(2, 5, 1, &[1, 2]),
            entries(3, 6, 1, &[2]),
            entries(3, 6, 1, &[3]),
        ];
        assert!(check(&ok).is_ok());
        // Node 3 installed a snapshot at 5 of term 3 and kept (6, 2), which node 1 appended
        // after an entry of term 1: a conflicting suffix kept.
        let kept = [entries(1, 4, 1, &[1, 1, 2, 2]), entries(3, 6, 3, &[2])];
        assert!(matches!(
            *check(&kept).unwrap_err(),
            RaftViolation::LogMismatch {
                node: 3,
                index: 6,
                term: 2,
                prev_term: 3,
                first_node: 1,
                first_prev: 1
            }
        ));
        // Inside one batch: (5, 2) after (4, 2) on node 2, after (4, 1) on node 1.
        let inside = [entries(1, 4, 1, &[1, 2]), entries(2, 4, 2, &[2, 2])];
        assert!(check(&inside).is_err());
    }
}
