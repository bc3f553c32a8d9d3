//! Exhaustive small-scope check of the pure Raft core: every interleaving, up to a depth, of
//! timeouts (a node's election timer running out, a leader's heartbeat), proposals, message
//! delivery, loss and duplication, and crash/restart from what the node persisted, for three
//! voters. States are fingerprinted (every node's full state, its disk, the network as a
//! multiset, the fault budgets) so that a state reached again is not explored again. After
//! every step: election safety (≤ 1 leader per term), log matching, leader completeness
//! (every entry committed before a leader's term is in its log) and state-machine safety (one
//! entry per committed index). A violation prints the schedule as a step list; such lists
//! live in `tests/fixtures/raft-schedules/` and are replayed here as regression tests.
//!
//! Scope (stated, so that what is not explored is visible): 3 voters, pre-vote and
//! check-quorum off (liveness features; the pure-core randomized test covers them), at most 2
//! proposals, 2 losses, 1 duplication and 1 crash per schedule, persistence synchronous with
//! each Ready (the asynchronous contract is the randomized test's and the simulator's),
//! no compaction. Depth: ZRAFT_EXHAUSTIVE_DEPTH (default 6 in debug builds, 7 in release, a few
//! seconds; each level multiplies the states by about 5: depth 8 is ~1M states in ~50 s).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use zraft::raft::*;

const IDS: [NodeId; 3] = [1, 2, 3];

#[derive(Clone)]
struct Node {
    raft: Raft,
    hs: HardState,
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct World {
    nodes: BTreeMap<NodeId, Node>,
    net: Vec<Message>,
    proposals: u8,
    drops: u8,
    dups: u8,
    crashes: u8,
    /// term -> its leader.
    leaders: BTreeMap<u64, NodeId>,
    /// index -> (entry term, data, the term of the node that first saw it committed).
    committed: BTreeMap<u64, (u64, bytes::Bytes, u64)>,
}

/// One step of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Timeout(NodeId),
    Heartbeat(NodeId),
    Propose(NodeId),
    Deliver(String),
    Duplicate(String),
    Drop(String),
    Crash(NodeId),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Timeout(n) => write!(f, "timeout {n}"),
            Action::Heartbeat(n) => write!(f, "heartbeat {n}"),
            Action::Propose(n) => write!(f, "propose {n}"),
            Action::Deliver(m) => write!(f, "deliver {m}"),
            Action::Duplicate(m) => write!(f, "duplicate {m}"),
            Action::Drop(m) => write!(f, "drop {m}"),
            Action::Crash(n) => write!(f, "crash {n}"),
        }
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (verb, rest) = s.split_once(' ').ok_or(format!("bad step {s:?}"))?;
        let node = || rest.trim().parse::<NodeId>().map_err(|e| format!("{s:?}: {e}"));
        Ok(match verb {
            "timeout" => Action::Timeout(node()?),
            "heartbeat" => Action::Heartbeat(node()?),
            "propose" => Action::Propose(node()?),
            "crash" => Action::Crash(node()?),
            "deliver" => Action::Deliver(rest.to_string()),
            "duplicate" => Action::Duplicate(rest.to_string()),
            "drop" => Action::Drop(rest.to_string()),
            _ => return Err(format!("unknown step {s:?}")),
        })
    }
}

/// A message as a schedule names it: `from->to <body> t<term>`.
fn describe(m: &Message) -> String {
    format!("{}->{} {:?} t{}", m.from, m.to, m.body, m.term)
}

fn cfg(id: NodeId) -> Config {
    let mut c = Config::new(id, 7);
    c.election_tick = 2;
    c.heartbeat_tick = 1;
    c.pre_vote = false;
    c.check_quorum = false;
    c
}

fn boot() -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            index: 0,
            term: 0,
            conf: ConfState::voters(IDS.to_vec()),
        },
        data: vec![],
    }
}

fn recover(id: NodeId, hs: HardState, entries: Vec<Entry>) -> Raft {
    Raft::new(
        cfg(id),
        Recovered {
            hard_state: hs,
            snapshot: boot(),
            entries,
        },
    )
}

impl World {
    fn new() -> Self {
        let nodes = IDS
            .iter()
            .map(|&id| {
                (
                    id,
                    Node {
                        raft: recover(id, HardState::default(), vec![]),
                        hs: HardState::default(),
                        entries: vec![],
                    },
                )
            })
            .collect();
        World {
            nodes,
            net: vec![],
            proposals: 0,
            drops: 0,
            dups: 0,
            crashes: 0,
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
        }
    }

    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for n in self.nodes.values() {
            format!("{:?}", n.raft).hash(&mut h);
            format!("{:?}{:?}", n.hs, n.entries).hash(&mut h);
        }
        let mut net: Vec<String> = self.net.iter().map(describe).collect();
        net.sort();
        net.hash(&mut h);
        (self.proposals, self.drops, self.dups, self.crashes).hash(&mut h);
        format!("{:?}{:?}", self.leaders, self.committed).hash(&mut h);
        h.finish()
    }

    /// The steps possible from here.
    fn actions(&self) -> Vec<Action> {
        let mut a = vec![];
        for (&id, n) in &self.nodes {
            if n.raft.role() == Role::Leader {
                a.push(Action::Heartbeat(id));
                if self.proposals < 2 {
                    a.push(Action::Propose(id));
                }
            } else {
                a.push(Action::Timeout(id));
            }
            if self.crashes < 1 {
                a.push(Action::Crash(id));
            }
        }
        let mut seen: Vec<String> = self.net.iter().map(describe).collect();
        seen.sort();
        seen.dedup();
        for m in seen {
            if self.drops < 2 {
                a.push(Action::Drop(m.clone()));
            }
            if self.dups < 1 {
                a.push(Action::Duplicate(m.clone()));
            }
            a.push(Action::Deliver(m));
        }
        a
    }

    fn take_msg(&mut self, d: &str) -> Result<Message, String> {
        let i = self
            .net
            .iter()
            .position(|m| describe(m) == d)
            .ok_or(format!("no message {d} in flight"))?;
        Ok(self.net.remove(i))
    }

    /// Takes a step; Err if the step is impossible here, Ok(Some) on a broken invariant.
    fn apply(&mut self, a: &Action) -> Result<Option<String>, String> {
        match a {
            Action::Timeout(id) => {
                let r = &mut self.node(*id)?.raft;
                // The election timer runs out: tick until it campaigns.
                for _ in 0..4 * cfg(*id).election_tick {
                    if r.role() == Role::Candidate {
                        break;
                    }
                    r.tick();
                }
            }
            Action::Heartbeat(id) => self.node(*id)?.raft.tick(),
            Action::Propose(id) => {
                self.proposals += 1;
                let p = self.proposals;
                let _ = self.node(*id)?.raft.propose(vec![p]);
            }
            Action::Deliver(d) => {
                let m = self.take_msg(d)?;
                let to = m.to;
                self.node(to)?.raft.step(m);
            }
            Action::Duplicate(d) => {
                let m = self.take_msg(d)?;
                self.dups += 1;
                self.net.push(m.clone());
                let to = m.to;
                self.node(to)?.raft.step(m);
            }
            Action::Drop(d) => {
                self.take_msg(d)?;
                self.drops += 1;
            }
            Action::Crash(id) => {
                self.crashes += 1;
                let n = self.node(*id)?;
                n.raft = recover(*id, n.hs, n.entries.clone());
            }
        }
        Ok(self.process())
    }

    fn node(&mut self, id: NodeId) -> Result<&mut Node, String> {
        self.nodes.get_mut(&id).ok_or(format!("no node {id}"))
    }

    /// Runs every node's Readys (persist, send, apply) and checks the invariants.
    fn process(&mut self) -> Option<String> {
        for id in IDS {
            loop {
                let n = self.nodes.get_mut(&id).expect("node");
                if !n.raft.has_ready() {
                    break;
                }
                let rd = n.raft.ready();
                if let Some(first) = rd.entries.first() {
                    n.entries.retain(|e| e.index < first.index);
                    n.entries.extend(rd.entries.iter().cloned());
                }
                if let Some(hs) = rd.hard_state {
                    n.hs = hs;
                }
                let term = n.raft.term();
                n.raft.advance(&rd);
                self.net.extend(rd.messages.iter().cloned());
                for e in &rd.committed {
                    match self.committed.get(&e.index) {
                        Some((t, d, _)) if (*t, d) != (e.term, &e.data) => {
                            return Some(format!(
                                "state-machine safety: node {id} applied ({}, {:?}) at index {}, another node ({t}, {d:?})",
                                e.term, e.data, e.index
                            ));
                        }
                        Some(_) => {}
                        None => {
                            self.committed.insert(e.index, (e.term, e.data.clone(), term));
                        }
                    }
                }
            }
        }
        self.check()
    }

    fn check(&mut self) -> Option<String> {
        for (&id, n) in &self.nodes {
            let r = &n.raft;
            if r.role() != Role::Leader {
                continue;
            }
            match self.leaders.insert(r.term(), id) {
                Some(other) if other != id => {
                    return Some(format!(
                        "election safety: nodes {other} and {id} both led term {}",
                        r.term()
                    ))
                }
                _ => {}
            }
            for (&index, (t, _, seen_in)) in &self.committed {
                if *seen_in < r.term() && r.term_at(index) != Some(*t) {
                    return Some(format!(
                        "leader completeness: leader {id} of term {} lacks entry {index} (term {t}) committed in term {seen_in}",
                        r.term()
                    ));
                }
            }
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for (i, &a) in ids.iter().enumerate() {
            for &b in &ids[i + 1..] {
                let (ra, rb) = (&self.nodes[&a].raft, &self.nodes[&b].raft);
                let last = ra.last_index().min(rb.last_index());
                // The highest index at which both hold the same entry: everything below must match.
                if let Some(top) = (1..=last)
                    .rev()
                    .find(|&x| ra.term_at(x).is_some() && ra.term_at(x) == rb.term_at(x))
                {
                    let (ea, eb) = (ra.entries(1, top), rb.entries(1, top));
                    if ea != eb {
                        return Some(format!(
                            "log matching: nodes {a} and {b} agree at {top} but differ below"
                        ));
                    }
                }
            }
        }
        None
    }
}

struct Search {
    depth: usize,
    seen: HashMap<u64, usize>,
    explored: u64,
    path: Vec<Action>,
}

impl Search {
    /// Depth-first search; a counterexample schedule if any.
    fn dfs(&mut self, w: &World) -> Option<(Vec<Action>, String)> {
        if self.path.len() >= self.depth {
            return None;
        }
        for a in w.actions() {
            let mut next = w.clone();
            let verdict = next.apply(&a).expect("actions() offers only possible steps");
            self.explored += 1;
            self.path.push(a);
            if let Some(why) = verdict {
                return Some((self.path.clone(), why));
            }
            // A state seen with as many steps left is explored already.
            let left = self.depth - self.path.len();
            let fp = next.fingerprint();
            if self.seen.get(&fp).is_none_or(|&l| l < left) {
                self.seen.insert(fp, left);
                if let Some(found) = self.dfs(&next) {
                    return Some(found);
                }
            }
            self.path.pop();
        }
        None
    }
}

fn replay(steps: &[Action]) -> Result<Option<String>, String> {
    let mut w = World::new();
    for (i, a) in steps.iter().enumerate() {
        if let Some(why) = w.apply(a).map_err(|e| format!("step {}: {e}", i + 1))? {
            return Ok(Some(format!("step {}: {why}", i + 1)));
        }
    }
    Ok(None)
}

#[test]
fn exhaustive_small_scope() {
    let depth = std::env::var("ZRAFT_EXHAUSTIVE_DEPTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) { 6 } else { 7 });
    let started = std::time::Instant::now();
    // Iterative deepening, so that a counterexample found is a shortest one.
    let mut d = 0;
    let (s, found) = loop {
        d += 1;
        let mut s = Search {
            depth: d,
            seen: HashMap::new(),
            explored: 0,
            path: vec![],
        };
        let found = s.dfs(&World::new());
        if found.is_some() || d >= depth {
            break (s, found);
        }
    };
    eprintln!(
        "raft exhaustive: depth {depth}, {} steps explored, {} distinct states, {:.1} s",
        s.explored,
        s.seen.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some((steps, why)) = found {
        let script: Vec<String> = steps.iter().map(|a| a.to_string()).collect();
        // For the planted-bug table: one line, no panic.
        if std::env::var("ZRAFT_EXHAUSTIVE_FIND").is_ok() {
            println!("ZRAFT_EXHAUSTIVE_FIND: depth {}: {why}", steps.len());
            println!("{}", script.join("\n"));
            return;
        }
        panic!("{why}\ncounterexample ({} steps):\n{}", steps.len(), script.join("\n"));
    }
    if std::env::var("ZRAFT_EXHAUSTIVE_FIND").is_ok() {
        println!(
            "ZRAFT_EXHAUSTIVE_FIND: none to depth {depth} ({} states{})",
            s.seen.len(),
            taken_note()
        );
    }
    assert!(s.seen.len() > 1000, "the search explored almost nothing");
}

/// Schedules that broke planted bugs, replayed on the real core: each must pass here (and fails
/// with its bug switched on: `ZRAFT_BUG=<name>` in a `--cfg zraft_bugs` build).
#[test]
fn kept_schedules_replay() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/raft-schedules");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("schedules directory")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let bug = std::env::var("ZRAFT_BUG").unwrap_or_default();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("schedule");
        let steps: Vec<Action> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.parse().expect("a step"))
            .collect();
        let name = f.file_stem().expect("name").to_string_lossy().to_string();
        let verdict = replay(&steps);
        if cfg!(zraft_bugs) && name == bug {
            assert!(
                matches!(verdict, Ok(Some(_))),
                "{name}: the schedule no longer breaks the planted bug: {verdict:?}"
            );
        } else {
            // The real core either runs the schedule clean or never produces a message it
            // names (it diverged from the broken one earlier): both are passes.
            assert!(
                !matches!(verdict, Ok(Some(_))),
                "{name}: the real core breaks on this schedule: {verdict:?}"
            );
        }
    }
}

/// For a planted bug that counts its branch (zraft::COUNTED_BUGS): how often it diverged.
fn taken_note() -> String {
    let bug = std::env::var("ZRAFT_BUG").unwrap_or_default();
    if zraft::COUNTED_BUGS.contains(&bug.as_str()) {
        format!("; branch diverged {} times", zraft::bug_branch_taken())
    } else {
        String::new()
    }
}
