//! The model checker: ZooKeeper names the state each reply came from (its zxid), so a history
//! is checked in one pass instead of a search. The servers report which client request each
//! committed transaction carries (session, cxid); the checker replays them in zxid order
//! through the reference model (`crate::model`) and, at each zxid, the reads answered from
//! that state. Every write's reply must equal the model's at its zxid, every read's reply the
//! model's state at the reply's zxid; an operation whose reply was lost took effect exactly
//! if it is in the committed sequence. On top: no transaction nobody asked for or applied
//! twice; per session, reply zxids never go back and reads after a sync see every write
//! acknowledged before the sync was sent; a write acknowledged before another was sent has
//! the smaller zxid; every connection gets exactly the watch events the model fires for the
//! watches it holds, each before any reply with a zxid at or past the change.

use crate::history::{Wire, WireRec};
use crate::model::{is_write, Mode, Model, Watches};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use zraft::jute::*;
use zraft::server::observer::Committed;

/// A committed transaction as the servers reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub zxid: i64,
    pub session: i64,
    pub cxid: i32,
    pub kind: Committed,
}

/// What kind of guarantee a history broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Two servers applied different transactions under one zxid.
    CommitConflict,
    /// A committed client transaction no recorded client sent (or not a write).
    Unrequested,
    /// One request committed twice.
    AppliedTwice,
    /// A reply differs from the model's at its zxid.
    WrongReply,
    /// A successful write reply without a committed transaction.
    AckedNotCommitted,
    /// A reply stamped with a zxid no server applied.
    UnknownZxid,
    /// A session saw a reply with a smaller zxid than an earlier one.
    ZxidWentBack,
    /// A write sent after another was acknowledged got a smaller zxid.
    WriteOrder,
    /// A read after a successful sync missed a write acknowledged before the sync was sent.
    StaleAfterSync,
    /// A watch event the model does not fire for this connection at this point.
    UnexpectedEvent,
    /// A reply came before the watch event of a change at or before its zxid.
    MissingEvent,
    /// The leader reaped a node that was not an empty container or TTL node.
    BadReap,
}

/// A broken guarantee: what and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelViolation {
    pub kind: Kind,
    pub detail: String,
}

impl fmt::Display for ModelViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

/// What the checker looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Transactions replayed.
    pub txns: usize,
    /// Replies compared with the model.
    pub replies: usize,
    /// Watch events matched.
    pub events: usize,
    /// Requests without a reply found in the committed sequence (took effect).
    pub unknown_committed: usize,
    /// Requests without a reply not in it (did not).
    pub unknown_dropped: usize,
    /// Error replies to writes answered without a transaction (e.g. the session had gone).
    pub refused: usize,
    /// Reconfig transactions (left to the membership checker).
    pub reconfigs: usize,
}

fn violation<T>(kind: Kind, detail: String) -> Result<T, Box<ModelViolation>> {
    Err(Box::new(ModelViolation { kind, detail }))
}

/// A watcher: (client, connection).
type W = (u32, u64);

/// What a connection received, in order: Ok(index of the call answered), or Err(a watch
/// event's type and path).
type Seen<'a> = Result<usize, (i32, &'a str)>;

/// One request as a client sent it, with its reply if one came.
#[derive(Debug)]
struct Call<'a> {
    client: u32,
    conn: u64,
    session: i64,
    xid: i32,
    request: &'a Request,
    sent_at: u64,
    reply: Option<Reply<'a>>,
}

#[derive(Debug, Clone, Copy)]
struct Reply<'a> {
    err: i32,
    zxid: i64,
    response: &'a Response,
    at: u64,
}

/// Errors a server gives without consulting the tree (session gone or moved, overload): the
/// reply says nothing about the state.
fn stateless(err: i32) -> bool {
    [
        ErrorCode::SessionExpired,
        ErrorCode::SessionMoved,
        ErrorCode::ConnectionLoss,
        ErrorCode::NotReadOnly,
        ErrorCode::OperationTimeout,
        ErrorCode::RequestTimeout,
        ErrorCode::Throttled,
    ]
    .iter()
    .any(|e| e.code() == err)
}

/// A response with what the model cannot know (ctime, mtime) zeroed and unordered lists
/// (children, ephemerals) sorted.
fn normal(r: &Response) -> Response {
    fn st(s: &Stat) -> Stat {
        Stat {
            ctime: 0,
            mtime: 0,
            ..s.clone()
        }
    }
    fn sorted(v: &[String]) -> Vec<String> {
        let mut v = v.to_vec();
        v.sort();
        v
    }
    match r {
        Response::Create2(c) => Response::Create2(Create2Response {
            path: c.path.clone(),
            stat: st(&c.stat),
        }),
        Response::SetData(s) => Response::SetData(SetDataResponse { stat: st(&s.stat) }),
        Response::SetAcl(s) => Response::SetAcl(SetAclResponse { stat: st(&s.stat) }),
        Response::Exists(s) => Response::Exists(ExistsResponse { stat: st(&s.stat) }),
        Response::GetData(g) => Response::GetData(GetDataResponse {
            data: g.data.clone(),
            stat: st(&g.stat),
        }),
        Response::GetAcl(g) => Response::GetAcl(GetAclResponse {
            acl: g.acl.clone(),
            stat: st(&g.stat),
        }),
        Response::GetChildren(g) => Response::GetChildren(GetChildrenResponse {
            children: sorted(&g.children),
        }),
        Response::GetChildren2(g) => Response::GetChildren2(GetChildren2Response {
            children: sorted(&g.children),
            stat: st(&g.stat),
        }),
        Response::GetEphemerals(g) => Response::GetEphemerals(GetEphemeralsResponse {
            ephemerals: sorted(&g.ephemerals),
        }),
        Response::Multi(rs) => Response::Multi(
            rs.iter()
                .map(|o| match o {
                    OpResult::Create2(c, p, s) => OpResult::Create2(*c, p.clone(), st(s)),
                    OpResult::SetData(s) => OpResult::SetData(st(s)),
                    OpResult::GetChildren(c) => OpResult::GetChildren(sorted(c)),
                    OpResult::GetData(d, s) => OpResult::GetData(d.clone(), st(s)),
                    o => o.clone(),
                })
                .collect(),
        ),
        r => r.clone(),
    }
}

/// Compares a reply with the model's (error, response) at zxid `want_zxid` (None: any).
fn same(
    call: &Call<'_>,
    r: &Reply<'_>,
    want: (ErrorCode, &Response),
    want_zxid: Option<i64>,
) -> Result<(), Box<ModelViolation>> {
    let ok_zxid = want_zxid.is_none_or(|z| z == r.zxid);
    let ok_err = r.err == want.0.code();
    let ok_body = want.0 != ErrorCode::Ok || normal(r.response) == normal(want.1);
    if ok_zxid && ok_err && ok_body {
        return Ok(());
    }
    violation(
        Kind::WrongReply,
        format!(
            "client {} conn {} session {:#x} xid {}: {:?}\n  got  err {} zxid {:#x} {:?}\n  want err {} zxid {} {:?}",
            call.client,
            call.conn,
            call.session,
            call.xid,
            call.request,
            r.err,
            r.zxid,
            r.response,
            want.0.code(),
            want_zxid.map_or("(its state's)".to_string(), |z| format!("{z:#x}")),
            want.1
        ),
    )
}

/// Checks a run's wire records against the committed transactions.
pub fn check(wire: &[WireRec], commits: &[Commit]) -> Result<ModelStats, Box<ModelViolation>> {
    let mut stats = ModelStats::default();
    // 1. The committed sequence, one transaction per zxid across all servers (every server
    // reports what it applied: sorted, then each zxid's reports compared and kept once).
    let mut all: Vec<&Commit> = commits.iter().collect();
    all.sort_by_key(|c| c.zxid);
    let mut seq: Vec<&Commit> = Vec::with_capacity(all.len() / 2);
    for c in all {
        match seq.last() {
            Some(prev) if prev.zxid == c.zxid => {
                if *prev != c {
                    return violation(Kind::CommitConflict, format!("zxid {:#x}: {prev:?} and {c:?}", c.zxid));
                }
            }
            _ => seq.push(c),
        }
    }
    let applied = |z: i64| seq.binary_search_by_key(&z, |c| c.zxid).is_ok();
    // 2. Every call, by (session, xid), with its reply; and each connection's stream.
    let mut conn_session: BTreeMap<W, i64> = BTreeMap::new();
    let mut calls: Vec<Call<'_>> = vec![];
    // Only looked up (never iterated): hashed.
    let mut by_id: HashMap<(i64, i32), usize> = HashMap::new();
    let mut open: HashMap<(W, i32), usize> = HashMap::new();
    let mut streams: BTreeMap<W, Vec<Seen<'_>>> = BTreeMap::new();
    for r in wire {
        let w = (r.client, r.conn);
        match &r.wire {
            Wire::Connected { session, .. } => {
                conn_session.insert(w, *session);
            }
            Wire::Sent { xid, request } => {
                let session = conn_session.get(&w).copied().unwrap_or(0);
                let i = calls.len();
                calls.push(Call {
                    client: r.client,
                    conn: r.conn,
                    session,
                    xid: *xid,
                    request,
                    sent_at: r.at,
                    reply: None,
                });
                by_id.insert((session, *xid), i);
                open.insert((w, *xid), i);
            }
            Wire::Replied {
                xid,
                err,
                zxid,
                response,
            } => {
                if let Some(i) = open.remove(&(w, *xid)) {
                    calls[i].reply = Some(Reply {
                        err: *err,
                        zxid: *zxid,
                        response,
                        at: r.at,
                    });
                    streams.entry(w).or_default().push(Ok(i));
                }
            }
            Wire::Event { r#type, path } => streams.entry(w).or_default().push(Err((*r#type, path))),
        }
    }
    // 3. Which call each committed client transaction carries (by position in `seq`), and
    // where each call committed (by call).
    let mut carried: Vec<Option<usize>> = vec![None; seq.len()];
    let mut committed_at: Vec<Option<i64>> = vec![None; calls.len()];
    for (k, c) in seq.iter().enumerate().filter(|(_, c)| c.kind == Committed::Request) {
        let Some(&i) = by_id.get(&(c.session, c.cxid)).filter(|&&i| is_write(calls[i].request)) else {
            return violation(
                Kind::Unrequested,
                format!(
                    "zxid {:#x}: session {:#x} cxid {} sent no such write",
                    c.zxid, c.session, c.cxid
                ),
            );
        };
        if let Some(z) = committed_at[i].replace(c.zxid) {
            return violation(
                Kind::AppliedTwice,
                format!("{:?} committed at {z:#x} and {:#x}", calls[i].request, c.zxid),
            );
        }
        carried[k] = Some(i);
    }
    // 4. Reads (and watch management), ordered by the state they saw.
    let mut reads: Vec<(i64, usize)> = vec![];
    for (i, call) in calls.iter().enumerate() {
        let Some(r) = call.reply else {
            if is_write(call.request) {
                if committed_at[i].is_some() {
                    stats.unknown_committed += 1;
                } else {
                    stats.unknown_dropped += 1;
                }
            }
            continue;
        };
        if r.zxid != 0 && !applied(r.zxid) {
            return violation(
                Kind::UnknownZxid,
                format!("{:?} answered at {:#x}, which no server applied", call.request, r.zxid),
            );
        }
        if is_write(call.request) {
            if committed_at[i].is_none() {
                if r.err == 0 {
                    return violation(
                        Kind::AckedNotCommitted,
                        format!(
                            "client {} session {:#x} xid {}: {:?} acknowledged at {:#x}",
                            call.client, call.session, call.xid, call.request, r.zxid
                        ),
                    );
                }
                stats.refused += 1;
            }
            continue;
        }
        reads.push((r.zxid, i));
    }
    reads.sort();
    // How many events each connection recorded: its expected list needs no more than that
    // beyond its last reply (the connection is gone after).
    let mut recorded: BTreeMap<W, (usize, i64)> = BTreeMap::new();
    for (w, s) in &streams {
        let events = s.iter().filter(|x| x.is_err()).count();
        let last = s
            .iter()
            .filter_map(|x| x.as_ref().ok().and_then(|&i| calls[i].reply.map(|r| r.zxid)))
            .max()
            .unwrap_or(0);
        recorded.insert(*w, (events, last));
    }
    // 5. Replay.
    let mut model = Model::new();
    let mut watches: Watches<W> = Watches::default();
    let mut expected: BTreeMap<W, Vec<(i64, i32, String)>> = BTreeMap::new();
    let mut next_read = 0;
    for next in seq.iter().zip(&carried).map(Some).chain([None]) {
        let z = next.map_or(i64::MAX, |(c, _)| c.zxid);
        while next_read < reads.len() && reads[next_read].0 < z {
            let i = reads[next_read].1;
            next_read += 1;
            read(&calls[i], &mut model, &mut watches, &mut expected, &mut stats)?;
        }
        let Some((&c, &carries)) = next else { break };
        stats.txns += 1;
        let fired = match &c.kind {
            Committed::CreateSession => {
                model.create_session(c.session, z);
                vec![]
            }
            Committed::Expire => model.close_session(c.session, z),
            Committed::Reap(p) => match model.reap(p, z) {
                Ok(f) => f,
                Err(why) => return violation(Kind::BadReap, format!("zxid {z:#x} reaped {p}: {why}")),
            },
            Committed::ReapFailed | Committed::Reconfig => vec![],
            Committed::Request => {
                let i = carries.expect("a committed request carries a call");
                let call = &calls[i];
                if matches!(call.request, Request::Reconfig(_)) {
                    // The model holds no membership (/zookeeper/config): the membership
                    // checker judges reconfigs. It changes no node the model holds.
                    stats.reconfigs += 1;
                    continue;
                }
                let Some((err, resp, fired)) = model.write(call.session, call.request, z) else {
                    unreachable!("only writes are carried")
                };
                if let Some(r) = call.reply {
                    stats.replies += 1;
                    same(call, &r, (err, &resp), Some(z))?;
                }
                fired
            }
        };
        for t in &fired {
            for w in watches.fire(t) {
                let list = expected.entry(w).or_default();
                list.push((z, t.0.code(), t.1.clone()));
                // A connection needs no events past what it recorded after its last reply.
                let (events, last) = recorded.get(&w).copied().unwrap_or((0, 0));
                if z > last && list.len() > events {
                    watches.drop_watcher(w);
                }
            }
        }
    }
    // 6. Per session: zxids never go back; reads after a sync and writes after an
    // acknowledged write see it.
    let mut acked: Vec<(u64, i64)> = committed_at
        .iter()
        .enumerate()
        .filter_map(|(i, z)| Some((calls[i].reply?.at, (*z)?)))
        .collect();
    acked.sort();
    let mut best = i64::MIN;
    let prefix_max: Vec<(u64, i64)> = acked
        .iter()
        .map(|&(t, z)| {
            best = best.max(z);
            (t, best)
        })
        .collect();
    // The largest zxid of a write acknowledged strictly before `t`.
    let acked_before = |t: u64| -> i64 {
        let k = prefix_max.partition_point(|&(at, _)| at < t);
        if k == 0 {
            i64::MIN
        } else {
            prefix_max[k - 1].1
        }
    };
    for (i, z) in committed_at.iter().enumerate().filter_map(|(i, z)| Some((i, (*z)?))) {
        let floor = acked_before(calls[i].sent_at);
        if z <= floor {
            return violation(
                Kind::WriteOrder,
                format!(
                    "{:?} sent at {} ns got zxid {z:#x}; a write acknowledged before that had {floor:#x}",
                    calls[i].request, calls[i].sent_at
                ),
            );
        }
    }
    let mut by_session: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (w, s) in &streams {
        let session = conn_session.get(w).copied().unwrap_or(0);
        let list = by_session.entry(session).or_default();
        list.extend(s.iter().filter_map(|x| x.as_ref().ok().copied()));
    }
    for (session, list) in &mut by_session {
        list.sort_by_key(|&i| (calls[i].reply.map(|r| r.at), i));
        let (mut last, mut floor) = (0i64, i64::MIN);
        for &i in list.iter() {
            let r = calls[i].reply.expect("replied");
            if r.zxid < last && r.zxid != 0 {
                return violation(
                    Kind::ZxidWentBack,
                    format!(
                        "session {session:#x}: {:?} answered at {:#x} after a reply at {last:#x}",
                        calls[i].request, r.zxid
                    ),
                );
            }
            last = last.max(r.zxid);
            match calls[i].request {
                Request::Sync(_) if r.err == 0 => floor = floor.max(acked_before(calls[i].sent_at)),
                q if model_read(q) && r.err == 0 && r.zxid < floor => {
                    return violation(
                        Kind::StaleAfterSync,
                        format!(
                            "session {session:#x}: {q:?} answered at {:#x}, but a write acknowledged before its sync has {floor:#x}",
                            r.zxid
                        ),
                    );
                }
                _ => {}
            }
        }
    }
    // 7. Watch events per connection.
    for (w, s) in &streams {
        let mut exp = expected.remove(w).unwrap_or_default();
        let mut k = 0;
        // What the connection received last, for a counterexample.
        let recent = |upto: usize| -> String {
            s[upto.saturating_sub(12)..upto]
                .iter()
                .map(|x| match x {
                    Ok(i) => {
                        let r = calls[*i].reply.expect("replied");
                        let q = format!("{:?}", calls[*i].request);
                        format!(
                            "\n    reply err {} zxid {:#x} to {}",
                            r.err,
                            r.zxid,
                            &q[..q.len().min(160)]
                        )
                    }
                    Err((ty, path)) => format!("\n    event {ty} {path}"),
                })
                .collect()
        };
        for (pos, x) in s.iter().enumerate() {
            match x {
                Err((ty, path)) => {
                    let Some(&(z, _, _)) = exp.get(k) else {
                        return violation(
                            Kind::UnexpectedEvent,
                            format!(
                                "client {} conn {}: event {ty} {path}, none expected; before it:{}",
                                w.0,
                                w.1,
                                recent(pos)
                            ),
                        );
                    };
                    // Events of one transaction may come in any order.
                    let found = (k..exp.len())
                        .take_while(|&j| exp[j].0 == z)
                        .find(|&j| exp[j].1 == *ty && exp[j].2 == *path);
                    let Some(j) = found else {
                        return violation(
                            Kind::UnexpectedEvent,
                            format!(
                                "client {} conn {}: event {ty} {path}; expected next {:?}; before it:{}",
                                w.0,
                                w.1,
                                &exp[k..exp.len().min(k + 4)],
                                recent(pos)
                            ),
                        );
                    };
                    exp.swap(k, j);
                    k += 1;
                    stats.events += 1;
                }
                Ok(i) => {
                    let r = calls[*i].reply.expect("replied");
                    if let Some(e) = exp.get(k).filter(|e| e.0 <= r.zxid) {
                        return violation(
                            Kind::MissingEvent,
                            format!(
                                "client {} conn {}: reply to {:?} at {:#x} came before event {e:?}; before it:{}",
                                w.0,
                                w.1,
                                calls[*i].request,
                                r.zxid,
                                recent(pos)
                            ),
                        );
                    }
                }
            }
        }
    }
    Ok(stats)
}

/// Reads the model answers (and a sync floor applies to).
fn model_read(q: &Request) -> bool {
    matches!(
        q,
        Request::Exists(_)
            | Request::GetData(_)
            | Request::GetChildren(_)
            | Request::GetChildren2(_)
            | Request::GetAllChildrenNumber(_)
            | Request::GetEphemerals(_)
            | Request::GetAcl(_)
            | Request::MultiRead(_)
    )
}

/// One answered non-write at the state it saw: its reply against the model, and the watches
/// it registers or removes.
fn read(
    call: &Call<'_>,
    model: &mut Model,
    watches: &mut Watches<W>,
    expected: &mut BTreeMap<W, Vec<(i64, i32, String)>>,
    stats: &mut ModelStats,
) -> Result<(), Box<ModelViolation>> {
    let r = call.reply.expect("reads are answered");
    if stateless(r.err) {
        return Ok(());
    }
    let w = (call.client, call.conn);
    stats.replies += 1;
    if let Some(want) = model.read(call.session, call.request) {
        match &want {
            Ok(resp) => same(call, &r, (ErrorCode::Ok, resp), None)?,
            Err(e) => same(call, &r, (*e, &Response::Empty), None)?,
        }
        match call.request {
            Request::Exists(q) if q.watch && matches!(want, Ok(_) | Err(ErrorCode::NoNode)) => watches.data(&q.path, w),
            Request::GetData(q) if q.watch && want.is_ok() => watches.data(&q.path, w),
            Request::GetChildren(q) if q.watch && want.is_ok() => watches.child(&q.path, w),
            Request::GetChildren2(q) if q.watch && want.is_ok() => watches.child(&q.path, w),
            _ => {}
        }
        return Ok(());
    }
    let fire_now = |expected: &mut BTreeMap<W, Vec<(i64, i32, String)>>, ev: EventType, p: &str| {
        expected.entry(w).or_default().push((r.zxid, ev.code(), p.to_string()));
    };
    match call.request {
        Request::SetWatches(_) | Request::SetWatches2(_) if r.err == 0 => {
            let sw: SetWatches2 = match call.request {
                Request::SetWatches(s) => s.clone().into(),
                Request::SetWatches2(s) => s.clone(),
                _ => unreachable!("matched above"),
            };
            let rel = sw.relative_zxid;
            for p in &sw.data_watches {
                match model.node(p) {
                    None => fire_now(expected, EventType::NodeDeleted, p),
                    Some(n) if n.mzxid > rel => fire_now(expected, EventType::NodeDataChanged, p),
                    Some(_) => watches.data(p, w),
                }
            }
            for p in &sw.exist_watches {
                match model.node(p) {
                    Some(_) => fire_now(expected, EventType::NodeCreated, p),
                    None => watches.data(p, w),
                }
            }
            for p in &sw.child_watches {
                match model.node(p) {
                    None => fire_now(expected, EventType::NodeDeleted, p),
                    Some(n) if n.pzxid > rel => fire_now(expected, EventType::NodeChildrenChanged, p),
                    Some(_) => watches.child(p, w),
                }
            }
            for p in &sw.persistent_watches {
                watches.persistent(p, w, Mode::Persistent);
            }
            for p in &sw.persistent_recursive_watches {
                watches.persistent(p, w, Mode::Recursive);
            }
        }
        Request::AddWatch(a) => {
            let mode = match a.mode {
                0 => Some(Mode::Persistent),
                1 => Some(Mode::Recursive),
                _ => None,
            };
            let want = if mode.is_some() {
                ErrorCode::Ok
            } else {
                ErrorCode::BadArguments
            };
            if r.err != want.code() {
                return same(call, &r, (want, &Response::Empty), None);
            }
            if let Some(m) = mode {
                watches.persistent(&a.path, w, m);
            }
        }
        Request::RemoveWatches(q) => {
            let removed = watches.remove(&q.path, q.r#type, w);
            let want = if removed { ErrorCode::Ok } else { ErrorCode::NoWatcher };
            if r.err != want.code() {
                return same(call, &r, (want, &Response::Empty), None);
            }
        }
        Request::CheckWatches(q) => {
            // 3.8.0 answers ok when anyone on that server watches the path, including
            // connections the server has not yet seen die (the model cannot know those): an ok
            // is always possible; NoWatcher is wrong only if this connection holds one.
            let (own, _) = watches.holds(&q.path, q.r#type, w);
            if r.err != 0 && (own || r.err != ErrorCode::NoWatcher.code()) {
                let want = if own { ErrorCode::Ok } else { ErrorCode::NoWatcher };
                return same(call, &r, (want, &Response::Empty), None);
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_acl() -> Vec<Acl> {
        vec![Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }]
    }

    /// A little history builder: client 1 on connection 1 with session 0x10.
    struct H {
        wire: Vec<WireRec>,
        commits: Vec<Commit>,
        t: u64,
    }

    impl H {
        fn new() -> Self {
            let mut h = H {
                wire: vec![],
                commits: vec![],
                t: 0,
            };
            h.rec(
                1,
                1,
                Wire::Connected {
                    server: 1,
                    session: 0x10,
                },
            );
            h.rec(
                2,
                1,
                Wire::Connected {
                    server: 1,
                    session: 0x20,
                },
            );
            h.commit(1, 0x10, 0, Committed::CreateSession);
            h.commit(2, 0x20, 0, Committed::CreateSession);
            h
        }
        fn rec(&mut self, client: u32, conn: u64, wire: Wire) {
            self.t += 10;
            self.wire.push(WireRec {
                client,
                conn,
                at: self.t,
                wire,
            });
        }
        fn commit(&mut self, zxid: i64, session: i64, cxid: i32, kind: Committed) {
            self.commits.push(Commit {
                zxid,
                session,
                cxid,
                kind,
            });
        }
        fn send(&mut self, client: u32, xid: i32, request: Request) {
            self.rec(client, 1, Wire::Sent { xid, request });
        }
        fn reply(&mut self, client: u32, xid: i32, err: ErrorCode, zxid: i64, response: Response) {
            self.rec(
                client,
                1,
                Wire::Replied {
                    xid,
                    err: err.code(),
                    zxid,
                    response,
                },
            );
        }
        fn event(&mut self, client: u32, ty: EventType, path: &str) {
            self.rec(
                client,
                1,
                Wire::Event {
                    r#type: ty.code(),
                    path: path.into(),
                },
            );
        }
        fn check(&self) -> Result<ModelStats, Box<ModelViolation>> {
            check(&self.wire, &self.commits)
        }
    }

    fn create(path: &str) -> Request {
        Request::Create(CreateRequest {
            path: path.into(),
            data: Some(b"v".to_vec()),
            acl: open_acl(),
            flags: 0,
        })
    }

    fn set(path: &str, v: &str) -> Request {
        Request::SetData(SetDataRequest {
            path: path.into(),
            data: Some(v.as_bytes().to_vec()),
            version: -1,
        })
    }

    fn get(path: &str, watch: bool) -> Request {
        Request::GetData(GetDataRequest {
            path: path.into(),
            watch,
        })
    }

    fn stat(z: i64, version: i32, len: i32) -> Stat {
        Stat {
            czxid: 3,
            mzxid: z,
            version,
            data_length: len,
            pzxid: 3,
            ..Stat::default()
        }
    }

    /// Client 1 creates /a (zxid 3), leaves a data watch on it, client 2 sets it (zxid 4).
    fn base() -> H {
        let mut h = H::new();
        h.send(1, 1, create("/a"));
        h.commit(3, 0x10, 1, Committed::Request);
        h.reply(
            1,
            1,
            ErrorCode::Ok,
            3,
            Response::Create(CreateResponse { path: "/a".into() }),
        );
        h.send(1, 2, get("/a", true));
        h.reply(
            1,
            2,
            ErrorCode::Ok,
            3,
            Response::GetData(GetDataResponse {
                data: Some(b"v".to_vec()),
                stat: stat(3, 0, 1),
            }),
        );
        h.send(2, 1, set("/a", "w"));
        h.commit(4, 0x20, 1, Committed::Request);
        h.reply(
            2,
            1,
            ErrorCode::Ok,
            4,
            Response::SetData(SetDataResponse { stat: stat(4, 1, 1) }),
        );
        h
    }

    fn read_back(h: &mut H, zxid: i64, data: &str, version: i32, mzxid: i64) {
        h.send(1, 3, get("/a", false));
        h.reply(
            1,
            3,
            ErrorCode::Ok,
            zxid,
            Response::GetData(GetDataResponse {
                data: Some(data.as_bytes().to_vec()),
                stat: stat(mzxid, version, 1),
            }),
        );
    }

    #[test]
    fn accepts_a_correct_history() {
        let mut h = base();
        h.event(1, EventType::NodeDataChanged, "/a");
        read_back(&mut h, 4, "w", 1, 4);
        let s = h.check().expect("correct");
        assert_eq!((s.txns, s.replies, s.events), (4, 4, 1));
    }

    #[test]
    fn rejects_a_read_that_does_not_match_its_zxid() {
        let mut h = base();
        h.event(1, EventType::NodeDataChanged, "/a");
        read_back(&mut h, 4, "v", 0, 3);
        assert_eq!(h.check().unwrap_err().kind, Kind::WrongReply);
    }

    #[test]
    fn rejects_a_missing_and_a_duplicate_watch_event() {
        let mut h = base();
        read_back(&mut h, 4, "w", 1, 4);
        assert_eq!(h.check().unwrap_err().kind, Kind::MissingEvent);
        let mut h = base();
        h.event(1, EventType::NodeDataChanged, "/a");
        h.event(1, EventType::NodeDataChanged, "/a");
        assert_eq!(h.check().unwrap_err().kind, Kind::UnexpectedEvent);
    }

    #[test]
    fn rejects_a_wrong_stat_after_a_write() {
        let mut h = H::new();
        h.send(1, 1, create("/a"));
        h.commit(3, 0x10, 1, Committed::Request);
        h.reply(
            1,
            1,
            ErrorCode::Ok,
            3,
            Response::Create(CreateResponse { path: "/a".into() }),
        );
        h.send(
            1,
            2,
            Request::Delete(DeleteRequest {
                path: "/a".into(),
                version: -1,
            }),
        );
        h.commit(4, 0x10, 2, Committed::Request);
        h.reply(1, 2, ErrorCode::Ok, 4, Response::Empty);
        h.send(
            1,
            3,
            Request::Exists(ExistsRequest {
                path: "/".into(),
                watch: false,
            }),
        );
        let mut root = Model::new().node("/").unwrap().stat();
        // Root after one more create and a delete: two more in cversion, pzxid 4. Claim 3.
        root.cversion += 2;
        root.pzxid = 3;
        h.reply(
            1,
            3,
            ErrorCode::Ok,
            4,
            Response::Exists(ExistsResponse { stat: root.clone() }),
        );
        assert_eq!(h.check().unwrap_err().kind, Kind::WrongReply);
        h.wire.pop();
        root.pzxid = 4;
        h.reply(1, 3, ErrorCode::Ok, 4, Response::Exists(ExistsResponse { stat: root }));
        h.check().expect("right stat");
    }

    #[test]
    fn rejects_unrequested_twice_applied_and_unacknowledged_commits() {
        let mut h = base();
        h.commit(5, 0x10, 9, Committed::Request);
        assert_eq!(h.check().unwrap_err().kind, Kind::Unrequested);
        let mut h = base();
        h.commit(5, 0x20, 1, Committed::Request);
        assert_eq!(h.check().unwrap_err().kind, Kind::AppliedTwice);
        let mut h = base();
        h.send(2, 2, set("/a", "x"));
        h.reply(
            2,
            2,
            ErrorCode::Ok,
            4,
            Response::SetData(SetDataResponse { stat: stat(4, 1, 1) }),
        );
        assert_eq!(h.check().unwrap_err().kind, Kind::AckedNotCommitted);
    }

    #[test]
    fn resolves_unknown_outcomes_by_the_committed_sequence() {
        let mut h = base();
        h.event(1, EventType::NodeDataChanged, "/a");
        // Client 2's second write never got a reply, but it committed: reads must show it.
        h.send(2, 2, set("/a", "x"));
        h.commit(5, 0x20, 2, Committed::Request);
        h.send(1, 3, get("/a", false));
        let want = GetDataResponse {
            data: Some(b"x".to_vec()),
            stat: stat(5, 2, 1),
        };
        h.reply(1, 3, ErrorCode::Ok, 5, Response::GetData(want));
        let s = h.check().expect("the lost write happened");
        assert_eq!(s.unknown_committed, 1);
    }

    #[test]
    fn rejects_zxids_going_back_and_write_order() {
        let mut h = base();
        h.event(1, EventType::NodeDataChanged, "/a");
        read_back(&mut h, 4, "w", 1, 4);
        h.send(1, 4, get("/a", false));
        h.reply(
            1,
            4,
            ErrorCode::Ok,
            3,
            Response::GetData(GetDataResponse {
                data: Some(b"v".to_vec()),
                stat: stat(3, 0, 1),
            }),
        );
        assert_eq!(h.check().unwrap_err().kind, Kind::ZxidWentBack);
        // Client 1 sends a write after client 2's was acknowledged at zxid 10, and it
        // commits at zxid 5.
        let mut h = H::new();
        h.send(2, 1, create("/a"));
        h.commit(10, 0x20, 1, Committed::Request);
        h.reply(
            2,
            1,
            ErrorCode::Ok,
            10,
            Response::Create(CreateResponse { path: "/a".into() }),
        );
        h.send(1, 1, create("/b"));
        h.commit(5, 0x10, 1, Committed::Request);
        assert_eq!(h.check().unwrap_err().kind, Kind::WriteOrder);
    }

    #[test]
    fn rejects_a_reap_of_a_plain_node() {
        let mut h = base();
        h.event(1, EventType::NodeDataChanged, "/a");
        h.commit(5, 0, 0, Committed::Reap("/a".into()));
        assert_eq!(h.check().unwrap_err().kind, Kind::BadReap);
    }
}
