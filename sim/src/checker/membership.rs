//! Membership changes, from the servers' observations and the nemesis's reconfig attempts:
//! a member added by a reconfig votes only once it holds the log up to where it joined (it
//! caught up as a learner); a leader moves its commit index only onto an entry a quorum of the
//! voters in force holds (a removed member no longer counts, a new one already does); and the
//! ensemble ends with the membership the last successful reconfig reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use zraft::jute::{ErrorCode, ReconfigRequest};
use zraft::raft::{ConfChange, ConfState};
use zraft::server::observer::Observation;

/// One reconfig the nemesis sent.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub request: ReconfigRequest,
    pub outcome: Outcome,
}

/// What came of a reconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with this membership.
    Done(BTreeSet<u64>),
    /// Answered with an error: nothing changed (learners it added were removed again).
    Refused(ErrorCode),
    /// Never reached a server.
    NotSent(String),
    /// No answer (connection lost, timeout): it may have taken effect, partly or wholly.
    Unknown(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done(ids) => write!(f, "now {ids:?}"),
            Outcome::Refused(e) => write!(f, "refused {e:?}"),
            Outcome::NotSent(why) => write!(f, "not sent ({why})"),
            Outcome::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// A broken membership guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipViolation {
    /// `node` became a voter at `index` while its log ended at `held`, before `joined_at`
    /// (where it joined as a learner): it could vote without the log.
    PromotedBehind {
        node: u64,
        index: u64,
        joined_at: u64,
        held: u64,
    },
    /// `leader` moved its commit index to `index` while only `holders` held it: not a quorum
    /// of the voters in force for it.
    CommitWithoutQuorum {
        leader: u64,
        term: u64,
        index: u64,
        holders: Vec<u64>,
        voters: Vec<u64>,
    },
    /// `leader` appended a membership change at `index` while the one at `pending` was not
    /// committed (its commit index: `commit`).
    TwoAtOnce {
        leader: u64,
        index: u64,
        pending: u64,
        commit: u64,
    },
    /// The ensemble ended with `found`, but the last successful reconfig set `expected` (and
    /// every later one was refused).
    FinalMembership {
        expected: BTreeSet<u64>,
        found: BTreeSet<u64>,
    },
}

/// Checks promotions and commits; returns (membership changes applied, commits checked).
///
/// Each node's membership is the latest in its log (Raft's rule: in force once appended), so
/// the checker keeps each node's view: the changes it appended (`ConfAppended`), cut where a
/// later append replaced its log's tail (`Entries`), and the committed ones up to a snapshot
/// it installed. A leader's commit must be held by a quorum of the voters in its view; a
/// leader appends a change only once every earlier change in its log is committed (one at a
/// time: the voters of two configurations in force then always share a quorum).
pub fn check_log(obs: &[Observation], initial: &ConfState) -> Result<(usize, usize), Box<MembershipViolation>> {
    let conf_of = |changes: &mut dyn Iterator<Item = &ConfChange>| {
        let mut c = initial.clone();
        for ch in changes {
            c.apply(ch);
        }
        c
    };
    // Committed changes (applied somewhere), by index.
    let mut committed: BTreeMap<u64, ConfChange> = BTreeMap::new();
    // Each node's log: where it ends, and the changes in it.
    let mut held: BTreeMap<u64, u64> = BTreeMap::new();
    let mut view: BTreeMap<u64, BTreeMap<u64, ConfChange>> = BTreeMap::new();
    // Each leader's term and commit index in it.
    let mut leading: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut commits = 0;
    for o in obs {
        match *o {
            Observation::Leader { node, term } => {
                leading.insert(node, (term, 0));
            }
            // A restart ends a leadership; a repair also empties the log.
            Observation::Recovered { node, .. } => {
                leading.remove(&node);
            }
            Observation::Event { node, what: "repair" } => {
                held.insert(node, 0);
                view.remove(&node);
            }
            Observation::Entries {
                node, first, ref terms, ..
            } if !terms.is_empty() => {
                held.insert(node, first + terms.len() as u64 - 1);
                let v = view.entry(node).or_default();
                v.split_off(&first);
            }
            Observation::Snapshot {
                node,
                index,
                installed: true,
            } => {
                held.insert(node, index);
                let v = view.entry(node).or_default();
                let after = v.split_off(&(index + 1));
                *v = committed.range(..=index).map(|(&i, &c)| (i, c)).collect();
                v.extend(after);
            }
            Observation::ConfAppended {
                node,
                index,
                term,
                change,
            } => {
                let v = view.entry(node).or_default();
                // A leader appends its own proposals: every earlier change must be committed.
                if let Some(&(t, commit)) = leading.get(&node) {
                    if t == term && commit + 1 < index {
                        if let Some((&pending, _)) = v.range(commit + 1..index).next_back() {
                            return Err(Box::new(MembershipViolation::TwoAtOnce {
                                leader: node,
                                index,
                                pending,
                                commit,
                            }));
                        }
                    }
                }
                v.insert(index, change);
            }
            Observation::ConfChange { index, change, .. } => {
                let first = !committed.contains_key(&index);
                committed.entry(index).or_insert(change);
                // Applied somewhere, so committed: the leader proposed it earlier still.
                let ConfChange::AddVoter(x) = change else { continue };
                let before = conf_of(&mut committed.range(..index).map(|(_, c)| c));
                if !first || before.voters.contains(&x) {
                    continue;
                }
                // Where it became a learner; one from the start joined at 0; one added as a
                // voter straight away must hold everything before.
                let joined_at = committed
                    .range(..index)
                    .rev()
                    .find(|(_, c)| **c == ConfChange::AddLearner(x))
                    .map(|(&i, _)| i)
                    .or(initial.learners.contains(&x).then_some(0))
                    .unwrap_or(index - 1);
                let h = held.get(&x).copied().unwrap_or(0);
                if h < joined_at {
                    return Err(Box::new(MembershipViolation::PromotedBehind {
                        node: x,
                        index,
                        joined_at,
                        held: h,
                    }));
                }
            }
            Observation::LeaderCommit { node, term, index, .. } => {
                commits += 1;
                if let Some(l) = leading.get_mut(&node).filter(|l| l.0 == term) {
                    l.1 = l.1.max(index);
                }
                let holders: BTreeSet<u64> = held.iter().filter(|(_, &h)| h >= index).map(|(&n, _)| n).collect();
                let end = held.get(&node).copied().unwrap_or(0);
                let voters = conf_of(
                    &mut view
                        .get(&node)
                        .into_iter()
                        .flat_map(|v| v.range(..=end).map(|(_, c)| c)),
                )
                .voters;
                if voters.iter().filter(|v| holders.contains(v)).count() < voters.len() / 2 + 1 {
                    return Err(Box::new(MembershipViolation::CommitWithoutQuorum {
                        leader: node,
                        term,
                        index,
                        holders: holders.into_iter().collect(),
                        voters: voters.into_iter().collect(),
                    }));
                }
            }
            _ => {}
        }
    }
    Ok((committed.len(), commits))
}

/// The membership the ensemble must end with, if the attempts decide it: the last successful
/// reconfig's (or the initial one), unless a later attempt's outcome is unknown.
pub fn expected_final(initial: &BTreeSet<u64>, attempts: &[Attempt]) -> Option<BTreeSet<u64>> {
    let mut expected = Some(initial.clone());
    for a in attempts {
        match &a.outcome {
            Outcome::Done(ids) => expected = Some(ids.clone()),
            Outcome::Refused(_) | Outcome::NotSent(_) => {}
            Outcome::Unknown(_) => expected = None,
        }
    }
    expected
}

/// Compares the membership found at the end with the expected one (None: undecided).
pub fn check_final(
    initial: &BTreeSet<u64>,
    attempts: &[Attempt],
    found: Option<&BTreeSet<u64>>,
) -> Result<bool, Box<MembershipViolation>> {
    match (expected_final(initial, attempts), found) {
        (Some(expected), Some(found)) if &expected != found => Err(Box::new(MembershipViolation::FinalMembership {
            expected,
            found: found.clone(),
        })),
        (Some(_), Some(_)) => Ok(true),
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> ConfState {
        ConfState::voters([1, 2, 3])
    }

    fn ids(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    fn entries(node: u64, first: u64, last: u64) -> Observation {
        Observation::Entries {
            node,
            first,
            prev_term: 1,
            terms: vec![1; (last - first + 1) as usize],
        }
    }

    /// Applied (committed) at `index`.
    fn change(index: u64, change: ConfChange) -> Observation {
        Observation::ConfChange { node: 1, index, change }
    }

    /// Appended by `node` at `index` in term 1.
    fn appended(node: u64, index: u64, change: ConfChange) -> Observation {
        Observation::ConfAppended {
            node,
            index,
            term: 1,
            change,
        }
    }

    fn commit(index: u64) -> Observation {
        Observation::LeaderCommit {
            node: 1,
            term: 1,
            prev: index - 1,
            index,
            entry_term: 1,
        }
    }

    const LEADER: Observation = Observation::Leader { node: 1, term: 1 };

    #[test]
    fn a_learner_that_caught_up_may_be_promoted() {
        let obs = vec![
            entries(1, 1, 10),
            entries(2, 1, 10),
            change(10, ConfChange::AddLearner(4)),
            entries(4, 1, 12),
            change(12, ConfChange::AddVoter(4)),
        ];
        assert_eq!(check_log(&obs, &three()), Ok((2, 0)));
        // An observer from the start, promoted: it joined at 0.
        let mut with_observer = three();
        with_observer.learners.insert(4);
        let obs = vec![entries(1, 1, 10), entries(4, 1, 3), change(11, ConfChange::AddVoter(4))];
        assert_eq!(check_log(&obs, &with_observer), Ok((1, 0)));
    }

    #[test]
    fn a_promotion_before_the_learner_caught_up_is_rejected() {
        let obs = vec![
            entries(1, 1, 10),
            change(10, ConfChange::AddLearner(4)),
            entries(4, 1, 5),
            change(11, ConfChange::AddVoter(4)),
        ];
        assert_eq!(
            check_log(&obs, &three()),
            Err(Box::new(MembershipViolation::PromotedBehind {
                node: 4,
                index: 11,
                joined_at: 10,
                held: 5
            }))
        );
        // Added as a voter straight away, holding nothing.
        let obs = vec![entries(1, 1, 10), change(11, ConfChange::AddVoter(5))];
        assert!(matches!(
            *check_log(&obs, &three()).unwrap_err(),
            MembershipViolation::PromotedBehind { node: 5, .. }
        ));
    }

    #[test]
    fn commits_need_a_quorum_of_the_voters_in_the_leaders_log() {
        // {1,2,3}; the leader appended 3's removal at 5: commit 8 held by 1 and 3 only is
        // not a quorum of {1,2}.
        let removal = |c| {
            vec![
                LEADER,
                entries(1, 1, 4),
                entries(1, 5, 5),
                appended(1, 5, ConfChange::Remove(3)),
                entries(1, 6, 8),
                entries(2, 1, 5),
                entries(3, 1, 8),
                c,
            ]
        };
        assert_eq!(
            check_log(&removal(commit(8)), &three()),
            Err(Box::new(MembershipViolation::CommitWithoutQuorum {
                leader: 1,
                term: 1,
                index: 8,
                holders: vec![1, 3],
                voters: vec![1, 2]
            }))
        );
        // Index 5 itself, held by all three, commits under {1,2}.
        assert_eq!(check_log(&removal(commit(5)), &three()), Ok((0, 1)));
        // A change its log no longer holds (cut by a later append) is not in force.
        let obs = vec![
            LEADER,
            entries(1, 1, 5),
            appended(1, 5, ConfChange::AddVoter(4)),
            entries(1, 5, 8),
            entries(2, 1, 8),
            commit(8),
        ];
        assert_eq!(check_log(&obs, &three()), Ok((0, 1)));
        // A voter added counts: {1,2,3,4} needs three of them.
        let obs = vec![
            LEADER,
            entries(1, 1, 5),
            appended(1, 5, ConfChange::AddVoter(4)),
            entries(1, 6, 9),
            entries(4, 1, 9),
            commit(9),
        ];
        assert!(matches!(
            *check_log(&obs, &three()).unwrap_err(),
            MembershipViolation::CommitWithoutQuorum { holders, .. } if holders == vec![1, 4]
        ));
    }

    #[test]
    fn a_restarted_or_repaired_node_is_no_longer_judged_as_that_leader() {
        // Leader 1 of term 1 committed 8, restarted and was repaired: a new leader sends it
        // the old entries again, a change of term 1 among them.
        let obs = vec![
            LEADER,
            entries(1, 1, 8),
            entries(2, 1, 8),
            commit(8),
            Observation::Event {
                node: 1,
                what: "repair",
            },
            Observation::Recovered {
                node: 1,
                term: 0,
                vote: 0,
            },
            entries(1, 1, 8),
            appended(1, 5, ConfChange::AddVoter(4)),
            appended(1, 6, ConfChange::AddVoter(5)),
        ];
        assert!(check_log(&obs, &three()).is_ok());
    }

    #[test]
    fn a_leader_changes_the_membership_one_committed_step_at_a_time() {
        let steps = |c: Vec<Observation>| {
            let mut o = vec![
                LEADER,
                entries(1, 1, 5),
                entries(2, 1, 5),
                appended(1, 5, ConfChange::AddVoter(4)),
            ];
            o.extend(c);
            o.extend([entries(1, 6, 6), appended(1, 6, ConfChange::AddVoter(5))]);
            check_log(&o, &ConfState::voters([1, 2, 3, 4]))
        };
        assert_eq!(
            steps(vec![]),
            Err(Box::new(MembershipViolation::TwoAtOnce {
                leader: 1,
                index: 6,
                pending: 5,
                commit: 0
            }))
        );
        // Once 5 committed, the next may go.
        assert!(steps(vec![entries(3, 1, 5), entries(4, 1, 5), commit(5)]).is_ok());
    }

    #[test]
    fn the_final_membership_is_the_last_successful_one() {
        let init = ids(&[1, 2, 3]);
        let a = |outcome| Attempt {
            request: ReconfigRequest {
                joining_servers: None,
                leaving_servers: None,
                new_members: None,
                cur_config_id: -1,
            },
            outcome,
        };
        let attempts = vec![
            a(Outcome::Done(ids(&[1, 2, 3, 4]))),
            a(Outcome::Refused(ErrorCode::NewConfigNoQuorum)),
        ];
        assert_eq!(check_final(&init, &attempts, Some(&ids(&[1, 2, 3, 4]))), Ok(true));
        assert!(check_final(&init, &attempts, Some(&ids(&[1, 2, 3]))).is_err());
        assert_eq!(check_final(&init, &[], Some(&init)), Ok(true));
        assert!(check_final(&init, &[], Some(&ids(&[1, 2]))).is_err());
        // An unanswered one leaves it open.
        let mut open = attempts.clone();
        open.push(a(Outcome::Unknown("timeout".into())));
        assert_eq!(check_final(&init, &open, Some(&ids(&[1, 2]))), Ok(false));
        assert_eq!(check_final(&init, &attempts, None), Ok(false));
    }
}
