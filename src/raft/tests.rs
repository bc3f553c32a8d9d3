//! Table-driven tests of individual Raft rules on a small deterministic cluster harness.

use super::*;
use std::collections::{BTreeMap, BTreeSet};

struct Cluster {
    nodes: BTreeMap<NodeId, Raft>,
    queue: Vec<Message>,
    cut: BTreeSet<NodeId>,
    /// Every message delivered, for assertions on traffic.
    log: Vec<Message>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    /// `Ready::load_snapshot` requests: node and snapshot index.
    loads: Vec<(NodeId, u64)>,
    /// Nodes whose `Ready` asked for a snapshot to be taken (`compact`).
    compacts: Vec<NodeId>,
}

fn config(id: NodeId) -> Config {
    let mut c = Config::new(id, 7);
    c.election_tick = 10;
    c
}

/// A node whose storage holds entries with these terms (indices 1..) and this hard state.
fn node(id: NodeId, voters: &[NodeId], terms: &[u64], term: u64, commit: u64, tweak: impl Fn(&mut Config)) -> Raft {
    let entries = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry {
            term: t,
            index: i as u64 + 1,
            kind: EntryKind::Normal,
            data: vec![i as u8].into(),
        })
        .collect();
    let mut c = config(id);
    tweak(&mut c);
    Raft::new(
        c,
        Recovered {
            hard_state: HardState { term, vote: 0, commit },
            snapshot: Snapshot {
                meta: SnapshotMeta {
                    index: 0,
                    term: 0,
                    conf: ConfState::voters(voters.to_vec()),
                },
                data: vec![],
            },
            entries,
        },
    )
}

impl Cluster {
    fn new(nodes: Vec<Raft>) -> Self {
        Cluster {
            nodes: nodes.into_iter().map(|r| (r.id(), r)).collect(),
            queue: vec![],
            cut: BTreeSet::new(),
            log: vec![],
            applied: BTreeMap::new(),
            loads: vec![],
            compacts: vec![],
        }
    }

    fn fresh(n: u64) -> Self {
        let ids: Vec<NodeId> = (1..=n).collect();
        Self::new(ids.iter().map(|&i| node(i, &ids, &[], 0, 0, |_| {})).collect())
    }

    fn r(&mut self, id: NodeId) -> &mut Raft {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Runs every node's Ready: persist (implicit), queue messages, record applied entries.
    fn process(&mut self) {
        loop {
            let mut any = false;
            for (id, r) in self.nodes.iter_mut() {
                if r.has_ready() {
                    any = true;
                    let rd = r.ready();
                    self.loads.extend(rd.load_snapshot.map(|i| (*id, i)));
                    if rd.compact {
                        self.compacts.push(*id);
                    }
                    self.queue.extend(rd.messages.iter().cloned());
                    self.applied
                        .entry(*id)
                        .or_default()
                        .extend(rd.committed.iter().cloned());
                    r.advance(&rd);
                }
            }
            if !any {
                return;
            }
        }
    }

    /// Delivers messages (dropping those to or from cut nodes) until none are left.
    fn settle(&mut self) {
        self.process();
        while !self.queue.is_empty() {
            for m in std::mem::take(&mut self.queue) {
                if self.cut.contains(&m.from) || self.cut.contains(&m.to) {
                    continue;
                }
                self.log.push(m.clone());
                if let Some(r) = self.nodes.get_mut(&m.to) {
                    r.step(m);
                }
            }
            self.process();
        }
    }

    /// Delivers only the queued messages matching `f`; the rest stay queued.
    fn deliver_only(&mut self, f: impl Fn(&Message) -> bool) {
        self.process();
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queue).into_iter().partition(|m| f(m));
        self.queue = later;
        for m in now {
            self.log.push(m.clone());
            if let Some(r) = self.nodes.get_mut(&m.to) {
                r.step(m);
            }
        }
        self.process();
    }

    fn tick_all(&mut self, n: u32) {
        for _ in 0..n {
            for r in self.nodes.values_mut() {
                r.tick();
            }
            self.settle();
        }
    }

    /// Makes `id` campaign now (as TimeoutNow does) and settles.
    fn campaign(&mut self, id: NodeId) {
        let term = self.r(id).term();
        let from = if id == 1 { 2 } else { 1 };
        self.r(id).step(Message {
            from,
            to: id,
            term,
            body: Body::TimeoutNow,
        });
        self.settle();
    }

    fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|r| r.role() == Role::Leader)
            .map(|r| r.id())
            .collect()
    }
}

#[test]
fn single_node_elects_itself_and_commits() {
    let mut c = Cluster::fresh(1);
    c.tick_all(25);
    assert_eq!(c.leaders(), vec![1]);
    let i = c.r(1).propose(b"x".to_vec()).unwrap();
    c.settle();
    assert_eq!(c.r(1).committed(), i);
    assert_eq!(c.applied[&1].last().unwrap().data[..], b"x"[..]);
}

#[test]
fn a_sole_voter_leads_at_once_after_a_restart() {
    // A restarted one-voter cluster with a log: leader in the next term without a tick.
    let mut r = node(1, &[1], &[1, 1, 2], 2, 3, |_| {});
    r.campaign_if_sole_voter();
    assert_eq!((r.role(), r.term()), (Role::Leader, 3));
    // One voter of three: nothing happens before the election timeout.
    let mut r = node(1, &[1, 2, 3], &[1], 1, 1, |_| {});
    r.campaign_if_sole_voter();
    assert_eq!((r.role(), r.term()), (Role::Follower, 1));
    // A node that is not the voter never campaigns.
    let mut r = node(2, &[1], &[1], 1, 1, |_| {});
    r.campaign_if_sole_voter();
    assert_eq!(r.role(), Role::Follower);
}

#[test]
fn three_nodes_elect_exactly_one_leader() {
    for seed in 0..20 {
        let ids = [1, 2, 3];
        let mut c = Cluster::new(
            ids.iter()
                .map(|&i| node(i, &ids, &[], 0, 0, |cf| cf.seed = seed))
                .collect(),
        );
        c.tick_all(40);
        assert_eq!(c.leaders().len(), 1, "seed {seed}");
    }
}

#[test]
fn pre_vote_keeps_an_isolated_node_from_raising_its_term() {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    let term = c.r(1).term();
    c.cut.insert(3);
    c.tick_all(100);
    assert_eq!(c.r(3).term(), term, "pre-vote must not bump the term");
    c.cut.clear();
    c.tick_all(5);
    assert_eq!(c.leaders(), vec![1], "rejoining node must not disrupt the leader");
    assert_eq!(c.r(1).term(), term);
}

#[test]
fn without_pre_vote_an_isolated_node_disrupts() {
    let ids = [1, 2, 3];
    let mut c = Cluster::new(
        ids.iter()
            .map(|&i| {
                node(i, &ids, &[], 0, 0, |cf| {
                    cf.pre_vote = false;
                    cf.check_quorum = false;
                })
            })
            .collect(),
    );
    c.campaign(1);
    let term = c.r(1).term();
    c.cut.insert(3);
    c.tick_all(100);
    assert!(c.r(3).term() > term, "the contrast case: terms grow without pre-vote");
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    c.cut.insert(1);
    c.tick_all(25);
    assert_eq!(c.r(1).role(), Role::Follower);
    assert!(c.leaders().iter().all(|&l| l != 1));
}

#[test]
fn leader_lease_ignores_votes_while_the_leader_is_alive() {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    let term = c.r(1).term();
    // A vote request for a higher term while 2 hears from the leader is ignored.
    c.r(2).step(Message {
        from: 3,
        to: 2,
        term: term + 1,
        body: Body::RequestVote {
            last_index: 100,
            last_term: 100,
            pre_vote: false,
            transfer: false,
        },
    });
    assert_eq!(c.r(2).term(), term);
    c.process();
    assert!(c.queue.iter().all(|m| !matches!(m.body, Body::VoteResponse { .. })));
}

#[test]
fn a_node_votes_once_per_term_and_only_for_up_to_date_logs() {
    // Node 1's log [1, 2] is more up to date than [1, 1, 1] (higher last term).
    let cases: &[(&[u64], u64, u64, bool)] = &[
        (&[1, 2], 3, 2, true),  // longer candidate log, same last term
        (&[1, 2], 1, 2, false), // lower last term
        (&[1, 2], 2, 2, true),  // same log
        (&[1, 2], 1, 3, true),  // higher last term wins even if shorter
        (&[1, 2], 5, 1, false), // longer but older
    ];
    for (i, &(mine, cand_last_index, cand_last_term, granted)) in cases.iter().enumerate() {
        let mut r = node(1, &[1, 2, 3], mine, 2, 0, |_| {});
        r.step(Message {
            from: 2,
            to: 1,
            term: 3,
            body: Body::RequestVote {
                last_index: cand_last_index,
                last_term: cand_last_term,
                pre_vote: false,
                transfer: false,
            },
        });
        let rd = r.ready();
        let got = rd.messages.iter().any(|m| {
            m.body
                == Body::VoteResponse {
                    granted: true,
                    pre_vote: false,
                }
        });
        assert_eq!(got, granted, "case {i}");
        r.advance(&rd);
        // A second candidate in the same term never gets the vote.
        r.step(Message {
            from: 3,
            to: 1,
            term: 3,
            body: Body::RequestVote {
                last_index: 99,
                last_term: 99,
                pre_vote: false,
                transfer: false,
            },
        });
        let rd = r.ready();
        let second = rd.messages.iter().any(|m| {
            m.body
                == Body::VoteResponse {
                    granted: true,
                    pre_vote: false,
                }
        });
        assert_eq!(second, !granted, "case {i}: exactly one vote in term 3");
    }
}

/// Raft paper figure 7: a new leader (term 8) brings followers with missing, extra and
/// conflicting entries into line with its log.
#[test]
fn figure_7_logs_converge_to_the_leader() {
    let leader: &[u64] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [&[u64]; 6] = [
        &[1, 1, 1, 4, 4, 5, 5, 6, 6],
        &[1, 1, 1, 4],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        &[1, 1, 1, 4, 4, 4, 4],
        &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    for (k, f) in followers.iter().enumerate() {
        // Two-node cluster per case (leader + follower k) plus a third voter that votes for
        // the leader, so the leader can always win.
        let ids = [1, 2, 3];
        let mut c = Cluster::new(vec![
            node(1, &ids, leader, 7, 0, |_| {}),
            node(2, &ids, f, 7, 0, |_| {}),
            node(3, &ids, &[1], 7, 0, |_| {}),
        ]);
        c.campaign(1);
        assert_eq!(c.leaders(), vec![1], "case {k}");
        c.r(1).propose(b"new".to_vec()).unwrap();
        c.settle();
        let (l1, l2) = (c.r(1).last_index(), c.r(2).last_index());
        let want = c.r(1).entries(1, l1);
        let got = c.r(2).entries(1, l2);
        assert_eq!(got, want, "follower {k} did not converge");
        assert_eq!(c.r(2).committed(), c.r(1).committed());
    }
}

/// Raft paper figure 8: a leader must not commit an entry of an earlier term by counting
/// replicas; it commits only once an entry of its own term is on a majority.
#[test]
fn figure_8_old_term_entries_commit_only_indirectly() {
    let ids = [1, 2, 3, 4, 5];
    // S1 holds (2, term 2) from its term-2 leadership; S5 holds a conflicting (2, term 3).
    let mut c = Cluster::new(vec![
        node(1, &ids, &[1, 2], 3, 1, |cf| cf.max_bytes_per_msg = 1),
        node(2, &ids, &[1], 3, 1, |_| {}),
        node(3, &ids, &[1], 3, 1, |_| {}),
        node(4, &ids, &[1], 3, 1, |_| {}),
        node(5, &ids, &[1, 3], 3, 1, |_| {}),
    ]);
    c.cut.insert(5);
    // Let (2, term 2) reach S2 and S3 but never let the term-4 entry (index 3) land on a
    // node that could accept it (one already holding index 2); those appends are dropped.
    fn step_filtered(c: &mut Cluster) {
        let have2: BTreeSet<NodeId> = [2, 3, 4].into_iter().filter(|&i| c.r(i).term_at(2).is_some()).collect();
        c.process();
        c.queue.retain(|m| match &m.body {
            Body::Append { entries, .. } => !(have2.contains(&m.to) && entries.iter().any(|e| e.index >= 3)),
            _ => true,
        });
        c.deliver_only(|m| m.to != 5 && m.from != 5);
    }
    c.r(1).step(Message {
        from: 2,
        to: 1,
        term: 3,
        body: Body::TimeoutNow,
    });
    for _ in 0..3 {
        step_filtered(&mut c);
    }
    assert_eq!(c.leaders(), vec![1]);
    assert_eq!(c.r(1).term(), 4);
    for _ in 0..8 {
        c.r(1).tick();
        step_filtered(&mut c);
    }
    for id in [1, 2, 3, 4] {
        assert_eq!(c.r(id).term_at(2), Some(2), "S{id} holds (2, term 2)");
    }
    // A majority holds it, yet committing it now would be unsafe: S5 (last term 3) can still
    // win an election with S2, S3 and S4 and overwrite index 2.
    assert_eq!(
        c.r(1).committed(),
        1,
        "committed an old-term entry by counting replicas"
    );
    // Once the term-4 entry reaches a majority, both commit together.
    c.settle();
    c.tick_all(3);
    assert!(c.r(1).committed() >= 3);
    c.cut.clear();
    c.tick_all(3);
    assert_eq!(
        c.r(5).term_at(2),
        Some(2),
        "S5's conflicting (2, term 3) was overwritten"
    );
}

#[test]
fn fast_backtracking_needs_one_round_per_conflicting_term() {
    let ids = [1, 2, 3];
    // The follower holds 50 entries of term 2 that conflict with the leader's term-3 entries.
    let long2 = [vec![1u64], vec![2u64; 50]].concat();
    let leader = [vec![1u64], vec![3u64; 50]].concat();
    let mut c = Cluster::new(vec![
        node(1, &ids, &leader, 3, 1, |_| {}),
        node(2, &ids, &long2, 3, 1, |_| {}),
        node(3, &ids, &[1], 3, 1, |_| {}),
    ]);
    c.campaign(1);
    c.settle();
    let rejects = c
        .log
        .iter()
        .filter(|m| m.from == 2 && matches!(m.body, Body::AppendResponse { reject: true, .. }))
        .count();
    assert!(
        rejects <= 2,
        "{rejects} rejections; expected backtracking by term, not by index"
    );
    assert_eq!(c.r(2).entries(1, 51), c.r(1).entries(1, 51));
}

#[test]
fn flow_control_limits_appends_in_flight() {
    let ids = [1, 2];
    let mut c = Cluster::new(
        ids.iter()
            .map(|&i| {
                node(i, &ids, &[], 0, 0, |cf| {
                    cf.max_inflight = 2;
                    cf.max_bytes_per_msg = 1;
                })
            })
            .collect(),
    );
    c.campaign(1);
    c.settle();
    for i in 0..10u8 {
        c.r(1).propose(vec![i]).unwrap();
    }
    c.process();
    let appends = c
        .queue
        .iter()
        .filter(|m| matches!(&m.body, Body::Append { entries, .. } if !entries.is_empty()))
        .count();
    assert_eq!(
        appends, 2,
        "replicate state sends at most max_inflight appends before acks"
    );
    c.settle();
    assert_eq!(c.r(2).last_index(), c.r(1).last_index());
    assert_eq!(c.r(1).committed(), c.r(1).last_index());
}

/// Proposals between two `Ready`s reach each follower in one append, and the follower answers
/// the appends of one `Ready` once (at the highest index): traffic per batch, not per write.
#[test]
fn proposals_between_readies_travel_in_one_append_per_follower() {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    c.settle();
    let before = c.log.len();
    for i in 0..10u8 {
        c.r(1).propose(vec![i]).unwrap();
    }
    c.process();
    let appends: Vec<usize> = c
        .queue
        .iter()
        .filter_map(|m| match &m.body {
            Body::Append { entries, .. } => Some(entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(appends, vec![10, 10], "one append of all ten entries to each follower");
    c.settle();
    let last = c.r(1).last_index();
    assert_eq!(c.r(1).committed(), last);
    assert_eq!(c.r(2).committed(), last);
    assert_eq!(c.r(3).committed(), last);
    // Per follower: the append, its answer, and the commit index (which is not answered).
    let traffic = c.log.len() - before;
    assert_eq!(traffic, 6, "messages for ten writes: {:?}", &c.log[before..]);
    let commits = c.log[before..]
        .iter()
        .filter(|m| matches!(m.body, Body::Commit { .. }))
        .count();
    assert_eq!(
        commits,
        2,
        "the commit index reaches each follower: {:?}",
        &c.log[before..]
    );

    // A follower that steps two appends before its Ready answers once, with the later index.
    let term = c.r(1).term();
    let append = |prev: u64, n: u64| Message {
        from: 1,
        to: 2,
        term,
        body: Body::Append {
            prev_index: prev,
            prev_term: term,
            entries: (prev + 1..=prev + n)
                .map(|index| Entry {
                    term,
                    index,
                    kind: EntryKind::Normal,
                    data: vec![0].into(),
                })
                .collect(),
            commit: last,
        },
    };
    // The answers of a Ready: (rejected, index).
    let acks = |rd: &Ready| -> Vec<(bool, u64)> {
        rd.messages
            .iter()
            .filter_map(|m| match m.body {
                Body::AppendResponse { reject, index, .. } => Some((reject, index)),
                _ => None,
            })
            .collect()
    };
    c.r(2).step(append(last, 2));
    c.r(2).step(append(last + 2, 3));
    let rd = c.r(2).ready();
    assert_eq!(acks(&rd), vec![(false, last + 5)]);
    // A rejection in between is not merged over: the answers keep their order.
    c.r(2).advance(&rd);
    c.r(2).step(append(last + 9, 1));
    c.r(2).step(append(last + 5, 1));
    assert_eq!(acks(&c.r(2).ready()), vec![(true, last + 9), (false, last + 6)]);
}

/// A commit index that matches the follower's log is taken silently; one past what it holds is
/// rejected like an append (so a leader whose appends were lost finds out and probes).
#[test]
fn a_commit_is_answered_only_when_it_does_not_match() {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    c.settle();
    let term = c.r(1).term();
    let last = c.r(1).last_index();
    let entries: Vec<Entry> = (last + 1..=last + 3)
        .map(|index| Entry {
            term,
            index,
            kind: EntryKind::Normal,
            data: vec![7].into(),
        })
        .collect();
    let msg = |body: Body| Message {
        from: 1,
        to: 2,
        term,
        body,
    };
    c.r(2).step(msg(Body::Append {
        prev_index: last,
        prev_term: term,
        entries,
        commit: last,
    }));
    let rd = c.r(2).ready();
    c.r(2).advance(&rd);
    c.r(2).on_persisted(last + 3, term);
    c.r(2).step(msg(Body::Commit {
        prev_index: last + 2,
        prev_term: term,
        commit: last + 3,
    }));
    // Committed only as far as the commit's prev_index is known to match.
    assert_eq!(c.r(2).committed(), last + 2);
    let rd = c.r(2).ready();
    assert!(
        rd.messages.is_empty(),
        "a matching commit is not answered: {:?}",
        rd.messages
    );
    c.r(2).advance(&rd);
    c.r(2).step(msg(Body::Commit {
        prev_index: last + 9,
        prev_term: term,
        commit: last + 9,
    }));
    assert_eq!(c.r(2).committed(), last + 2, "nothing past its log is committed");
    let rejects: Vec<(bool, u64)> = c
        .r(2)
        .ready()
        .messages
        .iter()
        .filter_map(|m| match m.body {
            Body::AppendResponse { reject, index, .. } => Some((reject, index)),
            _ => None,
        })
        .collect();
    assert_eq!(rejects, vec![(true, last + 9)]);
}

/// A leader whose append was lost learns it from the rejected commit and sends it again.
#[test]
fn a_lost_append_is_sent_again_after_its_commit_is_rejected() {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    c.settle();
    // Follower 3 misses the append; 2 answers, so the entry commits and 3 gets a commit for
    // an index it lacks (no heartbeat comes: nothing ticks).
    c.r(1).propose(b"x".to_vec()).unwrap();
    c.process();
    c.queue
        .retain(|m| !(m.to == 3 && matches!(m.body, Body::Append { .. })));
    let before = c.log.len();
    c.settle();
    let rejected = c.log[before..]
        .iter()
        .any(|m| m.from == 3 && matches!(m.body, Body::AppendResponse { reject: true, .. }));
    assert!(rejected, "the commit past its log was rejected: {:?}", &c.log[before..]);
    let last = c.r(1).last_index();
    assert_eq!(c.r(1).committed(), last);
    assert_eq!(c.r(3).last_index(), last, "the rejection brought the append again");
    assert_eq!(c.r(3).committed(), last);
}

#[test]
fn read_index_needs_a_quorum_and_followers_forward() {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    c.r(1).propose(b"a".to_vec()).unwrap();
    c.settle();
    let commit = c.r(1).committed();
    // Leader: the answer waits for heartbeat acks from a quorum.
    c.cut.insert(2);
    c.cut.insert(3);
    c.r(1).read_index(b"r1".to_vec()).unwrap();
    c.settle();
    assert!(c.r(1).ready().read_states.is_empty(), "no quorum, no read");
    c.cut.clear();
    c.tick_all(1);
    // The pending read is answered once heartbeats with its context are acked.
    c.r(1).read_index(b"r2".to_vec()).unwrap();
    let mut got = vec![];
    for _ in 0..3 {
        c.process();
        for m in std::mem::take(&mut c.queue) {
            if let Some(r) = c.nodes.get_mut(&m.to) {
                r.step(m);
            }
        }
        let rd = c.r(1).ready();
        got.extend(rd.read_states.iter().map(|s| (s.index, s.ctx.clone())));
        c.r(1).advance(&rd);
    }
    assert!(got.contains(&(commit, b"r2".to_vec())), "{got:?}");
    // Follower: forwards to the leader and gets the leader's commit index back.
    c.r(2).read_index(b"f".to_vec()).unwrap();
    let mut states = vec![];
    for _ in 0..4 {
        c.process();
        for m in std::mem::take(&mut c.queue) {
            if let Some(r) = c.nodes.get_mut(&m.to) {
                r.step(m);
            }
        }
        let rd = c.r(2).ready();
        states.extend(rd.read_states.clone());
        c.r(2).advance(&rd);
    }
    assert_eq!(
        states,
        vec![ReadState {
            index: commit,
            ctx: b"f".to_vec()
        }]
    );
}

#[test]
fn read_index_waits_for_a_current_term_commit() {
    let ids = [1, 2, 3];
    let mut c = Cluster::new(ids.iter().map(|&i| node(i, &ids, &[1, 1], 1, 1, |_| {})).collect());
    c.campaign(1);
    c.queue.clear();
    c.r(1).read_index(b"early".to_vec()).unwrap();
    let rd = c.r(1).ready();
    assert!(
        rd.read_states.is_empty(),
        "commit index 1 is from an old term: not yet a safe read point"
    );
    c.r(1).advance(&rd);
    c.tick_all(3);
    let committed = c.r(1).committed();
    assert!(committed >= 3);
}

#[test]
fn leadership_transfer_hands_over_after_catch_up() {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    c.cut.insert(3);
    for i in 0..5u8 {
        c.r(1).propose(vec![i]).unwrap();
    }
    c.settle();
    c.cut.clear();
    let term = c.r(1).term();
    c.r(1).transfer_leader(3).unwrap();
    assert_eq!(c.r(1).propose(b"blocked".to_vec()), Err(RaftError::TransferInProgress));
    c.settle();
    c.tick_all(2);
    assert_eq!(c.leaders(), vec![3]);
    assert_eq!(c.r(3).term(), term + 1);
    assert_eq!(c.r(1).transfer_leader(2), Err(RaftError::NotLeader { leader: Some(3) }));
}

/// Three nodes in 7-byte snapshot chunks; node 3 cut off while 20 entries commit, then the
/// leader (1) compacts its log into a 100-byte snapshot. Node 3 is still cut off.
fn follower_behind_a_snapshot() -> (Cluster, u64, SnapshotMeta, Vec<u8>) {
    let ids = [1, 2, 3];
    let mut c = Cluster::new(
        ids.iter()
            .map(|&i| node(i, &ids, &[], 0, 0, |cf| cf.snapshot_chunk = 7))
            .collect(),
    );
    c.campaign(1);
    c.cut.insert(3);
    for i in 0..20u8 {
        c.r(1).propose(vec![i]).unwrap();
    }
    c.settle();
    let applied = c.r(1).applied();
    let data: Vec<u8> = (0..100).collect();
    let meta = c.r(1).compact(applied, data.clone()).unwrap();
    (c, applied, meta, data)
}

/// InstallSnapshot messages sent so far.
fn snapshot_chunks(c: &Cluster) -> usize {
    c.log
        .iter()
        .filter(|m| matches!(m.body, Body::InstallSnapshot { .. }))
        .count()
}

#[test]
fn lagging_follower_gets_a_chunked_snapshot() {
    let (mut c, applied, _, _) = follower_behind_a_snapshot();
    c.cut.clear();
    c.tick_all(3);
    let chunks = snapshot_chunks(&c);
    assert!(chunks >= 15, "100 bytes in 7-byte chunks: {chunks} messages");
    assert_eq!(c.r(3).snapshot_meta().index, applied);
    assert_eq!(c.r(3).committed(), c.r(1).committed());
    c.r(1).propose(b"after".to_vec()).unwrap();
    c.settle();
    assert_eq!(c.r(3).last_index(), c.r(1).last_index());
}

/// A leader that dropped its snapshot's bytes asks for them once, sends nothing until they
/// come, ignores bytes of another snapshot, then sends the chunks; and keeps them only while
/// a follower is being sent them.
#[test]
fn dropped_snapshot_bytes_are_loaded_when_a_follower_needs_them() {
    let (mut c, applied, meta, data) = follower_behind_a_snapshot();
    assert!(c.r(1).drop_snapshot_data());
    c.cut.clear();
    c.tick_all(3);
    let chunks = snapshot_chunks;
    assert_eq!(chunks(&c), 0, "no chunk before the bytes are back");
    assert_eq!(c.loads, vec![(1, applied)], "asked once, however many heartbeats");
    // Bytes of some other snapshot are not taken for these; the next chunk due asks again.
    let mut other = meta.clone();
    other.index -= 1;
    c.r(1).snapshot_loaded(Snapshot {
        meta: other,
        data: vec![9; 100],
    });
    c.tick_all(3);
    assert_eq!(chunks(&c), 0);
    assert_eq!(c.loads, vec![(1, applied), (1, applied)]);
    // Nor may the bytes go while the follower waits for them.
    assert!(c.r(1).drop_snapshot_data());
    c.r(1).snapshot_loaded(Snapshot {
        meta: meta.clone(),
        data: data.clone(),
    });
    assert!(!c.r(1).drop_snapshot_data(), "a follower is being sent them");
    c.settle();
    c.tick_all(3);
    assert!(chunks(&c) >= 15, "100 bytes in 7-byte chunks: {}", chunks(&c));
    assert_eq!(c.r(3).snapshot_meta(), &meta);
    assert_eq!(c.r(3).committed(), c.r(1).committed());
    assert!(c.r(1).drop_snapshot_data(), "sent: nobody needs them now");
    c.r(1).propose(b"after".to_vec()).unwrap();
    c.settle();
    assert_eq!(c.r(3).last_index(), c.r(1).last_index());
    assert_eq!(c.loads.len(), 2);
}

/// A snapshot recorded without its bytes (`compact_stored`: the runtime wrote it in pieces
/// to disk) replaces the one in memory: nothing is sent from it until the runtime has read
/// its bytes back, and then the follower gets it.
#[test]
fn a_snapshot_stored_without_its_bytes_is_loaded_before_it_is_sent() {
    let (mut c, _, _, _) = follower_behind_a_snapshot();
    for i in 0..5u8 {
        c.r(1).propose(vec![i]).unwrap();
    }
    c.settle();
    let applied = c.r(1).applied();
    let meta = c.r(1).compact_stored(applied).unwrap();
    assert!(c.r(1).drop_snapshot_data(), "nothing held");
    c.cut.clear();
    c.tick_all(3);
    let chunks = snapshot_chunks;
    assert_eq!(chunks(&c), 0, "no chunk of empty bytes, nor of the older snapshot");
    assert_eq!(c.loads, vec![(1, applied)]);
    let data: Vec<u8> = (0..50).collect();
    c.r(1).snapshot_loaded(Snapshot {
        meta: meta.clone(),
        data,
    });
    c.settle();
    c.tick_all(3);
    assert!(chunks(&c) >= 8, "50 bytes in 7-byte chunks: {}", chunks(&c));
    assert_eq!(c.r(3).snapshot_meta(), &meta);
    assert_eq!(c.r(3).committed(), c.r(1).committed());
}

#[test]
fn membership_changes_one_at_a_time_with_learners() {
    let ids = [1, 2, 3];
    let mut c = Cluster::new(vec![
        node(1, &ids, &[], 0, 0, |_| {}),
        node(2, &ids, &[], 0, 0, |_| {}),
        node(3, &ids, &[], 0, 0, |_| {}),
        node(4, &ids, &[], 0, 0, |_| {}),
    ]);
    c.campaign(1);
    // A new member starts from a snapshot (see a_new_member_never_gets_the_log_from_its_start).
    let applied = c.r(1).applied();
    c.r(1).compact(applied, b"tree".to_vec()).unwrap();
    c.r(1).propose_conf_change(ConfChange::AddLearner(4), vec![]).unwrap();
    assert_eq!(
        c.r(1).propose_conf_change(ConfChange::AddVoter(4), vec![]),
        Err(RaftError::ConfChangePending)
    );
    c.settle();
    assert!(c.r(1).conf().learners.contains(&4));
    c.r(1).propose(b"x".to_vec()).unwrap();
    c.settle();
    c.tick_all(3);
    assert_eq!(c.r(4).last_index(), c.r(1).last_index(), "learners receive the log");
    // A learner never campaigns.
    for _ in 0..50 {
        c.r(4).tick();
    }
    assert_eq!(c.r(4).role(), Role::Follower);
    c.r(1).propose_conf_change(ConfChange::AddVoter(4), vec![]).unwrap();
    c.settle();
    assert_eq!(c.r(1).conf().voters.len(), 4);
    // Removing the leader makes it step down once committed, and hand over at once: a voter
    // with the whole log campaigns without waiting out an election timeout.
    c.r(1).propose_conf_change(ConfChange::Remove(1), vec![]).unwrap();
    c.settle();
    assert_eq!(c.r(1).role(), Role::Follower);
    let leaders = c.leaders();
    assert_eq!(leaders.len(), 1, "no tick needed");
    assert_ne!(leaders[0], 1);
    let l = leaders[0];
    assert!(!c.r(l).conf().voters.contains(&1));
    assert!(!c.r(l).conf().learners.contains(&1));
}

/// Voters 1-3 led by 1, and node 4 started to join them: it bootstrapped believing it is one
/// of four voters (its own zoo.cfg); the ensemble never said so.
fn with_joiner() -> Cluster {
    let ids = [1, 2, 3];
    let mut c = Cluster::new(vec![
        node(1, &ids, &[], 0, 0, |_| {}),
        node(2, &ids, &[], 0, 0, |_| {}),
        node(3, &ids, &[], 0, 0, |_| {}),
        node(4, &[1, 2, 3, 4], &[], 0, 0, |_| {}),
    ]);
    c.campaign(1);
    c
}

#[test]
fn a_new_member_starts_from_the_leaders_snapshot() {
    let mut c = with_joiner();
    for i in 0..5u8 {
        c.r(1).propose(vec![i]).unwrap();
    }
    c.settle();
    let applied = c.r(1).applied();
    c.r(1).compact(applied, b"tree".to_vec()).unwrap();
    c.r(1)
        .propose_conf_change(ConfChange::AddLearner(4), b"ctx".to_vec())
        .unwrap();
    c.settle();
    c.tick_all(3);
    assert_eq!(
        c.r(4).snapshot_meta().index,
        applied,
        "sent the snapshot, not entries from 1"
    );
    let leader_conf = c.r(1).conf().clone();
    assert_eq!(
        c.r(4).conf(),
        &leader_conf,
        "the snapshot's membership replaced its own"
    );
    assert!(c.r(4).conf().learners.contains(&4));
    assert_eq!(c.r(4).last_index(), c.r(1).last_index());
    // The context comes back with the committed entry, for the application.
    let last = c.r(4).last_index();
    let e = c.r(4).entries(last, last).pop().unwrap();
    assert_eq!(e.kind, EntryKind::ConfChange);
    assert_eq!(
        ConfChange::decode(&e.data),
        Some((ConfChange::AddLearner(4), b"ctx".to_vec()))
    );
}

#[test]
fn a_new_member_never_gets_the_log_from_its_start() {
    // Entries from index 1 would be applied on top of node 4's own bootstrap. Without a
    // snapshot the leader sends nothing and asks for one.
    let mut c = with_joiner();
    c.r(1).propose(b"x".to_vec()).unwrap();
    c.settle();
    c.r(1).propose_conf_change(ConfChange::AddLearner(4), vec![]).unwrap();
    c.settle();
    c.tick_all(4);
    assert_eq!(c.r(4).last_index(), 0, "no entries from the start");
    assert!(c.compacts.contains(&1), "the leader asks for a snapshot");
    assert!(!c
        .log
        .iter()
        .any(|m| m.to == 4 && matches!(m.body, Body::Append { prev_index: 0, .. })));
    // Once there is one, the learner gets it and then the log.
    let applied = c.r(1).applied();
    c.r(1).compact(applied, b"tree".to_vec()).unwrap();
    c.tick_all(4);
    assert_eq!(c.r(4).snapshot_meta().index, applied);
    assert_eq!(c.r(4).last_index(), c.r(1).last_index());
    // The original members still get the log from its start (none was compacted there).
    assert!(c.r(2).snapshot_meta().index == 0 && c.r(2).last_index() == c.r(1).last_index());
}

#[test]
fn a_demoted_voter_leaves_the_quorum_and_keeps_the_log() {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    c.r(1).propose(b"x".to_vec()).unwrap();
    c.settle();
    c.r(1).propose_conf_change(ConfChange::AddLearner(3), vec![]).unwrap();
    c.settle();
    assert_eq!(c.r(1).conf().voters.len(), 2);
    assert!(c.r(1).conf().learners.contains(&3));
    // Two voters: cutting node 2 stops commits although node 3 still acknowledges.
    c.cut.insert(2);
    let before = c.r(1).committed();
    c.r(1).propose(b"y".to_vec()).unwrap();
    c.settle();
    assert_eq!(c.r(1).committed(), before, "a learner's acknowledgement does not count");
    assert_eq!(
        c.r(3).last_index(),
        c.r(1).last_index(),
        "the learner still gets the log"
    );
    c.cut.clear();
    c.settle();
    c.tick_all(2);
    assert!(c.r(1).committed() > before);
}

#[test]
fn stale_leader_learns_the_new_term_and_steps_down() {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    c.cut.insert(1);
    c.campaign(2);
    assert!(c.leaders().contains(&2));
    c.cut.clear();
    // The old leader's next heartbeat meets the higher term.
    c.r(1).tick();
    c.settle();
    assert_eq!(c.leaders(), vec![2]);
    assert_eq!(c.r(1).term(), c.r(2).term());
}

#[test]
fn garbage_messages_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    for _ in 0..5000 {
        let to = rng.gen_range(1..=3);
        let body = match rng.gen_range(0..6) {
            0 => Body::Append {
                prev_index: rng.gen_range(0..50),
                prev_term: rng.gen_range(0..5),
                entries: vec![],
                commit: rng.gen_range(0..100),
            },
            1 => Body::AppendResponse {
                reject: rng.gen(),
                index: rng.gen_range(0..50),
                hint_index: rng.gen_range(0..50),
                hint_term: rng.gen_range(0..5),
            },
            2 => Body::Heartbeat {
                commit: rng.gen_range(0..100),
                ctx: vec![],
            },
            3 => Body::SnapshotResponse {
                index: rng.gen_range(0..9),
                offset: rng.gen(),
                installed: rng.gen(),
                reject: rng.gen(),
            },
            4 => Body::ReadIndexResponse {
                index: rng.gen(),
                ctx: vec![1],
            },
            _ => Body::VoteResponse {
                granted: rng.gen(),
                pre_vote: rng.gen(),
            },
        };
        let from = rng.gen_range(1..=4);
        let term = c.r(to).term() + rng.gen_range(0..2);
        c.r(to).step(Message { from, to, term, body });
        c.process();
        c.queue.clear();
    }
}

/// Node 3's answer to a vote request from node 2 in `term` with node 1's log.
fn vote_of_3(c: &mut Cluster, term: u64) -> bool {
    let (last_index, last_term) = (c.r(1).last_index(), c.r(1).term());
    c.r(3).step(Message {
        from: 2,
        to: 3,
        term,
        body: Body::RequestVote {
            last_index,
            last_term,
            pre_vote: false,
            transfer: false,
        },
    });
    let rd = c.r(3).ready();
    c.r(3).advance(&rd);
    rd.messages
        .iter()
        .any(|m| m.to == 2 && matches!(m.body, Body::VoteResponse { granted: true, .. }))
}

/// Three nodes, node 1 leading, five entries proposed and replicated everywhere.
fn led_by_1_with_five_entries() -> Cluster {
    let mut c = Cluster::fresh(3);
    c.campaign(1);
    for i in 0..5u8 {
        c.r(1).propose(vec![i]).unwrap();
    }
    c.settle();
    c
}

#[test]
fn a_rebuilt_replica_votes_only_once_caught_up_and_never_again_in_that_term() {
    let mut c = led_by_1_with_five_entries();
    let term = c.r(1).term();
    // Node 3's storage was found damaged: it starts again empty, recovering.
    let mut rebuilt = node(3, &[1, 2, 3], &[], 0, 0, |_| {});
    rebuilt.start_recovering();
    c.nodes.insert(3, rebuilt);
    c.cut.insert(1);
    // Nobody to catch up from: it neither campaigns nor votes.
    for _ in 0..50 {
        c.r(3).tick();
    }
    c.process();
    assert_eq!(c.r(3).role(), Role::Follower);
    assert!(!vote_of_3(&mut c, term), "no vote while recovering");
    c.cut.clear();
    // The leader sees it lost what it acknowledged and sends it everything again.
    c.r(1).propose(b"after".to_vec()).unwrap();
    c.settle();
    c.tick_all(3);
    assert_eq!(c.r(3).last_index(), c.r(1).last_index());
    assert!(!c.r(3).is_recovering(), "caught up");
    // Its vote in the leader's term may have been given before: none there, only later.
    // Once the leader is gone (node 3 out of its lease).
    c.cut.insert(1);
    for _ in 0..30 {
        c.r(3).tick();
    }
    assert!(!vote_of_3(&mut c, term), "no second vote in the term it caught up in");
    assert!(vote_of_3(&mut c, term + 1));
}

#[test]
fn a_leader_releases_only_what_every_member_holds_and_a_member_that_lost_it_gets_a_snapshot() {
    let mut c = led_by_1_with_five_entries();
    let all = c.r(1).applied();
    c.r(1).release_applied();
    assert_eq!(c.r(1).released(), all, "every member holds them");
    c.r(2).release_applied();
    assert_eq!(c.r(2).released(), 0, "followers keep theirs (a new leader sends them)");
    // With node 3 cut off, only what node 3 holds may go.
    c.cut.insert(3);
    for i in 0..5u8 {
        c.r(1).propose(vec![i]).unwrap();
    }
    c.settle();
    c.r(1).release_applied();
    assert_eq!(c.r(1).released(), all);
    c.cut.clear();
    c.tick_all(3);
    assert_eq!(c.r(3).last_index(), c.r(1).last_index(), "caught up with entries");
    assert!(c.compacts.is_empty(), "no snapshot needed for that");
    c.r(1).release_applied();
    assert_eq!(c.r(1).released(), c.r(1).applied());
    // Node 3 loses its log: what it needs now is released, so it is sent no entries below
    // the release point but a snapshot, taken on demand.
    let term = c.r(1).term();
    c.nodes.insert(3, node(3, &[1, 2, 3], &[], term, 0, |_| {}));
    let released = c.r(1).released();
    c.log.clear();
    c.r(1).propose(b"next".to_vec()).unwrap();
    c.tick_all(4);
    assert!(c.compacts.contains(&1), "the leader asks for a snapshot");
    assert!(!c.log.iter().any(|m| m.to == 3
        && matches!(&m.body, Body::Append { prev_index, entries, .. } if *prev_index < released && !entries.is_empty())));
    let applied = c.r(1).applied();
    c.r(1).compact(applied, b"tree".to_vec()).unwrap();
    c.tick_all(4);
    assert_eq!(c.r(3).snapshot_meta().index, applied);
    assert_eq!(c.r(3).last_index(), c.r(1).last_index());
}

#[test]
fn a_late_rejection_does_not_throw_away_a_followers_match() {
    let mut c = led_by_1_with_five_entries();
    let held = c.r(1).progress()[&2].matched;
    assert_eq!(held, c.r(1).last_index());
    // Appends to node 2 go out (and are lost) ahead of its match.
    c.cut.insert(2);
    for i in 0..3u8 {
        c.r(1).propose(vec![i]).unwrap();
    }
    c.settle();
    let next = c.r(1).progress()[&2].next;
    assert!(next > held + 2, "sent ahead: next {next}, matched {held}");
    // A rejection of an earlier append (late, or replayed), with the short log node 2 had then.
    let term = c.r(1).term();
    c.r(1).step(Message {
        from: 2,
        to: 1,
        term,
        body: Body::AppendResponse {
            reject: true,
            index: held + 1,
            hint_index: 1,
            hint_term: 1,
        },
    });
    assert_eq!(
        c.r(1).progress()[&2].matched,
        held,
        "node 2 still holds what it acknowledged"
    );
    // Healed, it catches up with entries.
    c.cut.clear();
    c.tick_all(3);
    assert_eq!(c.r(2).last_index(), c.r(1).last_index());
    assert!(c.compacts.is_empty());
}

/// An entry's data is shared (`Bytes`), but its bytes on disk and on
/// the wire are those of the `Vec<u8>` (through serde_bytes) it was: logs written before
/// still load, and members of both kinds understand each other.
#[test]
fn entries_encode_as_they_did_with_vec_data() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Before {
        term: u64,
        index: u64,
        kind: EntryKind,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    }
    let cfg = bincode::config::standard();
    for data in [vec![], vec![7], vec![0xab; 1500]] {
        for kind in [EntryKind::Normal, EntryKind::ConfChange, EntryKind::Noop] {
            let before = Before {
                term: 3,
                index: 300,
                kind,
                data: data.clone(),
            };
            let now = Entry {
                term: 3,
                index: 300,
                kind,
                data: data.clone().into(),
            };
            let old = bincode::serde::encode_to_vec(&before, cfg).unwrap();
            assert_eq!(bincode::serde::encode_to_vec(&now, cfg).unwrap(), old);
            let (back, used): (Entry, usize) = bincode::serde::decode_from_slice(&old, cfg).unwrap();
            assert_eq!((back, used), (now, old.len()));
        }
    }
}

/// Byte fields of messages decode as byte strings (not element by element) and encode as they
/// did as plain `Vec<u8>` sequences, so members of both versions talk to each other.
#[test]
fn message_bytes_encode_as_they_did_as_sequences() {
    // The variants before, after and between the byte-carrying ones hold the indices in place.
    #[derive(serde::Serialize)]
    #[allow(dead_code)]
    enum Before {
        Append,
        AppendResponse,
        RequestVote,
        VoteResponse,
        Heartbeat {
            commit: u64,
            ctx: Vec<u8>,
        },
        HeartbeatResponse {
            ctx: Vec<u8>,
        },
        InstallSnapshot {
            meta: SnapshotMeta,
            offset: u64,
            data: Vec<u8>,
            done: bool,
        },
        SnapshotResponse,
        TimeoutNow,
        ReadIndex {
            ctx: Vec<u8>,
        },
        ReadIndexResponse {
            index: u64,
            ctx: Vec<u8>,
        },
    }
    let cfg = bincode::config::standard();
    let meta = SnapshotMeta {
        index: 9,
        term: 2,
        conf: ConfState::voters(BTreeSet::from([1, 2, 3])),
    };
    for b in [vec![], vec![7], vec![0xab; 1500]] {
        let pairs = [
            (
                Before::Heartbeat {
                    commit: 5,
                    ctx: b.clone(),
                },
                Body::Heartbeat {
                    commit: 5,
                    ctx: b.clone(),
                },
            ),
            (
                Before::HeartbeatResponse { ctx: b.clone() },
                Body::HeartbeatResponse { ctx: b.clone() },
            ),
            (
                Before::InstallSnapshot {
                    meta: meta.clone(),
                    offset: 4096,
                    data: b.clone(),
                    done: true,
                },
                Body::InstallSnapshot {
                    meta: meta.clone(),
                    offset: 4096,
                    data: b.clone(),
                    done: true,
                },
            ),
            (Before::ReadIndex { ctx: b.clone() }, Body::ReadIndex { ctx: b.clone() }),
            (
                Before::ReadIndexResponse {
                    index: 3,
                    ctx: b.clone(),
                },
                Body::ReadIndexResponse {
                    index: 3,
                    ctx: b.clone(),
                },
            ),
        ];
        for (before, now) in pairs {
            let old = bincode::serde::encode_to_vec(&before, cfg).unwrap();
            assert_eq!(bincode::serde::encode_to_vec(&now, cfg).unwrap(), old);
            let (back, used): (Body, usize) = bincode::serde::decode_from_slice(&old, cfg).unwrap();
            assert_eq!((back, used), (now, old.len()));
        }
    }
}
