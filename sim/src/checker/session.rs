//! ZooKeeper's session guarantees over a history, for every read (synced or plain), in the
//! order the session sent its requests (pipelined or not): replies come back in that order
//! (FIFO client order); the zxids in a session's replies never go backwards, whichever server
//! answers (single system image);
//! a session never reads an older version of a key than one it already saw (monotonic reads);
//! every acknowledged write is visible to later reads of the same session (read-your-writes,
//! checked through versions).

use crate::history::{Op, Outcome, RegOp};
use std::collections::BTreeMap;

/// A broken session guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionViolation {
    ZxidWentBack { session: i64, before: Op, after: Op },
    MissedOwnWrite { session: i64, write: Op, read: Op },
    VersionWentBack { session: i64, before: Op, after: Op },
    RepliesOutOfOrder { session: i64, seen: Op },
}

/// Checks per-session monotonic zxids and read-your-writes.
pub fn check(history: &[Op]) -> Result<usize, Box<SessionViolation>> {
    let mut by_session: BTreeMap<i64, Vec<&Op>> = BTreeMap::new();
    for o in history
        .iter()
        .filter(|o| o.complete.is_some() && o.outcome != Outcome::Info)
    {
        by_session.entry(o.session).or_default().push(o);
    }
    let mut checked = 0;
    for (s, mut ops) in by_session {
        // Request order: a client records its operations in the order it sent them.
        ops.sort_by_key(|o| (o.seq, o.complete));
        let mut last: Option<&Op> = None;
        // key -> version of our last acknowledged write to it (known only for CAS).
        let mut wrote: BTreeMap<&str, &Op> = BTreeMap::new();
        // key -> the read that showed the newest version so far.
        let mut seen: BTreeMap<&str, (&Op, i32)> = BTreeMap::new();
        for o in ops {
            checked += 1;
            if let Some(l) = last {
                if o.zxid > 0 && l.zxid > 0 && o.zxid < l.zxid {
                    return Err(Box::new(SessionViolation::ZxidWentBack {
                        session: s,
                        before: l.clone(),
                        after: o.clone(),
                    }));
                }
            }
            if o.zxid > 0 {
                last = Some(o);
            }
            match (&o.op, &o.outcome) {
                (RegOp::OutOfOrder, _) => {
                    return Err(Box::new(SessionViolation::RepliesOutOfOrder {
                        session: s,
                        seen: o.clone(),
                    }));
                }
                (RegOp::Cas { .. }, Outcome::Ok(_)) => {
                    wrote.insert(o.key.as_str(), o);
                }
                (op, Outcome::Ok(Some((_, ver)))) if op.is_read() => {
                    match seen.get(o.key.as_str()) {
                        Some(&(before, v)) if *ver < v => {
                            return Err(Box::new(SessionViolation::VersionWentBack {
                                session: s,
                                before: before.clone(),
                                after: o.clone(),
                            }));
                        }
                        _ => {
                            seen.insert(o.key.as_str(), (o, *ver));
                        }
                    }
                    if let Some(w) = wrote.get(o.key.as_str()) {
                        if let RegOp::Cas { version, .. } = w.op {
                            if *ver < version + 1 {
                                return Err(Box::new(SessionViolation::MissedOwnWrite {
                                    session: s,
                                    write: (*w).clone(),
                                    read: o.clone(),
                                }));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(session: i64, op: RegOp, t: u64, outcome: Outcome, zxid: i64) -> Op {
        Op {
            client: 1,
            session,
            key: "k".into(),
            op,
            invoke: t,
            complete: Some(t + 1),
            outcome,
            zxid,
            seq: t,
        }
    }

    #[test]
    fn accepts_and_rejects() {
        let good = [
            op(1, RegOp::Cas { version: 0, value: 1 }, 0, Outcome::Ok(None), 10),
            op(1, RegOp::Read, 5, Outcome::Ok(Some((1, 1))), 12),
        ];
        assert!(check(&good).is_ok());
        let back = [
            op(1, RegOp::Write(1), 0, Outcome::Ok(None), 10),
            op(1, RegOp::Read, 5, Outcome::Ok(Some((1, 0))), 9),
        ];
        assert!(matches!(
            check(&back).map_err(|e| *e),
            Err(SessionViolation::ZxidWentBack { .. })
        ));
        let missed = [
            op(1, RegOp::Cas { version: 3, value: 1 }, 0, Outcome::Ok(None), 10),
            op(1, RegOp::Read, 5, Outcome::Ok(Some((0, 3))), 11),
        ];
        assert!(matches!(
            check(&missed).map_err(|e| *e),
            Err(SessionViolation::MissedOwnWrite { .. })
        ));
        // Plain reads may lag other sessions, never this session's own past.
        let plain = [
            op(1, RegOp::Read, 0, Outcome::Ok(Some((4, 4))), 10),
            op(2, RegOp::PlainRead, 2, Outcome::Ok(Some((2, 2))), 8),
            op(1, RegOp::PlainRead, 5, Outcome::Ok(Some((4, 4))), 10),
        ];
        assert!(check(&plain).is_ok());
        let went_back = [
            op(1, RegOp::Read, 0, Outcome::Ok(Some((4, 4))), 10),
            op(1, RegOp::PlainRead, 5, Outcome::Ok(Some((3, 3))), 0),
        ];
        assert!(matches!(
            check(&went_back).map_err(|e| *e),
            Err(SessionViolation::VersionWentBack { .. })
        ));
    }

    #[test]
    fn pipelined_requests_are_checked_in_request_order() {
        // Sent together (same invoke), recorded in request order: CAS v0, read, CAS v1, read.
        let at = |seq: u64, op: RegOp, outcome: Outcome, zxid: i64| Op {
            seq,
            invoke: 0,
            complete: Some(100),
            ..super::tests::op(1, op, 0, outcome, zxid)
        };
        let good = [
            at(1, RegOp::Cas { version: 0, value: 1 }, Outcome::Ok(None), 10),
            at(2, RegOp::PlainRead, Outcome::Ok(Some((1, 1))), 10),
            at(3, RegOp::Cas { version: 1, value: 2 }, Outcome::Ok(None), 11),
            at(4, RegOp::PlainRead, Outcome::Ok(Some((2, 2))), 11),
        ];
        assert!(check(&good).is_ok());
        // The read sent after the CAS was answered from before it (read-ahead).
        let ahead = [
            at(1, RegOp::Cas { version: 0, value: 1 }, Outcome::Ok(None), 10),
            at(2, RegOp::PlainRead, Outcome::Ok(Some((0, 0))), 9),
        ];
        assert!(check(&ahead).is_err());
        // The same read with the zxid of its own session's write: still missed the write.
        let missed = [
            at(1, RegOp::Cas { version: 0, value: 1 }, Outcome::Ok(None), 10),
            at(2, RegOp::PlainRead, Outcome::Ok(Some((0, 0))), 10),
        ];
        assert!(matches!(
            check(&missed).map_err(|e| *e),
            Err(SessionViolation::MissedOwnWrite { .. })
        ));
        let out_of_order = [
            at(1, RegOp::Cas { version: 0, value: 1 }, Outcome::Info, 0),
            at(2, RegOp::OutOfOrder, Outcome::Ok(None), 0),
        ];
        assert!(matches!(
            check(&out_of_order).map_err(|e| *e),
            Err(SessionViolation::RepliesOutOfOrder { .. })
        ));
    }
}
