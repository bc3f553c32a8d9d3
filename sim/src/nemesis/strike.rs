//! The state-aware nemesis's triggers: pure predicates over the servers' live protocol states
//! (as the observer holds them), each naming the server to strike once the narrow window it
//! waits for opens. `armed` is the state when the nemesis started waiting, so that only a
//! change since then triggers ("right after it voted", "the moment it is elected").

use std::collections::BTreeMap;
use zraft::raft::Role;
use zraft::server::observer::Live;

/// The states as reported; node ids are 1-based.
pub type States = BTreeMap<u64, Live>;

/// The leader of the highest term among `up` servers.
pub fn leader(states: &States, up: &dyn Fn(u64) -> bool) -> Option<u64> {
    states
        .iter()
        .filter(|(id, l)| up(**id) && l.role == Role::Leader)
        .max_by_key(|(_, l)| l.term)
        .map(|(id, _)| *id)
}

/// A leader whose newest entry (of its own term, not committed) is held by at least
/// `min_holders` servers counting itself, but fewer than a quorum of `n`.
pub fn minority_append(states: &States, n: usize, min_holders: usize, up: &dyn Fn(u64) -> bool) -> Option<u64> {
    let id = leader(states, up)?;
    let l = states[&id];
    if l.last_index <= l.commit || l.last_term != l.term {
        return None;
    }
    let holders = states
        .values()
        .filter(|s| s.last_index >= l.last_index && s.last_term == l.term)
        .count();
    (holders >= min_holders && holders < n / 2 + 1).then_some(id)
}

/// The first server that is up and satisfies `pred` (its id and state).
fn first_up(states: &States, up: &dyn Fn(u64) -> bool, pred: impl Fn(u64, &Live) -> bool) -> Option<u64> {
    states
        .iter()
        .find(|(id, l)| up(**id) && pred(**id, l))
        .map(|(id, _)| *id)
}

/// A server that voted for another since `armed`.
pub fn voted(states: &States, armed: &States, up: &dyn Fn(u64) -> bool) -> Option<u64> {
    first_up(states, up, |id, l| {
        l.vote != 0 && l.vote != id && armed.get(&id).is_none_or(|a| (a.term, a.vote) != (l.term, l.vote))
    })
}

/// A server that became a candidate (not a pre-candidate) since `armed`.
pub fn candidate(states: &States, armed: &States, up: &dyn Fn(u64) -> bool) -> Option<u64> {
    first_up(states, up, |id, l| {
        l.role == Role::Candidate
            && armed
                .get(&id)
                .is_none_or(|a| a.role != Role::Candidate || a.term != l.term)
    })
}

/// A server that became leader since `armed` and has not committed an entry of its term.
pub fn new_leader(states: &States, armed: &States, up: &dyn Fn(u64) -> bool) -> Option<u64> {
    first_up(states, up, |id, l| {
        l.role == Role::Leader
            && l.commit < l.last_index
            && armed
                .get(&id)
                .is_none_or(|a| a.role != Role::Leader || a.term != l.term)
    })
}

/// A server that became leader since `armed` with more than its first entry uncommitted
/// (entries of earlier terms it must not commit by counting).
pub fn new_leader_with_old_tail(states: &States, armed: &States, up: &dyn Fn(u64) -> bool) -> Option<u64> {
    new_leader(states, armed, up).filter(|id| {
        let l = states[id];
        l.last_index > l.commit + 1
    })
}

/// A server that took or installed a snapshot since `armed`.
pub fn snapshotted(states: &States, armed: &States, up: &dyn Fn(u64) -> bool) -> Option<u64> {
    first_up(states, up, |id, l| {
        armed.get(&id).is_some_and(|a| l.snapshots > a.snapshots)
    })
}

/// A leader of a later term than `deposed`'s log whose latest snapshot ends inside
/// `deposed`'s uncommitted tail (past its commit, before its last entry): were `deposed` to
/// rejoin now, it would catch up by installing that snapshot over a conflicting entry, with
/// entries of its own after it.
pub fn snapshot_inside_tail(states: &States, deposed: u64, up: &dyn Fn(u64) -> bool) -> Option<u64> {
    let d = states.get(&deposed)?;
    let id = leader(states, up).filter(|&id| id != deposed)?;
    let l = states[&id];
    (l.term > d.last_term && l.snapshot_index > d.commit && l.snapshot_index < d.last_index).then_some(id)
}

/// The windows `victim` is in right now, for tracing what a random fault happened to hit.
pub fn windows(states: &States, n: usize, victim: u64, up: &dyn Fn(u64) -> bool) -> Vec<&'static str> {
    let mut w = vec![];
    if minority_append(states, n, 1, up) == Some(victim) {
        w.push("minority-append");
    }
    if let Some(l) = states.get(&victim) {
        if l.role == Role::Leader && l.commit < l.last_index && l.last_term == l.term {
            w.push("uncommitted-leader");
        }
        if l.role == Role::Candidate {
            w.push("candidate");
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(role: Role, term: u64, vote: u64, last: (u64, u64), commit: u64) -> Live {
        Live {
            role,
            term,
            vote,
            last_index: last.0,
            last_term: last.1,
            commit,
            snapshots: 0,
            snapshot_index: 0,
        }
    }

    #[test]
    fn minority_append_needs_a_current_uncommitted_entry_on_fewer_than_a_quorum() {
        let all = |_| true;
        let mut s: States = [
            (1, live(Role::Leader, 3, 1, (10, 3), 9)),
            (2, live(Role::Follower, 3, 1, (10, 3), 9)),
            (3, live(Role::Follower, 3, 1, (9, 3), 9)),
            (4, live(Role::Follower, 3, 1, (9, 3), 9)),
            (5, live(Role::Follower, 3, 1, (8, 2), 8)),
        ]
        .into();
        assert_eq!(minority_append(&s, 5, 2, &all), Some(1));
        assert_eq!(minority_append(&s, 5, 3, &all), None, "only two hold it");
        s.get_mut(&3).unwrap().last_index = 10;
        assert_eq!(minority_append(&s, 5, 1, &all), None, "a quorum holds it");
        s.get_mut(&1).unwrap().commit = 10;
        assert_eq!(minority_append(&s, 5, 1, &all), None, "committed");
        assert_eq!(minority_append(&s, 5, 1, &|id| id != 1), None, "the leader is down");
    }

    #[test]
    fn triggers_fire_only_on_changes_since_arming() {
        let all = |_| true;
        let armed: States = [
            (1, live(Role::Follower, 2, 3, (5, 2), 5)),
            (2, live(Role::Leader, 2, 2, (5, 2), 5)),
        ]
        .into();
        assert_eq!(voted(&armed, &armed, &all), None);
        assert_eq!(new_leader(&armed, &armed, &all), None);
        let mut now = armed.clone();
        now.insert(1, live(Role::Follower, 3, 4, (5, 2), 5));
        now.insert(2, live(Role::Leader, 3, 2, (6, 3), 5));
        assert_eq!(voted(&now, &armed, &all), Some(1));
        assert_eq!(voted(&now, &armed, &|id| id != 1), None);
        assert_eq!(new_leader(&now, &armed, &all), Some(2));
        now.insert(3, live(Role::Candidate, 4, 3, (6, 3), 5));
        assert_eq!(candidate(&now, &armed, &all), Some(3));
        assert_eq!(snapshotted(&now, &armed, &all), None);
        now.get_mut(&1).unwrap().snapshots = 1;
        assert_eq!(snapshotted(&now, &armed, &all), Some(1));
        // Node 3 holds node 2's newest entry too: on 3 servers that is a quorum.
        assert_eq!(windows(&now, 3, 2, &all), vec!["uncommitted-leader"]);
        assert_eq!(windows(&now, 5, 2, &all), vec!["minority-append", "uncommitted-leader"]);
    }

    #[test]
    fn snapshot_inside_tail_needs_a_later_leader_snapshotted_between_commit_and_last() {
        let all = |_| true;
        // Node 1 led term 2 and holds 10..=14 uncommitted; node 2 leads term 3.
        let mut s: States = [
            (1, live(Role::Follower, 3, 0, (14, 2), 9)),
            (2, live(Role::Leader, 3, 2, (30, 3), 28)),
            (3, live(Role::Follower, 3, 2, (30, 3), 28)),
        ]
        .into();
        let at = |s: &mut States, i| s.get_mut(&2).unwrap().snapshot_index = i;
        at(&mut s, 9);
        assert_eq!(snapshot_inside_tail(&s, 1, &all), None, "covers only committed entries");
        at(&mut s, 14);
        assert_eq!(snapshot_inside_tail(&s, 1, &all), None, "no entry of its own after it");
        at(&mut s, 12);
        assert_eq!(snapshot_inside_tail(&s, 1, &all), Some(2));
        assert_eq!(snapshot_inside_tail(&s, 1, &|id| id != 2), None, "the leader is down");
        s.get_mut(&1).unwrap().last_term = 3;
        assert_eq!(
            snapshot_inside_tail(&s, 1, &all),
            None,
            "its tail is of the leader's term"
        );
    }
}
