//! Ephemerals exist exactly while their session lives. Present: a successful listing by the
//! creating session (so the session still answered) must show every ephemeral that session
//! created before the listing began — the workload never deletes them itself. Gone: once every
//! client has vanished without closing its session and the longest session timeout has passed,
//! no ephemeral may remain.

use crate::history::{Op, Outcome, RegOp};
use std::collections::BTreeMap;

/// A broken ephemeral guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EphemeralViolation {
    /// The session's own listing lacked an ephemeral it had created.
    Missing { create: Box<Op>, list: Box<Op> },
    /// Ephemerals still present after every session had expired.
    Outlived { names: Vec<String> },
}

/// Checks listings against creates, and the final listing of ephemerals (`leftover`: full paths
/// still present when every session should be gone); returns how many presences were checked.
pub fn check(history: &[Op], leftover: &[String]) -> Result<usize, Box<EphemeralViolation>> {
    if !leftover.is_empty() {
        return Err(Box::new(EphemeralViolation::Outlived {
            names: leftover.to_vec(),
        }));
    }
    // (session, parent) -> its ephemeral creates.
    let mut created: BTreeMap<(i64, &str), Vec<&Op>> = BTreeMap::new();
    for o in history {
        if let (RegOp::SeqCreate, Outcome::Created(_)) = (&o.op, &o.outcome) {
            created.entry((o.session, o.key.as_str())).or_default().push(o);
        }
    }
    let mut checked = 0;
    for l in history {
        let (RegOp::ListChildren, Outcome::Children(children)) = (&l.op, &l.outcome) else {
            continue;
        };
        for c in created.get(&(l.session, l.key.as_str())).into_iter().flatten() {
            let Outcome::Created(path) = &c.outcome else {
                unreachable!("filtered above")
            };
            if c.complete.is_none_or(|t| t >= l.invoke) {
                continue;
            }
            let name = path.rsplit('/').next().unwrap_or(path);
            if !children.iter().any(|n| n == name) {
                return Err(Box::new(EphemeralViolation::Missing {
                    create: Box::new((*c).clone()),
                    list: Box::new(l.clone()),
                }));
            }
            checked += 1;
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(session: i64, op: RegOp, t: u64, outcome: Outcome) -> Op {
        Op {
            client: 1,
            session,
            key: "/eph".into(),
            op,
            invoke: t,
            complete: Some(t + 1),
            outcome,
            zxid: 0,
            seq: 0,
        }
    }

    fn create(session: i64, t: u64, name: &str) -> Op {
        op(session, RegOp::SeqCreate, t, Outcome::Created(format!("/eph/{name}")))
    }

    fn list(session: i64, t: u64, names: &[&str]) -> Op {
        let names = names.iter().map(|n| n.to_string()).collect();
        op(session, RegOp::ListChildren, t, Outcome::Children(names))
    }

    #[test]
    fn accepts_present_ephemerals() {
        let h = [
            create(1, 0, "s-1"),
            create(2, 0, "s-2"),
            // Session 1 lists after its create: sees it (and may see others or not).
            list(1, 10, &["s-1"]),
            // A create still in flight when the listing began need not show.
            create(1, 20, "s-3"),
            list(1, 20, &["s-1", "s-2"]),
        ];
        assert_eq!(check(&h, &[]), Ok(2));
    }

    #[test]
    fn rejects_missing_and_outliving_ephemerals() {
        let h = [create(1, 0, "s-1"), create(1, 5, "s-2"), list(1, 10, &["s-2"])];
        assert!(matches!(
            *check(&h, &[]).unwrap_err(),
            EphemeralViolation::Missing { .. }
        ));
        // Another session's listing proves nothing about session 1, but leftovers do.
        let h = [create(1, 0, "s-1"), list(2, 10, &[])];
        assert!(check(&h, &[]).is_ok());
        assert!(matches!(
            *check(&h, &["/eph/s-1".into()]).unwrap_err(),
            EphemeralViolation::Outlived { .. }
        ));
    }
}
