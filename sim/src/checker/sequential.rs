//! Sequential znodes: names under one parent are unique, and a create that finished before
//! another began got the smaller sequence number (they come from the parent's cversion,
//! which only a linearizable write path increments in order).

use crate::history::{Op, Outcome, RegOp};
use std::collections::BTreeMap;

/// A broken sequential-node guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeqViolation {
    Duplicate { name: String, first: Op, second: Op },
    OutOfOrder { earlier: Op, later: Op },
}

/// Checks every parent's sequential creates; returns how many were checked.
pub fn check(history: &[Op]) -> Result<usize, Box<SeqViolation>> {
    let mut by_parent: BTreeMap<&str, Vec<(&Op, &str)>> = BTreeMap::new();
    for o in history {
        if let (RegOp::SeqCreate, Outcome::Created(name)) = (&o.op, &o.outcome) {
            by_parent.entry(o.key.as_str()).or_default().push((o, name.as_str()));
        }
    }
    let mut n = 0;
    for ops in by_parent.values() {
        let mut seen: BTreeMap<&str, &Op> = BTreeMap::new();
        for (o, name) in ops {
            if let Some(first) = seen.insert(name, o) {
                return Err(Box::new(SeqViolation::Duplicate {
                    name: name.to_string(),
                    first: first.clone(),
                    second: (*o).clone(),
                }));
            }
        }
        // Real-time order: sort by completion; every op invoked after another completed
        // must have a larger name. Checking against the largest name among ops completed
        // before each invoke is enough.
        let mut by_complete: Vec<&(&Op, &str)> = ops.iter().collect();
        by_complete.sort_by_key(|(o, _)| o.complete);
        let mut by_invoke: Vec<&(&Op, &str)> = ops.iter().collect();
        by_invoke.sort_by_key(|(o, _)| o.invoke);
        let mut best: Option<&(&Op, &str)> = None;
        let mut i = 0;
        for later in by_invoke {
            while i < by_complete.len() && by_complete[i].0.complete.is_some_and(|c| c < later.0.invoke) {
                if best.is_none_or(|b| by_complete[i].1 > b.1) {
                    best = Some(by_complete[i]);
                }
                i += 1;
            }
            if let Some(b) = best {
                if later.1 <= b.1 {
                    return Err(Box::new(SeqViolation::OutOfOrder {
                        earlier: b.0.clone(),
                        later: later.0.clone(),
                    }));
                }
            }
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(t0: u64, t1: u64, name: &str) -> Op {
        Op {
            client: 1,
            session: 1,
            key: "/seq".into(),
            op: RegOp::SeqCreate,
            invoke: t0,
            complete: Some(t1),
            outcome: Outcome::Created(name.into()),
            zxid: 0,
            seq: 0,
        }
    }

    #[test]
    fn accepts_and_rejects() {
        assert!(check(&[op(0, 10, "/seq/s-0000000000"), op(20, 30, "/seq/s-0000000001")]).is_ok());
        // Concurrent creates may land in either order.
        assert!(check(&[op(0, 10, "/seq/s-0000000001"), op(5, 15, "/seq/s-0000000000")]).is_ok());
        let dup = [op(0, 10, "/seq/s-0000000000"), op(20, 30, "/seq/s-0000000000")];
        assert!(matches!(*check(&dup).unwrap_err(), SeqViolation::Duplicate { .. }));
        let back = [op(0, 10, "/seq/s-0000000005"), op(20, 30, "/seq/s-0000000003")];
        assert!(matches!(*check(&back).unwrap_err(), SeqViolation::OutOfOrder { .. }));
    }
}
