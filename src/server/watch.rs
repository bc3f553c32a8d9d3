//! Watches of the sessions connected to this server, kept as ZooKeeper 3.8 keeps them: two
//! managers (data and child), each mapping a path to its watchers with one mode per
//! (watcher, path) — the last one registered. Clients see the consequences, so they are copied
//! exactly: a watch registered twice fires once; a one-shot watch registered on a path that
//! has a persistent one makes it one-shot; a deletion notifies a session once even when it
//! watched both the data and the children; persistent and recursive watches sit in both
//! managers (recursive ones never fire for child-list changes, so in the child manager they
//! fire only for deletions: that shows once a one-shot data watch replaced the data side).

use crate::jute::{AddWatchMode, EventType, WatcherType};
use crate::tree::path;
use crate::tree::WatchTrigger;
use std::collections::{BTreeMap, BTreeSet};

/// How a watch fires (ZooKeeper's WatcherMode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Once, then it is gone.
    Standard,
    /// On every event at its path.
    Persistent,
    /// On every event at its path or below, except child-list changes.
    Recursive,
}

/// One of ZooKeeper's two WatchManagers: path → session → mode.
#[derive(Debug, Default)]
struct Manager {
    table: BTreeMap<String, BTreeMap<i64, Mode>>,
    /// Recursive entries, so that ancestors are looked at only when some exist.
    recursive: usize,
}

impl Manager {
    fn add(&mut self, p: &str, s: i64, mode: Mode) {
        let old = self.table.entry(p.to_string()).or_default().insert(s, mode);
        self.recursive += usize::from(mode == Mode::Recursive);
        self.recursive -= usize::from(old == Some(Mode::Recursive));
    }

    fn remove(&mut self, p: &str, s: i64) -> bool {
        let Some(w) = self.table.get_mut(p) else { return false };
        let Some(old) = w.remove(&s) else { return false };
        if w.is_empty() {
            self.table.remove(p);
        }
        self.recursive -= usize::from(old == Mode::Recursive);
        true
    }

    /// The sessions an event at `p` notifies, removing the one-shot watches it uses up.
    fn trigger(&mut self, p: &str, event: EventType) -> BTreeSet<i64> {
        let mut fired = BTreeSet::new();
        let mut cur = Some(p);
        let mut at_parent = false;
        while let Some(c) = cur {
            if let Some(w) = self.table.get_mut(c) {
                w.retain(|&s, mode| match mode {
                    Mode::Recursive => {
                        if event != EventType::NodeChildrenChanged {
                            fired.insert(s);
                        }
                        true
                    }
                    _ if at_parent => true,
                    Mode::Persistent => {
                        fired.insert(s);
                        true
                    }
                    Mode::Standard => {
                        fired.insert(s);
                        false
                    }
                });
                if w.is_empty() {
                    self.table.remove(c);
                }
            }
            if self.recursive == 0 {
                break;
            }
            at_parent = true;
            cur = if c == "/" { None } else { path::parent(c) };
        }
        fired
    }

    /// ZooKeeper's containsWatcher: true if the path has any watcher at all (3.8 does not ask
    /// whether it is this session's), or this session's mode there is recursive.
    fn contains(&self, p: &str, s: i64) -> bool {
        self.table.contains_key(p) || self.table.get(p).and_then(|w| w.get(&s)) == Some(&Mode::Recursive)
    }

    fn drop_session(&mut self, s: i64) {
        let mut recursive = 0;
        self.table.retain(|_, w| {
            recursive += usize::from(w.remove(&s) == Some(Mode::Recursive));
            !w.is_empty()
        });
        self.recursive -= recursive;
    }

    fn count(&self) -> usize {
        self.table.values().map(|w| w.len()).sum()
    }
}

/// The data and child watch managers of this server.
#[derive(Debug, Default)]
pub struct Watches {
    data: Manager,
    child: Manager,
}

impl Watches {
    /// A one-shot data watch (getData, or exists on any node).
    pub fn watch_data(&mut self, p: &str, s: i64) {
        self.data.add(p, s, Mode::Standard)
    }

    /// A one-shot child watch (getChildren).
    pub fn watch_children(&mut self, p: &str, s: i64) {
        self.child.add(p, s, Mode::Standard)
    }

    /// addWatch: both kinds go to both managers, as ZooKeeper 3.8.0's DataTree.addWatch
    /// does (measured: checkWatches of children answers OK for a recursive watch).
    pub fn add_persistent(&mut self, p: &str, s: i64, mode: AddWatchMode) {
        let mode = match mode {
            AddWatchMode::Persistent => Mode::Persistent,
            AddWatchMode::PersistentRecursive => Mode::Recursive,
        };
        self.child.add(p, s, mode);
        self.data.add(p, s, mode);
    }

    /// The (session, event, path) notifications a change fires, in order, each session at most
    /// once (a deletion suppresses the child manager's copy for sessions the data manager
    /// already notified, as ZooKeeper's DataTree.deleteNode does).
    pub fn fire(&mut self, t: &WatchTrigger) -> Vec<(i64, EventType, String)> {
        let p = t.path.as_str();
        let sessions = match t.event {
            EventType::NodeCreated | EventType::NodeDataChanged => self.data.trigger(p, t.event),
            EventType::NodeDeleted => {
                let mut s = self.data.trigger(p, t.event);
                let child = self.child.trigger(p, t.event);
                if crate::bug("duplicate-watch-event") {
                    // Broken on purpose: a session that watched both the data and the children
                    // hears of the deletion twice.
                    let both: Vec<i64> = s.intersection(&child).copied().collect();
                    s.extend(child);
                    let mut out: Vec<_> = s.into_iter().map(|s| (s, t.event, t.path.clone())).collect();
                    out.extend(both.into_iter().map(|s| (s, t.event, t.path.clone())));
                    return out;
                }
                s.extend(child);
                s
            }
            EventType::NodeChildrenChanged => self.child.trigger(p, t.event),
            _ => BTreeSet::new(),
        };
        sessions.into_iter().map(|s| (s, t.event, t.path.clone())).collect()
    }

    /// checkWatches: whether a watch of `ty` that `s` could remove is on `p`.
    pub fn contains(&self, p: &str, ty: WatcherType, s: i64) -> bool {
        match ty {
            WatcherType::Children => self.child.contains(p, s),
            WatcherType::Data => self.data.contains(p, s),
            WatcherType::Any => self.child.contains(p, s) || self.data.contains(p, s),
            // 3.8's DataTree.containsWatcher knows only the three classic kinds.
            WatcherType::Persistent | WatcherType::PersistentRecursive => false,
        }
    }

    /// removeWatches: removes `s`'s watch of `ty` on `p` and reports whether there was one.
    pub fn remove(&mut self, p: &str, ty: WatcherType, s: i64) -> bool {
        match ty {
            WatcherType::Children => self.child.remove(p, s),
            WatcherType::Data => self.data.remove(p, s),
            WatcherType::Any => {
                let c = self.child.remove(p, s);
                let d = self.data.remove(p, s);
                c || d
            }
            // As 3.8's DataTree.removeWatch: these kinds are removed only by Any.
            WatcherType::Persistent | WatcherType::PersistentRecursive => false,
        }
    }

    /// Drops every watch of a session (closed, or its connection gone).
    pub fn drop_session(&mut self, s: i64) {
        self.data.drop_session(s);
        self.child.drop_session(s);
    }

    /// Number of (session, path) watches in both managers, as `wchs` counts them.
    pub fn count(&self) -> usize {
        self.data.count() + self.child.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trig(e: EventType, p: &str) -> WatchTrigger {
        WatchTrigger {
            event: e,
            path: p.into(),
            acl: Default::default(),
        }
    }

    fn who(w: &mut Watches, e: EventType, p: &str) -> Vec<i64> {
        w.fire(&trig(e, p)).iter().map(|f| f.0).collect()
    }

    #[test]
    fn one_shot_and_persistent() {
        let mut w = Watches::default();
        w.watch_data("/a", 1);
        w.watch_children("/", 2);
        w.add_persistent("/", 3, AddWatchMode::PersistentRecursive);
        w.add_persistent("/a", 4, AddWatchMode::Persistent);
        assert_eq!(who(&mut w, EventType::NodeDataChanged, "/a"), vec![1, 3, 4]);
        // One-shot watch is gone, persistent ones stay.
        assert_eq!(who(&mut w, EventType::NodeDataChanged, "/a"), vec![3, 4]);
        assert_eq!(
            who(&mut w, EventType::NodeChildrenChanged, "/"),
            vec![2],
            "recursive watches skip child events"
        );
        assert_eq!(who(&mut w, EventType::NodeChildrenChanged, "/a"), vec![4]);
        assert!(w.contains("/a", WatcherType::Data, 4));
        assert!(
            !w.contains("/a", WatcherType::Persistent, 4),
            "3.8 knows only the classic kinds here"
        );
        assert!(w.remove("/a", WatcherType::Any, 4));
        assert!(!w.remove("/a", WatcherType::Any, 4));
        w.drop_session(3);
        assert_eq!(w.count(), 0);
        assert_eq!(w.data.recursive + w.child.recursive, 0);
    }

    /// Each row: registrations by session 1, then events; the sessions each event notifies.
    /// The expectations are what ZooKeeper 3.8.0 sent in the same situations (watchdiff runs).
    #[test]
    fn zookeeper_3_8_watch_table() {
        type Reg = fn(&mut Watches);
        type Row = (&'static str, Reg, Vec<(EventType, &'static str)>, Vec<usize>);
        let rows: Vec<Row> = vec![
            (
                "same child watch twice: one event",
                |w| {
                    w.watch_children("/p", 1);
                    w.watch_children("/p", 1)
                },
                vec![(EventType::NodeChildrenChanged, "/p")],
                vec![1],
            ),
            (
                "data and exists watch: one event",
                |w| {
                    w.watch_data("/p", 1);
                    w.watch_data("/p", 1)
                },
                vec![(EventType::NodeDataChanged, "/p")],
                vec![1],
            ),
            (
                "data and child watch, node deleted: one event",
                |w| {
                    w.watch_data("/p", 1);
                    w.watch_children("/p", 1)
                },
                vec![(EventType::NodeDeleted, "/p")],
                vec![1],
            ),
            (
                "persistent then one-shot data watch: the data side becomes one-shot",
                |w| {
                    w.add_persistent("/p", 1, AddWatchMode::Persistent);
                    w.watch_data("/p", 1)
                },
                vec![
                    (EventType::NodeDataChanged, "/p"),
                    (EventType::NodeDataChanged, "/p"),
                    (EventType::NodeChildrenChanged, "/p"),
                ],
                vec![1, 0, 1],
            ),
            (
                "one-shot then persistent: persistent",
                |w| {
                    w.watch_data("/p", 1);
                    w.add_persistent("/p", 1, AddWatchMode::Persistent)
                },
                vec![(EventType::NodeDataChanged, "/p"), (EventType::NodeDataChanged, "/p")],
                vec![1, 1],
            ),
            (
                "recursive on an ancestor and a data watch: one event",
                |w| {
                    w.add_persistent("/", 1, AddWatchMode::PersistentRecursive);
                    w.watch_data("/p", 1)
                },
                vec![(EventType::NodeDataChanged, "/p"), (EventType::NodeCreated, "/p/q")],
                vec![1, 1],
            ),
            (
                "a one-shot watch on the recursive watch's own path makes it one-shot",
                |w| {
                    w.add_persistent("/p", 1, AddWatchMode::PersistentRecursive);
                    w.watch_data("/p", 1)
                },
                vec![
                    (EventType::NodeCreated, "/p/q"),
                    (EventType::NodeDataChanged, "/p"),
                    (EventType::NodeCreated, "/p/r"),
                ],
                vec![0, 1, 0],
            ),
            (
                "...but its child-manager side still reports a deletion below it",
                |w| {
                    w.add_persistent("/p", 1, AddWatchMode::PersistentRecursive);
                    w.watch_data("/p", 1)
                },
                vec![(EventType::NodeCreated, "/p/q"), (EventType::NodeDeleted, "/p/q")],
                vec![0, 1],
            ),
            (
                "recursive watch with its data side removed: deletions below still fire",
                |w| {
                    w.add_persistent("/p", 1, AddWatchMode::PersistentRecursive);
                    assert!(w.remove("/p", WatcherType::Data, 1));
                },
                vec![
                    (EventType::NodeCreated, "/p/q"),
                    (EventType::NodeDataChanged, "/p"),
                    (EventType::NodeDeleted, "/p/q"),
                ],
                vec![0, 0, 1],
            ),
            (
                "recursive watch with its child side removed: all but child-list changes fire",
                |w| {
                    w.add_persistent("/p", 1, AddWatchMode::PersistentRecursive);
                    assert!(w.remove("/p", WatcherType::Children, 1));
                },
                vec![
                    (EventType::NodeDeleted, "/p/q"),
                    (EventType::NodeChildrenChanged, "/p"),
                    (EventType::NodeDataChanged, "/p"),
                ],
                vec![1, 0, 1],
            ),
        ];
        for (name, reg, events, want) in rows {
            let mut w = Watches::default();
            reg(&mut w);
            let got: Vec<usize> = events.iter().map(|(e, p)| w.fire(&trig(*e, p)).len()).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn check_watches_is_true_when_anyone_watches_the_path() {
        // ZooKeeper 3.8's containsWatcher only asks whether the path has watchers.
        let mut w = Watches::default();
        w.watch_data("/p", 1);
        assert!(w.contains("/p", WatcherType::Data, 2));
        assert!(!w.contains("/p", WatcherType::Children, 2));
        assert!(!w.remove("/p", WatcherType::Data, 2), "removal is per session");
        assert!(w.remove("/p", WatcherType::Data, 1));
    }
}
