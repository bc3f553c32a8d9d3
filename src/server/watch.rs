//! Watches of the sessions connected to this server (ZooKeeper's WatchManager): one-shot
//! data/exist/child watches and persistent (recursive) ones, fired by applied transactions.

use crate::jute::{AddWatchMode, EventType, WatcherType};
use crate::tree::path;
use crate::tree::WatchTrigger;
use std::collections::{BTreeMap, BTreeSet};

/// Watch tables keyed by path; sessions are the watchers.
#[derive(Debug, Default)]
pub struct Watches {
    data: BTreeMap<String, BTreeSet<i64>>,
    child: BTreeMap<String, BTreeSet<i64>>,
    persistent: BTreeMap<String, BTreeSet<i64>>,
    recursive: BTreeMap<String, BTreeSet<i64>>,
}

fn add(m: &mut BTreeMap<String, BTreeSet<i64>>, p: &str, s: i64) {
    m.entry(p.to_string()).or_default().insert(s);
}

fn take(m: &mut BTreeMap<String, BTreeSet<i64>>, p: &str) -> BTreeSet<i64> {
    m.remove(p).unwrap_or_default()
}

fn has(m: &BTreeMap<String, BTreeSet<i64>>, p: &str, s: i64) -> bool {
    m.get(p).is_some_and(|w| w.contains(&s))
}

fn remove(m: &mut BTreeMap<String, BTreeSet<i64>>, p: &str, s: i64) -> bool {
    let Some(w) = m.get_mut(p) else { return false };
    let r = w.remove(&s);
    if w.is_empty() {
        m.remove(p);
    }
    r
}

impl Watches {
    /// A data watch (getData, or exists on any node).
    pub fn watch_data(&mut self, p: &str, s: i64) {
        add(&mut self.data, p, s)
    }

    /// A child watch (getChildren).
    pub fn watch_children(&mut self, p: &str, s: i64) {
        add(&mut self.child, p, s)
    }

    /// addWatch.
    pub fn add_persistent(&mut self, p: &str, s: i64, mode: AddWatchMode) {
        match mode {
            AddWatchMode::Persistent => add(&mut self.persistent, p, s),
            AddWatchMode::PersistentRecursive => add(&mut self.recursive, p, s),
        }
    }

    /// The (session, event) notifications a change fires, removing one-shot watches.
    pub fn fire(&mut self, t: &WatchTrigger) -> Vec<(i64, EventType, String)> {
        let mut out: BTreeSet<(i64, i32, String)> = BTreeSet::new();
        let mut push = |sessions: BTreeSet<i64>, e: EventType, p: &str| {
            for s in sessions {
                out.insert((s, e.code(), p.to_string()));
            }
        };
        let p = t.path.as_str();
        match t.event {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                push(take(&mut self.data, p), t.event, p);
            }
            EventType::NodeDeleted => {
                push(take(&mut self.data, p), t.event, p);
                push(take(&mut self.child, p), t.event, p);
            }
            EventType::NodeChildrenChanged => {
                push(take(&mut self.child, p), t.event, p);
            }
            _ => {}
        }
        // Persistent watches on the path see every event; recursive ones on the path or any
        // ancestor see all but child-list changes (those are implied).
        if let Some(w) = self.persistent.get(p) {
            push(w.clone(), t.event, p);
        }
        if t.event != EventType::NodeChildrenChanged {
            let mut cur = Some(p);
            while let Some(c) = cur {
                if let Some(w) = self.recursive.get(c) {
                    push(w.clone(), t.event, p);
                }
                cur = if c == "/" { None } else { path::parent(c) };
            }
        }
        out.into_iter()
            .map(|(s, e, p)| (s, EventType::try_from(e).expect("codes came from EventType"), p))
            .collect()
    }

    /// checkWatches: whether `s` has a watch of `ty` on `p`.
    pub fn contains(&self, p: &str, ty: WatcherType, s: i64) -> bool {
        match ty {
            WatcherType::Children => has(&self.child, p, s),
            WatcherType::Data => has(&self.data, p, s),
            WatcherType::Persistent => has(&self.persistent, p, s),
            WatcherType::PersistentRecursive => has(&self.recursive, p, s),
            WatcherType::Any => {
                has(&self.child, p, s)
                    || has(&self.data, p, s)
                    || has(&self.persistent, p, s)
                    || has(&self.recursive, p, s)
            }
        }
    }

    /// removeWatches: removes and reports whether any was there.
    pub fn remove(&mut self, p: &str, ty: WatcherType, s: i64) -> bool {
        match ty {
            WatcherType::Children => remove(&mut self.child, p, s),
            WatcherType::Data => remove(&mut self.data, p, s),
            WatcherType::Persistent => remove(&mut self.persistent, p, s),
            WatcherType::PersistentRecursive => remove(&mut self.recursive, p, s),
            WatcherType::Any => {
                let a = remove(&mut self.child, p, s);
                let b = remove(&mut self.data, p, s);
                let c = remove(&mut self.persistent, p, s);
                let d = remove(&mut self.recursive, p, s);
                a || b || c || d
            }
        }
    }

    /// Drops every watch of a session (closed or moved away).
    pub fn drop_session(&mut self, s: i64) {
        for m in [
            &mut self.data,
            &mut self.child,
            &mut self.persistent,
            &mut self.recursive,
        ] {
            m.retain(|_, w| {
                w.remove(&s);
                !w.is_empty()
            });
        }
    }

    /// Number of watches, for four-letter words.
    pub fn count(&self) -> usize {
        [&self.data, &self.child, &self.persistent, &self.recursive]
            .iter()
            .map(|m| m.values().map(|w| w.len()).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trig(e: EventType, p: &str) -> WatchTrigger {
        WatchTrigger {
            event: e,
            path: p.into(),
        }
    }

    #[test]
    fn one_shot_and_persistent() {
        let mut w = Watches::default();
        w.watch_data("/a", 1);
        w.watch_children("/", 2);
        w.add_persistent("/", 3, AddWatchMode::PersistentRecursive);
        w.add_persistent("/a", 4, AddWatchMode::Persistent);
        let fired = w.fire(&trig(EventType::NodeDataChanged, "/a"));
        assert_eq!(fired.iter().map(|f| f.0).collect::<Vec<_>>(), vec![1, 3, 4]);
        // One-shot watch is gone, persistent ones stay.
        let fired = w.fire(&trig(EventType::NodeDataChanged, "/a"));
        assert_eq!(fired.iter().map(|f| f.0).collect::<Vec<_>>(), vec![3, 4]);
        let fired = w.fire(&trig(EventType::NodeChildrenChanged, "/"));
        assert_eq!(
            fired.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec![2],
            "recursive watches skip child events"
        );
        assert!(w.contains("/a", WatcherType::Persistent, 4));
        assert!(w.remove("/a", WatcherType::Any, 4));
        assert!(!w.remove("/a", WatcherType::Any, 4));
        w.drop_session(3);
        assert_eq!(w.count(), 0);
    }
}
