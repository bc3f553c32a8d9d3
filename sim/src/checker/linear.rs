//! Linearizability of register operations (ZooKeeper setData/CAS and sync+getData), checked
//! per key (P-compositionality) with a Wing–Gong–Lowe search memoized on (linearized set,
//! register state). Info operations may take effect at any time after their invocation, or
//! never: the search tries them only where no answered op can go, one of each group of
//! interchangeable ones, and never past a version an unplaced answered op saw.

use crate::history::{Op, Outcome, RegOp};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Register state: (value, version); a missing node reads as version -1.
type State = (u64, i32);

/// Why a key's history is not linearizable, with the smallest evidence found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// The operations of the key (in invoke order) the search could not place.
    pub stuck_at: Op,
    /// The longest linearized prefix found (ops in linearization order).
    pub best_prefix: Vec<Op>,
    /// States explored.
    pub explored: usize,
    /// The search ran out of budget: undecided, not proven wrong.
    pub budget_exhausted: bool,
}

/// Result of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub keys: usize,
    pub ops: usize,
    pub explored: usize,
    pub violation: Option<Box<Violation>>,
}

/// Applies `op` (with its outcome) to a state: the new state, or None if impossible.
fn step(s: State, op: &Op) -> Option<State> {
    match (&op.op, &op.outcome) {
        (RegOp::Read | RegOp::ReadWatch, Outcome::Ok(Some(seen))) => (*seen == s).then_some(s),
        (RegOp::Read | RegOp::ReadWatch, _) => Some(s),
        (RegOp::Write(v), Outcome::Ok(_) | Outcome::Info) => Some((*v, s.1 + 1)),
        (RegOp::Cas { version, value }, Outcome::Ok(_) | Outcome::Info) => {
            (s.1 == *version).then_some((*value, s.1 + 1))
        }
        // A failed CAS happened and saw another version; a failed write did nothing.
        (RegOp::Cas { version, .. }, Outcome::Fail) => (s.1 != *version).then_some(s),
        (RegOp::Write(_), Outcome::Fail) => Some(s),
        // Not register operations (filtered out before the search).
        _ => {
            debug_assert!(!op.op.is_register(), "unhandled register op {op:?}");
            Some(s)
        }
    }
}

#[derive(Clone, Copy)]
enum Ev {
    Call(usize),
    Ret(usize),
}

/// Checks one key's operations from an initial state.
pub fn check_key(key: &str, ops: &[Op], init: State, budget: usize) -> Result<usize, Box<Violation>> {
    // Fails of plain writes and unanswered reads constrain nothing.
    let ops: Vec<Op> = ops
        .iter()
        .filter(|o| {
            !matches!(
                (&o.op, &o.outcome),
                (RegOp::Write(_), Outcome::Fail) | (RegOp::Read | RegOp::ReadWatch, Outcome::Info | Outcome::Fail)
            )
        })
        .cloned()
        .collect();
    let n = ops.len();
    let (class_of, rank, classes) = symmetry_classes(&ops, init);
    let mut class_placed = vec![0usize; classes];
    // Answered ops are events (call, return) of the scan; unanswered ones have no return and
    // are kept apart, each with the number of events that come before its call: it may be
    // placed at any frontier past that.
    let mut evs: Vec<(u64, u8, Ev)> = Vec::with_capacity(2 * n);
    let mut unanswered: Vec<(u64, usize)> = vec![];
    for (i, o) in ops.iter().enumerate() {
        match o.complete {
            Some(c) => {
                evs.push((o.invoke, 1, Ev::Call(i)));
                // Returns sort before calls at the same instant (that op finished first),
                // except an op's own: one that returned the instant it was called comes after
                // the calls of that instant (before this, its return came first and it could
                // never be placed: a false violation, found by
                // `agrees_with_the_exhaustive_definition`).
                evs.push((c, if c > o.invoke { 0 } else { 2 }, Ev::Ret(i)));
            }
            None => unanswered.push((o.invoke, i)),
        }
    }
    evs.sort_by_key(|(t, k, _)| (*t, *k));
    // Its events before an unanswered op's call: returns at its instant come first (kind 0),
    // calls of its instant do not matter (it is open from its call on either way).
    let info: Vec<(usize, usize)> = {
        let mut v: Vec<(usize, usize)> = unanswered
            .iter()
            .map(|&(t, i)| (evs.partition_point(|(et, k, _)| (*et, *k) < (t, 1)), i))
            .collect();
        v.sort();
        v
    };
    let evs: Vec<Ev> = evs.into_iter().map(|(_, _, e)| e).collect();
    let mut info_placed = vec![false; n];
    // The version each answered op saw (see `Seen::floors`).
    let floor_of: Vec<Option<i32>> = ops.iter().map(floor).collect();
    // The events still to place, as a doubly linked list over `evs` (Lowe's "lifting"): a
    // linearized op's call and return are unlinked, so the scan after each step starts at
    // the first open event instead of skipping every placed one (quadratic on long
    // histories: 40% of a swarm run's time went there).
    let mut list = Links::new(evs.len());
    let mut call_at = vec![0usize; n];
    let mut ret_at = vec![0usize; n];
    for (k, e) in evs.iter().enumerate() {
        match *e {
            Ev::Call(i) => call_at[i] = k,
            Ev::Ret(i) => ret_at[i] = k,
        }
    }
    let mut seen = Seen {
        placed: 0,
        memo: HashSet::default(),
        floors: floor_of
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (v, i)))
            .collect(),
        floor_blocked: None,
    };
    let mut state = init;
    // Stack of placed ops: (op, state before it, for an unanswered op the frontier it was
    // placed at and its position in `info`).
    let mut stack: Vec<Placed> = Vec::new();
    let mut best: Vec<usize> = vec![];
    // The return that blocked the deepest search: the op the counterexample is about.
    let mut stuck: Option<(usize, usize)> = None;
    let mut explored = 0usize;
    let mut cur = Cursor::Scan(list.first());
    loop {
        explored += 1;
        if explored > budget {
            // Too large to decide within budget: reported, never passed off as linearizable.
            return Err(Box::new(Violation {
                key: key.into(),
                stuck_at: ops[0].clone(),
                best_prefix: vec![],
                explored,
                budget_exhausted: true,
            }));
        }
        match cur {
            // Every answered op is placed; the unanswered rest may never have happened.
            Cursor::Scan(None) => return Ok(explored),
            Cursor::Scan(Some(at)) => match evs[at] {
                Ev::Call(i) => {
                    if let Some(next) = seen.admit(i, floor_of[i], state, &ops[i]) {
                        stack.push((i, state, None));
                        list.unlink(at);
                        list.unlink(ret_at[i]);
                        state = next;
                        cur = Cursor::Scan(list.first());
                        continue;
                    }
                    cur = Cursor::Scan(list.next(at));
                }
                // Op i must be linearized before this point. Unanswered ops are tried here,
                // after every answered candidate: they are placed where something needs them
                // rather than wherever they are open (each one open to the end doubled the
                // configurations a hot key's search went through).
                Ev::Ret(_) => cur = Cursor::Unanswered { frontier: at, from: 0 },
            },
            Cursor::Unanswered { frontier, from } => {
                let candidate = info[from..]
                    .iter()
                    .take_while(|(after, _)| *after <= frontier)
                    .position(|&(_, i)| {
                        // Of interchangeable ops only the earliest unplaced one is tried.
                        !info_placed[i] && class_of[i].is_none_or(|c| class_placed[c] == rank[i].expect("ranked"))
                    })
                    .map(|k| from + k);
                if let Some(k) = candidate {
                    let i = info[k].1;
                    cur = Cursor::Unanswered { frontier, from: k + 1 };
                    if let Some(next) = seen.admit(i, floor_of[i], state, &ops[i]) {
                        stack.push((i, state, Some((frontier, k))));
                        info_placed[i] = true;
                        if let Some(c) = class_of[i] {
                            class_placed[c] += 1;
                        }
                        state = next;
                        cur = Cursor::Scan(list.first());
                    }
                    continue;
                }
                // Nothing can be placed before the return at the frontier: backtrack. The
                // deepest stack is always left by a backtrack (or ends in success), so it is
                // recorded here.
                let Ev::Ret(blocked) = evs[frontier] else {
                    unreachable!("a frontier is a return")
                };
                if stack.len() > best.len() {
                    best = stack.iter().map(|(j, _, _)| *j).collect();
                }
                if stuck.is_none_or(|(d, _)| stack.len() >= d) {
                    stuck = Some((stack.len(), seen.floor_blocked.unwrap_or(blocked)));
                }
                seen.floor_blocked = None;
                let Some((j, prev, placed_at)) = stack.pop() else {
                    return Err(Box::new(Violation {
                        key: key.into(),
                        stuck_at: ops[stuck.map_or(blocked, |(_, k)| k)].clone(),
                        best_prefix: best.iter().map(|&k| ops[k].clone()).collect(),
                        explored,
                        budget_exhausted: false,
                    }));
                };
                seen.retract(j, floor_of[j]);
                state = prev;
                cur = match placed_at {
                    Some((frontier, k)) => {
                        info_placed[j] = false;
                        if let Some(c) = class_of[j] {
                            class_placed[c] -= 1;
                        }
                        // Resume with the next unanswered candidate at the same frontier.
                        Cursor::Unanswered { frontier, from: k + 1 }
                    }
                    None => {
                        // Relinked in the reverse order of unlinking (which restores the list).
                        list.relink(ret_at[j]);
                        list.relink(call_at[j]);
                        // Resume after j's call.
                        Cursor::Scan(list.next(call_at[j]))
                    }
                };
            }
        }
    }
}

/// What the search has placed and been through.
struct Seen {
    /// The set of placed ops, as a 128-bit Zobrist fingerprint kept as ops are placed and
    /// taken back: the memo holds fingerprints of (set, state), not the sets (a set per
    /// configuration is quadratic memory: zeroing its pages was a fifth of a swarm run). Two
    /// configurations share a fingerprint with probability 2^-128 per pair; if they did, the
    /// search would skip one and could only report a violation that is not there, never miss
    /// one (and the model checker judges every history independently).
    placed: u128,
    memo: HashSet<u128, BuildPrehashed>,
    /// Versions only grow, so an answered op that saw version v (a read of it, a CAS from it)
    /// cannot come after a state past v: a step to a version beyond the least such v of the
    /// ops still unplaced leads nowhere, and is not taken (without this, an unanswered write
    /// tried early was found wrong only at the next read, and a lost write on a hot key blew
    /// the search up). Those (version, op):
    floors: BTreeSet<(i32, usize)>,
    /// The op whose floor last turned a step down since the search last went deeper: a better
    /// culprit for a counterexample than the return it leaves unplaceable (a stale read rather
    /// than the write it did not see).
    floor_blocked: Option<usize>,
}

impl Seen {
    /// Op `i` from `state`: the state after it if it is possible, keeps within the floors and
    /// leads to a configuration not seen before (then it counts as placed), else None.
    fn admit(&mut self, i: usize, floor: Option<i32>, state: State, op: &Op) -> Option<State> {
        let next = step(state, op).filter(|n| fits(&mut self.floors, (i, floor), *n, &mut self.floor_blocked))?;
        self.placed ^= zobrist(i);
        if self.memo.insert(self.placed ^ zobrist_state(next)) {
            self.floor_blocked = None;
            return Some(next);
        }
        self.retract(i, floor);
        None
    }

    /// Takes placed op `i` back.
    fn retract(&mut self, i: usize, floor: Option<i32>) {
        self.placed ^= zobrist(i);
        unplace_floor(&mut self.floors, (i, floor));
    }
}

/// The version an answered op saw, which no state before it may exceed (an op without a
/// return may never happen, and bounds nothing).
fn floor(op: &Op) -> Option<i32> {
    op.complete?;
    match (&op.op, &op.outcome) {
        (RegOp::Read | RegOp::ReadWatch, Outcome::Ok(Some((_, v)))) => Some(*v),
        (RegOp::Cas { version, .. }, Outcome::Ok(_)) => Some(*version),
        _ => None,
    }
}

/// Takes an op's floor out of the set (the op is being placed) and says whether the state it
/// leads to stays within the floors of the ops still unplaced; if not, the floor is put back
/// and the op that set the floor is noted.
fn fits(
    floors: &mut BTreeSet<(i32, usize)>,
    (i, own): (usize, Option<i32>),
    next: State,
    blocked: &mut Option<usize>,
) -> bool {
    if let Some(v) = own {
        let had = floors.remove(&(v, i));
        assert!(had, "an unplaced op's floor is in the set");
    }
    match floors.first() {
        Some(&(least, by)) if next.1 > least => {
            *blocked = Some(by);
            unplace_floor(floors, (i, own));
            false
        }
        _ => true,
    }
}

/// Puts an op's floor back (it is no longer placed).
fn unplace_floor(floors: &mut BTreeSet<(i32, usize)>, (i, own): (usize, Option<i32>)) {
    if let Some(v) = own {
        floors.insert((v, i));
    }
}

/// A placed op on the search's stack: the op, the state before it, and for an unanswered op the
/// frontier it was placed at and its position among the unanswered.
type Placed = (usize, State, Option<(usize, usize)>);

/// Where the search is: scanning the open events from one, or trying the unanswered ops open
/// at a frontier (the first open return) from one of them on.
#[derive(Clone, Copy)]
enum Cursor {
    Scan(Option<usize>),
    Unanswered { frontier: usize, from: usize },
}

/// Symmetry reduction: groups unanswered (Info) operations that are interchangeable, and
/// ranks each group's members by invocation. Two unanswered ops that would do the same thing
/// (the same write or the same CAS, up to a value no read ever saw) lead to the same futures
/// whichever is placed first: neither has a return to meet, both are open from the later
/// invocation on, and their states differ only in a value nothing can tell apart. Any
/// linearization can swap them so that a group is placed in invocation order, so the search
/// tries only the group's earliest unplaced member: k such ops cost k + 1 configurations
/// instead of 2^k (lost writes under a partition made seeds undecided).
/// Returns each op's group (None: not grouped), its rank in the group, and how many groups.
fn symmetry_classes(ops: &[Op], init: State) -> (Vec<Option<usize>>, Vec<Option<usize>>, usize) {
    let mut seen: HashSet<u64> = HashSet::from([init.0]);
    for o in ops {
        if let (RegOp::Read | RegOp::ReadWatch, Outcome::Ok(Some((v, _)))) = (&o.op, &o.outcome) {
            seen.insert(*v);
        }
    }
    // An unanswered write of a value never read is known by its version condition alone
    // (None: unconditional); one whose value was read stays apart (Some value).
    let mut classes: BTreeMap<(Option<i32>, Option<u64>), usize> = BTreeMap::new();
    let mut members: Vec<usize> = vec![];
    let mut order: Vec<usize> = (0..ops.len()).collect();
    // Ranked in the order the search meets their calls (events sort by time, then input order).
    order.sort_by_key(|&i| ops[i].invoke);
    let (mut class_of, mut rank) = (vec![None; ops.len()], vec![None; ops.len()]);
    for i in order {
        let o = &ops[i];
        if o.complete.is_some() || o.outcome != Outcome::Info {
            continue;
        }
        let (cond, value) = match o.op {
            RegOp::Write(v) => (None, v),
            RegOp::Cas { version, value } => (Some(version), value),
            _ => continue,
        };
        let key = (cond, seen.contains(&value).then_some(value));
        let next = classes.len();
        let c = *classes.entry(key).or_insert(next);
        if c == members.len() {
            members.push(0);
        }
        class_of[i] = Some(c);
        rank[i] = Some(members[c]);
        members[c] += 1;
    }
    (class_of, rank, members.len())
}

/// A doubly linked list over positions `0..len` (dancing links): unlinking keeps a removed
/// position's own links, so relinking in reverse order of unlinking puts it back.
struct Links {
    /// Successor of each position; `len` is the head sentinel's slot, `END` the end.
    next: Vec<usize>,
    prev: Vec<usize>,
}

const END: usize = usize::MAX;

impl Links {
    fn new(len: usize) -> Self {
        let head = len;
        let mut next: Vec<usize> = (1..=len).collect();
        if let Some(last) = next.last_mut() {
            *last = END;
        }
        next.push(if len == 0 { END } else { 0 });
        let mut prev: Vec<usize> = (0..len).map(|k| if k == 0 { head } else { k - 1 }).collect();
        prev.push(head);
        Links { next, prev }
    }

    fn first(&self) -> Option<usize> {
        let f = self.next[self.next.len() - 1];
        (f != END).then_some(f)
    }

    fn next(&self, at: usize) -> Option<usize> {
        let n = self.next[at];
        (n != END).then_some(n)
    }

    fn unlink(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        self.next[p] = n;
        if n != END {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, at: usize) {
        let (p, n) = (self.prev[at], self.next[at]);
        debug_assert_eq!(self.next[p], n, "relinked out of order");
        self.next[p] = at;
        if n != END {
            self.prev[n] = at;
        }
    }
}

/// Hashes a fingerprint by its low half (it is a well-mixed Zobrist value already).
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

type BuildPrehashed = std::hash::BuildHasherDefault<Prehashed>;

/// A fixed pseudo-random 128-bit value per op (two splitmix64 streams): XORed into the
/// fingerprint of the set of placed ops.
fn zobrist(i: usize) -> u128 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let x = (i as u64).wrapping_add(1);
    let lo = mix(x.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let hi = mix(x.wrapping_mul(0xd1b5_4a32_d192_ed03) ^ 0x5851_f42d_4c95_7f2d);
    (u128::from(hi) << 64) | u128::from(lo)
}

/// The register state's share of a configuration's fingerprint (kept apart from the ops').
fn zobrist_state(s: State) -> u128 {
    zobrist(usize::MAX ^ (s.0 as usize)).rotate_left(17) ^ zobrist(s.1 as u32 as usize).rotate_left(71)
}

/// Checks every key independently from `init`; the first violation (by key order) is reported.
pub fn check_from(history: &[Op], init: State, budget_per_key: usize) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for o in history.iter().filter(|o| o.op.is_register()) {
        by_key.entry(o.key.as_str()).or_default().push(o.clone());
    }
    let mut explored = 0;
    for (k, ops) in &by_key {
        match check_key(k, ops, init, budget_per_key) {
            Ok(e) => explored += e,
            Err(v) => {
                return Verdict {
                    keys: by_key.len(),
                    ops: history.len(),
                    explored: explored + v.explored,
                    violation: Some(v),
                };
            }
        }
    }
    Verdict {
        keys: by_key.len(),
        ops: history.len(),
        explored,
        violation: None,
    }
}

/// Checks every key from a missing node (value 0, version -1).
pub fn check(history: &[Op], budget_per_key: usize) -> Verdict {
    check_from(history, (0, -1), budget_per_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, op: RegOp, invoke: u64, complete: Option<u64>, outcome: Outcome) -> Op {
        Op {
            client,
            session: client as i64,
            key: "k".into(),
            op,
            invoke,
            complete,
            outcome,
            zxid: 0,
            seq: 0,
        }
    }
    fn read(c: u32, a: u64, b: u64, v: u64, ver: i32) -> Op {
        op(c, RegOp::Read, a, Some(b), Outcome::Ok(Some((v, ver))))
    }
    fn write(c: u32, a: u64, b: u64, v: u64) -> Op {
        op(c, RegOp::Write(v), a, Some(b), Outcome::Ok(None))
    }

    fn ok(h: &[Op]) -> bool {
        check(h, 1_000_000).violation.is_none()
    }

    #[test]
    fn accepts_linearizable_histories() {
        // Sequential write then read.
        assert!(ok(&[write(1, 0, 10, 5), read(2, 20, 30, 5, 0)]));
        // Concurrent write and read: the read may see either side.
        assert!(ok(&[write(1, 0, 10, 5), read(2, 5, 15, 0, -1)]));
        assert!(ok(&[write(1, 0, 10, 5), read(2, 5, 15, 5, 0)]));
        // An unanswered write that did take effect.
        assert!(ok(&[
            op(1, RegOp::Write(7), 0, None, Outcome::Info),
            read(2, 50, 60, 7, 0)
        ]));
        // An unanswered write that never did.
        assert!(ok(&[
            op(1, RegOp::Write(7), 0, None, Outcome::Info),
            read(2, 50, 60, 0, -1)
        ]));
        // CAS chains.
        assert!(ok(&[
            write(1, 0, 10, 1),
            op(2, RegOp::Cas { version: 0, value: 2 }, 20, Some(30), Outcome::Ok(None)),
            op(3, RegOp::Cas { version: 0, value: 3 }, 25, Some(35), Outcome::Fail),
            read(1, 40, 50, 2, 1),
        ]));
    }

    #[test]
    fn rejects_stale_and_impossible_histories() {
        // A read after a completed write sees the old value: stale read.
        let h = [write(1, 0, 10, 5), read(2, 20, 30, 0, -1)];
        let v = check(&h, 1_000_000).violation.expect("stale read must be rejected");
        assert_eq!(v.stuck_at.op, RegOp::Read);
        // A value nobody wrote.
        assert!(!ok(&[write(1, 0, 10, 5), read(2, 20, 30, 9, 0)]));
        // Two CAS from the same version both succeed.
        assert!(!ok(&[
            write(1, 0, 10, 1),
            op(2, RegOp::Cas { version: 0, value: 2 }, 20, Some(30), Outcome::Ok(None)),
            op(3, RegOp::Cas { version: 0, value: 3 }, 20, Some(30), Outcome::Ok(None)),
        ]));
        // Reads going back in time: 5 then 0 after it was overwritten once.
        assert!(!ok(&[
            write(1, 0, 10, 5),
            write(1, 20, 30, 6),
            read(2, 40, 50, 6, 1),
            read(3, 60, 70, 5, 0)
        ]));
        // A failed CAS claims the version differed, but nothing else could have changed it.
        assert!(!ok(&[
            write(1, 0, 10, 1),
            op(2, RegOp::Cas { version: 0, value: 2 }, 20, Some(30), Outcome::Fail)
        ]));
        // A lost acknowledged write: read after it returns the earlier state.
        assert!(!ok(&[write(1, 0, 10, 1), write(1, 20, 30, 2), read(2, 40, 50, 1, 0)]));
    }

    #[test]
    fn keys_are_independent() {
        let mut a = write(1, 0, 10, 5);
        a.key = "a".into();
        let mut b = read(2, 20, 30, 0, -1);
        b.key = "b".into();
        assert!(ok(&[a, b]));
    }

    /// The definition, searched exhaustively: an op may go next if no other op still to
    /// place returned before it was invoked; ops that never returned may be left out.
    fn brute(ops: &[Op], placed: &mut Vec<bool>, state: State) -> bool {
        let open = |j: usize, placed: &Vec<bool>| !placed[j] && ops[j].complete.is_some();
        if !(0..ops.len()).any(|j| open(j, placed)) {
            return true;
        }
        for i in 0..ops.len() {
            if placed[i] {
                continue;
            }
            // j comes first if it returned before i was called, or at that instant unless it
            // was called then too (then they are concurrent, as the search orders them).
            let precedes = |j: usize| {
                ops[j]
                    .complete
                    .is_some_and(|c| c < ops[i].invoke || (c == ops[i].invoke && ops[j].invoke < c))
            };
            let blocked = (0..ops.len()).any(|j| j != i && open(j, placed) && precedes(j));
            if blocked {
                continue;
            }
            if let Some(next) = step(state, &ops[i]) {
                placed[i] = true;
                let found = brute(ops, placed, next);
                placed[i] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }

    /// Random small histories, linearizable by construction (outcomes computed at a random
    /// point inside each op) and then sometimes perturbed: the search agrees with the
    /// exhaustive definition on every one, and both verdicts occur. A second round leaves
    /// half the ops unanswered, so that the symmetry reduction's groups have many members.
    #[test]
    fn agrees_with_the_exhaustive_definition() {
        agrees_with_brute(12, 0.1);
        agrees_with_brute(13, 0.5);
    }

    fn agrees_with_brute(seed: u64, unanswered: f64) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (mut yes, mut no, mut grouped) = (0, 0, 0);
        for _ in 0..4000 {
            let n = rng.gen_range(1..=9);
            let mut ops: Vec<(u64, Op)> = (0..n)
                .map(|c| {
                    let invoke = rng.gen_range(0..30u64);
                    let point = invoke + rng.gen_range(0..8);
                    let complete = (!rng.gen_bool(unanswered)).then(|| point + rng.gen_range(0..8));
                    let kind = match rng.gen_range(0..3) {
                        0 => RegOp::Read,
                        1 => RegOp::Write(rng.gen_range(1..4)),
                        _ => RegOp::Cas {
                            version: rng.gen_range(-1..3),
                            value: rng.gen_range(1..4),
                        },
                    };
                    (point, op(c as u32, kind, invoke, complete, Outcome::Info))
                })
                .collect();
            ops.sort_by_key(|(p, _)| *p);
            let mut st: State = (0, -1);
            for (_, o) in ops.iter_mut() {
                let info = o.complete.is_none() && rng.gen_bool(0.5);
                o.outcome = match o.op {
                    RegOp::Read => Outcome::Ok(Some(st)),
                    RegOp::Write(v) => {
                        st = (v, st.1 + 1);
                        Outcome::Ok(None)
                    }
                    RegOp::Cas { version, value } if version == st.1 => {
                        st = (value, st.1 + 1);
                        Outcome::Ok(None)
                    }
                    _ => Outcome::Fail,
                };
                if info {
                    o.outcome = Outcome::Info;
                }
                if rng.gen_bool(0.08) {
                    o.outcome = match o.op {
                        RegOp::Read => Outcome::Ok(Some((rng.gen_range(0..4), rng.gen_range(-1..3)))),
                        _ => Outcome::Fail,
                    };
                }
            }
            let ops: Vec<Op> = ops.into_iter().map(|(_, o)| o).collect();
            let (_, rank, _) = symmetry_classes(&ops, (0, -1));
            grouped += usize::from(rank.contains(&Some(1)));
            let want = brute(&ops, &mut vec![false; ops.len()], (0, -1));
            let got = check_key("k", &ops, (0, -1), 1_000_000);
            assert!(!matches!(&got, Err(v) if v.budget_exhausted), "{ops:?}");
            assert_eq!(
                got.is_ok(),
                want,
                "{:?}",
                ops.iter()
                    .map(|o| (o.client, o.op.clone(), o.invoke, o.complete, o.outcome.clone()))
                    .collect::<Vec<_>>()
            );
            if want {
                yes += 1;
            } else {
                no += 1;
            }
        }
        assert!(
            yes > 500 && no > 300,
            "both verdicts occur: {yes} linearizable, {no} not"
        );
        assert!(
            unanswered < 0.5 || grouped > 100,
            "interchangeable unanswered ops occur: {grouped} histories"
        );
    }
}
