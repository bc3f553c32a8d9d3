//! The lock recipe (ephemeral-sequential nodes under a lock parent; the lowest holds the lock).
//! A holder reads the protected register after acquiring, then writes it only through
//! multi [check(its lock node), setData(register, version read)], as a fenced write. ZooKeeper
//! promises enough for this to be mutual exclusion in the order of the log, so:
//! - no guarded write fails with BadVersion (the register changed under a live holder);
//! - versions produced by guarded writes are unique;
//! - in version order, each lock node's writes form one run (holders never interleave);
//! - runs follow the lock nodes' sequence order (the lock is granted first come, first served);
//! - every guarded write comes from a client that had acquired that lock node.

use crate::history::{Op, Outcome, RegOp};
use std::collections::{BTreeMap, BTreeSet};

/// ZooKeeper's BadVersion error code.
pub const BAD_VERSION: i32 = -103;

/// A broken mutual-exclusion guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockViolation {
    /// The register changed between a holder's read and its guarded write.
    ChangedUnderHolder { write: Op },
    /// Two guarded writes produced the same version.
    SameVersion { a: Op, b: Op },
    /// A holder wrote again after another holder had written.
    Interleaved { earlier: Op, other: Op, later: Op },
    /// A later lock node held the lock before an earlier one.
    OutOfOrder { first: Op, then: Op },
    /// A guarded write from a client that never acquired that lock node.
    NotHolder { write: Op },
}

/// Checks the lock history; returns how many guarded writes were checked.
pub fn check(history: &[Op]) -> Result<usize, Box<LockViolation>> {
    let mut acquired: BTreeSet<(u32, &str)> = BTreeSet::new();
    let mut writes: BTreeMap<i32, &Op> = BTreeMap::new();
    for o in history {
        match (&o.op, &o.outcome) {
            (RegOp::LockAcquire, Outcome::Created(name)) => {
                acquired.insert((o.client, name.as_str()));
            }
            (RegOp::LockWrite { .. }, Outcome::Error(BAD_VERSION)) => {
                return Err(Box::new(LockViolation::ChangedUnderHolder { write: o.clone() }));
            }
            (RegOp::LockWrite { lock, .. }, Outcome::Ok(Some((_, version)))) => {
                if !acquired.contains(&(o.client, lock.as_str())) {
                    return Err(Box::new(LockViolation::NotHolder { write: o.clone() }));
                }
                if let Some(a) = writes.insert(*version, o) {
                    return Err(Box::new(LockViolation::SameVersion {
                        a: a.clone(),
                        b: o.clone(),
                    }));
                }
            }
            _ => {}
        }
    }
    let lock_of = |o: &Op| match &o.op {
        RegOp::LockWrite { lock, .. } => lock.clone(),
        _ => unreachable!("only guarded writes are collected"),
    };
    // Walk the writes in version order: (lock node, its first and last write).
    let mut runs: Vec<(String, &Op, &Op)> = vec![];
    let mut finished: BTreeMap<String, &Op> = BTreeMap::new();
    for o in writes.values() {
        let lock = lock_of(o);
        match runs.last_mut() {
            Some((l, _, last)) if *l == lock => *last = o,
            prev => {
                if let Some((l, first, last)) = prev {
                    finished.insert(l.clone(), last);
                    if let Some(earlier) = finished.get(&lock) {
                        return Err(Box::new(LockViolation::Interleaved {
                            earlier: (*earlier).clone(),
                            other: (*last).clone(),
                            later: (*o).clone(),
                        }));
                    }
                    // Sequence names are zero-padded, so string order is sequence order.
                    if lock < *l {
                        return Err(Box::new(LockViolation::OutOfOrder {
                            first: (*first).clone(),
                            then: (*o).clone(),
                        }));
                    }
                }
                runs.push((lock, o, o));
            }
        }
    }
    Ok(writes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acquire(client: u32, lock: &str) -> Op {
        Op {
            client,
            session: client as i64,
            key: "/lock".into(),
            op: RegOp::LockAcquire,
            invoke: 0,
            complete: Some(1),
            outcome: Outcome::Created(lock.into()),
            zxid: 0,
            seq: 0,
        }
    }

    fn write(client: u32, lock: &str, outcome: Outcome) -> Op {
        Op {
            client,
            session: client as i64,
            key: "/lockdata".into(),
            op: RegOp::LockWrite {
                lock: lock.into(),
                value: 1,
            },
            invoke: 2,
            complete: Some(3),
            outcome,
            zxid: 0,
            seq: 0,
        }
    }

    fn ok(version: i32) -> Outcome {
        Outcome::Ok(Some((1, version)))
    }

    const A: &str = "/lock/l-0000000001";
    const B: &str = "/lock/l-0000000002";

    #[test]
    fn accepts_holders_in_turn() {
        let h = [
            acquire(1, A),
            write(1, A, ok(1)),
            write(1, A, ok(2)),
            // The lock was lost (node gone): the fenced write did nothing.
            write(1, A, Outcome::Error(-101)),
            write(1, A, Outcome::Info),
            acquire(2, B),
            write(2, B, ok(4)),
        ];
        assert_eq!(check(&h), Ok(3));
    }

    #[test]
    fn rejects_broken_mutual_exclusion() {
        let bad = |h: &[Op]| *check(h).unwrap_err();
        let h = [acquire(1, A), acquire(2, B), write(2, B, Outcome::Error(BAD_VERSION))];
        assert!(matches!(bad(&h), LockViolation::ChangedUnderHolder { .. }));
        let h = [acquire(1, A), acquire(2, B), write(1, A, ok(1)), write(2, B, ok(1))];
        assert!(matches!(bad(&h), LockViolation::SameVersion { .. }));
        let h = [
            acquire(1, A),
            acquire(2, B),
            write(1, A, ok(1)),
            write(2, B, ok(2)),
            write(1, A, ok(3)),
        ];
        assert!(matches!(bad(&h), LockViolation::Interleaved { .. }));
        let h = [acquire(1, A), acquire(2, B), write(2, B, ok(1)), write(1, A, ok(2))];
        assert!(matches!(bad(&h), LockViolation::OutOfOrder { .. }));
        let h = [acquire(1, A), write(2, A, ok(1))];
        assert!(matches!(bad(&h), LockViolation::NotHolder { .. }));
    }
}
