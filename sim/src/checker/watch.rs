//! Watch ordering: a client sees a watch event before it sees the data that follows the change
//! which fired it. For each client, in the order it recorded things: a `ReadWatch` leaves a
//! data watch at the version it read, a `WatchEvent` clears it, a new connection suspends every
//! watch and a successful `SetWatches` on it (same session) re-arms the ones it names; a read
//! of a watched key showing a newer version before the event is a violation.

use crate::history::{Op, Outcome, RegOp};
use std::collections::BTreeMap;

/// A read that saw newer data before the watch event of the change that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchViolation {
    /// The read that left the watch.
    pub set_by: Op,
    /// The later read that saw a newer version while the watch had not fired.
    pub read: Op,
}

/// Checks every client's reads against its watches; returns how many watches were checked.
pub fn check(history: &[Op]) -> Result<usize, Box<WatchViolation>> {
    let mut by_client: BTreeMap<u32, Vec<&Op>> = BTreeMap::new();
    for o in history {
        by_client.entry(o.client).or_default().push(o);
    }
    let mut watches = 0;
    for ops in by_client.values() {
        // key -> the read that left a pending watch there.
        let mut pending: BTreeMap<&str, &Op> = BTreeMap::new();
        // Watches of earlier connections of this session, until a setWatches re-arms them.
        let mut suspended: BTreeMap<&str, &Op> = BTreeMap::new();
        let mut session = None;
        for o in ops {
            match (&o.op, &o.outcome) {
                (RegOp::Connected, _) => {
                    if session != Some(o.session) {
                        // A new session: the old one's watches are gone for good.
                        suspended.clear();
                        pending.clear();
                        session = Some(o.session);
                    }
                    suspended.append(&mut pending);
                }
                (RegOp::SetWatches(keys), Outcome::Ok(_)) => {
                    for k in keys {
                        if let Some(set) = suspended.remove(k.as_str()) {
                            pending.insert(set.key.as_str(), set);
                        }
                    }
                    suspended.clear();
                }
                (RegOp::WatchEvent, _) => {
                    // setWatches fires missed changes before its reply, so before it is recorded.
                    pending.remove(o.key.as_str());
                    suspended.remove(o.key.as_str());
                }
                (op, Outcome::Ok(Some((_, ver)))) if op.is_read() => match pending.get(o.key.as_str()) {
                    Some(set) => {
                        let Outcome::Ok(Some((_, at))) = set.outcome else {
                            unreachable!("only successful reads leave watches")
                        };
                        if *ver > at {
                            return Err(Box::new(WatchViolation {
                                set_by: (*set).clone(),
                                read: (*o).clone(),
                            }));
                        }
                    }
                    None if *op == RegOp::ReadWatch => {
                        pending.insert(o.key.as_str(), o);
                        watches += 1;
                    }
                    None => {}
                },
                _ => {}
            }
        }
    }
    Ok(watches)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, op: RegOp, key: &str, outcome: Outcome) -> Op {
        Op {
            client,
            session: client as i64,
            key: key.into(),
            op,
            invoke: 0,
            complete: Some(1),
            outcome,
            zxid: 0,
            seq: 0,
        }
    }

    fn read(client: u32, watch: bool, ver: i32) -> Op {
        let kind = if watch { RegOp::ReadWatch } else { RegOp::Read };
        op(client, kind, "/k0", Outcome::Ok(Some((7, ver))))
    }

    fn event(client: u32) -> Op {
        op(client, RegOp::WatchEvent, "/k0", Outcome::Ok(None))
    }

    #[test]
    fn accepts_events_before_newer_data() {
        let h = [
            read(1, true, 3),
            read(1, false, 3),
            event(1),
            read(1, true, 5),
            read(1, false, 5),
        ];
        assert_eq!(check(&h), Ok(2));
        // Another client's event does not matter; a new connection drops the watch.
        let h = [
            read(1, true, 3),
            op(1, RegOp::Connected, "", Outcome::Ok(None)),
            read(1, false, 9),
            read(2, true, 1),
            event(2),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn rejects_newer_data_before_the_event() {
        let h = [read(1, true, 3), read(1, false, 4), event(1)];
        let v = check(&h).unwrap_err();
        assert_eq!(v.read, read(1, false, 4));
        // The event of another client does not clear this client's watch.
        let h = [read(1, true, 3), event(2), read(1, true, 4)];
        assert!(check(&h).is_err());
        // A watch on another key does not clear it either.
        let h = [
            read(1, true, 3),
            op(1, RegOp::WatchEvent, "/k1", Outcome::Ok(None)),
            read(1, false, 4),
        ];
        assert!(check(&h).is_err());
    }

    fn connected(client: u32, session: i64) -> Op {
        Op {
            session,
            ..op(client, RegOp::Connected, "", Outcome::Ok(None))
        }
    }

    fn set_watches(client: u32, outcome: Outcome) -> Op {
        op(client, RegOp::SetWatches(vec!["/k0".into()]), "", outcome)
    }

    #[test]
    fn set_watches_carries_a_watch_to_the_next_connection() {
        // Re-armed: newer data before the event is a violation again.
        let h = [
            connected(1, 1),
            read(1, true, 3),
            connected(1, 1),
            set_watches(1, Outcome::Ok(None)),
            read(1, false, 4),
        ];
        assert_eq!(check(&h).unwrap_err().read, read(1, false, 4));
        // A failed setWatches re-arms nothing; the next one on a later connection does.
        let h = [
            connected(1, 1),
            read(1, true, 3),
            connected(1, 1),
            set_watches(1, Outcome::Info),
            connected(1, 1),
            set_watches(1, Outcome::Ok(None)),
            read(1, false, 4),
        ];
        assert!(check(&h).is_err(), "suspended across connections until re-armed");
        // The missed change fired before setWatches's reply: fine.
        let h = [
            connected(1, 1),
            read(1, true, 3),
            connected(1, 1),
            event(1),
            set_watches(1, Outcome::Ok(None)),
            read(1, false, 4),
        ];
        assert_eq!(check(&h), Ok(1));
        // Not re-sent, or a new session: the watch is gone.
        let h = [connected(1, 1), read(1, true, 3), connected(1, 1), read(1, false, 4)];
        assert!(check(&h).is_ok());
        let h = [
            connected(1, 1),
            read(1, true, 3),
            connected(1, 2),
            set_watches(1, Outcome::Ok(None)),
            read(1, false, 4),
        ];
        assert!(check(&h).is_ok(), "a new session starts without watches");
    }
}
