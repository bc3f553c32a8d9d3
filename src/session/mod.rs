//! Sessions: id and password generation, timeout negotiation, and the leader's expiry tracker
//! (ZooKeeper's SessionTracker). Pure: time comes in as arguments.

use sha1::{Digest, Sha1};
use std::collections::BTreeMap;

/// Mixed into session passwords, as ZooKeeper's `superSecret`.
const SECRET: u64 = 0xB341_5C00;

/// The password of a session: derived from its id, so every server can check it.
pub fn password(session_id: i64) -> Vec<u8> {
    let mut h = Sha1::new();
    h.update(session_id.to_be_bytes());
    h.update(SECRET.to_be_bytes());
    h.finalize()[..16].to_vec()
}

/// Session ids are `myid << 56 | counter`, the counter seeded from the start time as in
/// ZooKeeper (`initializeNextSessionId`), so ids from different servers never collide.
#[derive(Debug, Clone)]
pub struct SessionIds {
    next: i64,
}

impl SessionIds {
    /// Ids for server `my_id`, started at `now_ms`.
    pub fn new(my_id: u64, now_ms: i64) -> Self {
        let base = ((now_ms << 24) as u64 >> 8) as i64;
        SessionIds {
            next: base | ((my_id as i64) << 56),
        }
    }

    /// A fresh id.
    pub fn next_id(&mut self) -> i64 {
        self.next += 1;
        self.next
    }
}

/// Clamps a requested timeout to [min, max] as ZooKeeper does.
pub fn negotiate_timeout(requested: i32, min: i32, max: i32) -> i32 {
    requested.clamp(min, max)
}

/// The leader's view of session liveness.
#[derive(Debug, Default, Clone)]
pub struct SessionTracker {
    /// session -> (timeout ms, last heard ms).
    live: BTreeMap<i64, (i32, i64)>,
}

impl SessionTracker {
    /// Starts tracking every session of `sessions` as just heard from (a new leader must not
    /// expire sessions that were alive under the old one).
    pub fn reset(&mut self, sessions: &BTreeMap<i64, i32>, now: i64) {
        self.live = sessions.iter().map(|(&s, &t)| (s, (t, now))).collect();
    }

    /// Records activity.
    pub fn touch(&mut self, session: i64, now: i64) {
        if let Some(e) = self.live.get_mut(&session) {
            e.1 = e.1.max(now);
        }
    }

    /// Adds a session (created) with its timeout.
    pub fn add(&mut self, session: i64, timeout: i32, now: i64) {
        self.live.insert(session, (timeout, now));
    }

    /// Forgets a session (closed).
    pub fn remove(&mut self, session: i64) {
        self.live.remove(&session);
    }

    /// Sessions silent for longer than their timeout, in id order.
    pub fn expired(&self, now: i64) -> Vec<i64> {
        self.live
            .iter()
            .filter(|(_, (t, last))| now - last > *t as i64)
            .map(|(s, _)| *s)
            .collect()
    }

    /// Whether a session is tracked.
    pub fn contains(&self, session: i64) -> bool {
        self.live.contains_key(&session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_do_not_collide_across_servers() {
        let mut a = SessionIds::new(1, 1_700_000_000_000);
        let mut b = SessionIds::new(2, 1_700_000_000_000);
        let (x, y) = (a.next_id(), b.next_id());
        assert_ne!(x, y);
        assert_eq!(x >> 56, 1);
        assert_eq!(y >> 56, 2);
        assert_eq!(password(x), password(x));
        assert_ne!(password(x), password(y));
    }

    #[test]
    fn expiry_table() {
        let mut t = SessionTracker::default();
        t.add(1, 4000, 0);
        t.add(2, 10000, 0);
        t.touch(1, 3000);
        assert_eq!(t.expired(5000), Vec::<i64>::new());
        assert_eq!(t.expired(7001), vec![1]);
        assert_eq!(t.expired(10001), vec![1, 2]);
        let mut sessions = BTreeMap::new();
        sessions.insert(1, 4000);
        t.reset(&sessions, 20000);
        assert_eq!(t.expired(23000), Vec::<i64>::new());
        assert!(!t.contains(2));
        assert_eq!(negotiate_timeout(1000, 4000, 40000), 4000);
        assert_eq!(negotiate_timeout(100000, 4000, 40000), 40000);
    }
}
