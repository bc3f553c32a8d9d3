//! `zraft bench`: a load generator speaking jute through the project's client, for zraft and for
//! real ZooKeeper alike. Sessions pipeline requests up to a depth; throughput and latency
//! percentiles come from an HDR histogram of every request's round trip.

use crate::client::{Client, ClientError, DirectSession, PendingReply};
use crate::jute::*;
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What each request of a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Load {
    /// setData on a random key.
    Set,
    /// getData on a random key.
    Get,
    /// create of a new persistent node.
    Create,
    /// create of a persistent-sequential node under one parent.
    CreateSeq,
    /// getData or setData, `read_pct` percent reads.
    Mixed,
    /// multi of two setData on random keys.
    Multi,
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Comma-separated host:port list; sessions are spread over it.
    pub hosts: Vec<String>,
    pub sessions: usize,
    /// Requests each session keeps in flight.
    pub depth: usize,
    pub load: Load,
    pub read_pct: u32,
    pub value_size: usize,
    pub keys: usize,
    pub duration: Duration,
    /// Warm-up before measuring (requests run, not counted).
    pub warmup: Duration,
    /// Root of the keys this run uses.
    pub root: String,
    /// Stop after this many requests in all instead of after `duration` (no warm-up): the
    /// time they took is the measurement (e.g. loading a million znodes).
    pub count: Option<u64>,
    /// Drive each session through the full `Client` (writer, reader and pinger tasks, as an
    /// application uses it) instead of a `DirectSession` owned by the session's task.
    pub through_client: bool,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ops: u64,
    pub errors: u64,
    pub secs: f64,
    /// Latency percentiles in microseconds: p50, p99, p999, max.
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// The columns of `Outcome::csv_row`.
pub const CSV_HEADER: &str = "label,load,sessions,depth,value_size,ops_per_s,ops,errors,p50_ms,p99_ms,p999_ms,max_ms";

impl Outcome {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    /// p50, p99, p999 and max latency in milliseconds.
    pub fn latencies_ms(&self) -> [f64; 4] {
        [self.p50_us, self.p99_us, self.p999_us, self.max_us].map(|us| us as f64 / 1000.0)
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let [p50, p99, p999, max] = self.latencies_ms();
        format!(
            "{:.0} ops/s ({} ops in {:.1}s, {} errors) latency p50 {p50:.2} ms p99 {p99:.2} ms p999 {p999:.2} ms max {max:.2} ms",
            self.rate(),
            self.ops,
            self.secs,
            self.errors
        )
    }

    /// One CSV row (columns: `CSV_HEADER`) for the run `s`, labelled `label`.
    pub fn csv_row(&self, label: &str, s: &Settings) -> String {
        let [p50, p99, p999, max] = self.latencies_ms();
        format!(
            "{label},{:?},{},{},{},{:.0},{},{},{p50:.3},{p99:.3},{p999:.3},{max:.3}",
            s.load,
            s.sessions,
            s.depth,
            s.value_size,
            self.rate(),
            self.ops,
            self.errors
        )
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, ClientError),
    #[error("setting up {0}: {1}")]
    Setup(String, ClientError),
}

fn key(root: &str, i: usize) -> String {
    format!("{root}/k{i:06}")
}

/// Creates the root and the keys (ignoring NodeExists), with one pipelined session.
async fn prepare(s: &Settings) -> Result<(), BenchError> {
    let mut c = Client::connect(&s.hosts[0], 30_000, None, 0)
        .await
        .map_err(|e| BenchError::Connect(s.hosts[0].clone(), e))?;
    let value = vec![b'v'; s.value_size];
    let mut paths = vec![s.root.clone(), format!("{}/seq", s.root), format!("{}/new", s.root)];
    paths.extend((0..s.keys).map(|i| key(&s.root, i)));
    for chunk in paths.chunks(256) {
        let mut pend = vec![];
        for p in chunk {
            let req = Request::Create(CreateRequest {
                path: p.clone(),
                data: Some(value.clone()),
                acl: crate::tree::acl::open_acl(),
                flags: CreateMode::Persistent.code(),
            });
            pend.push(c.send(req).map_err(|e| BenchError::Setup(p.clone(), e))?);
        }
        for (p, r) in chunk.iter().zip(pend) {
            let (f, _) = r
                .wait(Duration::from_secs(60))
                .await
                .map_err(|e| BenchError::Setup(p.clone(), e))?;
            if f.header.err != 0 && f.header.err != ErrorCode::NodeExists.code() {
                return Err(BenchError::Setup(
                    p.clone(),
                    ClientError::Server(ErrorCode::try_from(f.header.err).unwrap_or(ErrorCode::SystemError)),
                ));
            }
        }
    }
    let _ = c.close().await;
    Ok(())
}

/// A small xorshift stream per session: the load is random but reproducible and cheap.
struct Rng(u64);

impl Rng {
    /// Each session's own stream (the same for a session index in every run).
    fn for_session(idx: usize) -> Rng {
        Rng(0x9e37_79b9_7f4a_7c15 ^ (idx as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn request(s: &Settings, rng: &mut Rng, session: usize, counter: &mut u64, value: &[u8]) -> Request {
    let k = key(&s.root, rng.below(s.keys));
    let set = |path: String| {
        Request::SetData(SetDataRequest {
            path,
            data: Some(value.to_vec()),
            version: -1,
        })
    };
    match s.load {
        Load::Set => set(k),
        Load::Get => Request::GetData(GetDataRequest { path: k, watch: false }),
        Load::Mixed if (rng.below(100) as u32) < s.read_pct => {
            Request::GetData(GetDataRequest { path: k, watch: false })
        }
        Load::Mixed => set(k),
        Load::Create | Load::CreateSeq => {
            *counter += 1;
            let (path, mode) = match s.load {
                Load::Create => (format!("{}/new/s{session}-{counter}", s.root), CreateMode::Persistent),
                _ => (format!("{}/seq/n-", s.root), CreateMode::PersistentSequential),
            };
            Request::Create(CreateRequest {
                path,
                data: Some(value.to_vec()),
                acl: crate::tree::acl::open_acl(),
                flags: mode.code(),
            })
        }
        Load::Multi => Request::Multi(MultiRequest {
            ops: (0..2)
                .map(|_| {
                    MultiOp::SetData(SetDataRequest {
                        path: key(&s.root, rng.below(s.keys)),
                        data: Some(value.to_vec()),
                        version: -1,
                    })
                })
                .collect(),
        }),
    }
}

/// What every session of a run shares.
struct Shared {
    s: Settings,
    start: Instant,
    /// Every session's latencies, added as each ends.
    hist: Mutex<Histogram<u64>>,
    /// Requests left to start in a counted run.
    tickets: AtomicU64,
}

/// One session's requests and measurements, whichever way it talks to the server.
struct Tally {
    idx: usize,
    rng: Rng,
    value: Vec<u8>,
    /// Creates so far (their names).
    counter: u64,
    /// Replies to requests sent after the warm-up and answered before the end.
    measure_from: Instant,
    end: Instant,
    ops: u64,
    errors: u64,
    local: Histogram<u64>,
}

impl Tally {
    fn new(s: &Settings, idx: usize, start: Instant) -> Tally {
        // A counted run has no deadline: it ends when the tickets run out.
        let (measure_from, end) = match s.count {
            Some(_) => (start, start + Duration::from_secs(365 * 86_400)),
            None => (start + s.warmup, start + s.warmup + s.duration),
        };
        Tally {
            idx,
            rng: Rng::for_session(idx),
            value: vec![b'x'; s.value_size],
            counter: 0,
            measure_from,
            end,
            ops: 0,
            errors: 0,
            local: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
        }
    }

    /// The next request, if another may start at `now` (a counted run takes a ticket).
    fn next(&mut self, s: &Settings, tickets: &AtomicU64, now: Instant) -> Option<Request> {
        let ticket = || {
            s.count.is_none()
                || tickets
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1))
                    .is_ok()
        };
        (now < self.end && ticket()).then(|| request(s, &mut self.rng, self.idx, &mut self.counter, &self.value))
    }

    /// Counts a reply that came back at `done` for a request sent at `sent`.
    fn record(&mut self, s: &Settings, sent: Instant, done: Instant, err: i32) {
        if sent < self.measure_from || done > self.end {
            return;
        }
        let _ = self.local.record((done - sent).as_micros().max(1) as u64);
        self.ops += 1;
        if err != 0 && s.load != Load::Create {
            self.errors += 1;
        }
    }

    /// Adds the latencies to the run's; the session's ops and errors (`failed`: one more).
    fn finish(self, hist: &Mutex<Histogram<u64>>, failed: bool) -> (u64, u64) {
        hist.lock()
            .expect("histogram lock")
            .add(&self.local)
            .expect("same bounds");
        (self.ops, self.errors + u64::from(failed))
    }
}

/// One session: keeps `depth` requests in flight until the deadline (its task writes them
/// and reads the replies, through a `DirectSession`); records latencies after the warm-up.
async fn session(run: Arc<Shared>, idx: usize) -> (u64, u64) {
    let (s, tickets) = (&run.s, &run.tickets);
    if s.through_client {
        return session_through_client(run, idx).await;
    }
    let Ok(mut c) = DirectSession::connect(&s.hosts[idx % s.hosts.len()], 30_000).await else {
        return (0, 1);
    };
    let mut t = Tally::new(s, idx, run.start);
    let mut sent_at: VecDeque<Instant> = VecDeque::new();
    let failed = loop {
        let now = Instant::now();
        while sent_at.len() < s.depth {
            let Some(q) = t.next(s, tickets, now) else { break };
            c.send(q);
            sent_at.push_back(now);
        }
        if c.flush().await.is_err() {
            break true;
        }
        let Some(sent) = sent_at.pop_front() else { break false };
        match c.recv(Duration::from_secs(60)).await {
            Ok(f) => t.record(s, sent, Instant::now(), f.header.err),
            Err(_) => break true,
        }
    };
    if !failed {
        debug_assert_eq!(c.outstanding(), 0, "every request answered");
        let _ = c.close(Duration::from_secs(5)).await;
    }
    t.finish(&run.hist, failed)
}

/// `session` through the full `Client`.
async fn session_through_client(run: Arc<Shared>, idx: usize) -> (u64, u64) {
    let (s, tickets) = (&run.s, &run.tickets);
    let Ok(mut c) = Client::connect(&s.hosts[idx % s.hosts.len()], 30_000, None, 0).await else {
        return (0, 1);
    };
    let mut t = Tally::new(s, idx, run.start);
    let mut inflight: VecDeque<(Instant, PendingReply)> = VecDeque::new();
    let failed = loop {
        let now = Instant::now();
        while inflight.len() < s.depth {
            let Some(q) = t.next(s, tickets, now) else { break };
            match c.send(q) {
                Ok(p) => inflight.push_back((Instant::now(), p)),
                Err(_) => return t.finish(&run.hist, true),
            }
        }
        let Some((sent, p)) = inflight.pop_front() else {
            break false;
        };
        match p.wait(Duration::from_secs(60)).await {
            Ok((f, _)) => t.record(s, sent, Instant::now(), f.header.err),
            Err(_) => break true,
        }
    };
    if !failed {
        let _ = c.close().await;
    }
    t.finish(&run.hist, failed)
}

/// Runs one load against `s.hosts` and measures it.
pub async fn run(s: Settings) -> Result<Outcome, BenchError> {
    prepare(&s).await?;
    let run = Arc::new(Shared {
        tickets: AtomicU64::new(s.count.unwrap_or(0)),
        s,
        start: Instant::now(),
        hist: Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")),
    });
    let tasks: Vec<_> = (0..run.s.sessions)
        .map(|i| tokio::spawn(session(run.clone(), i)))
        .collect();
    let (mut ops, mut errors) = (0, 0);
    for t in tasks {
        let (o, e) = t.await.unwrap_or((0, 1));
        ops += o;
        errors += e;
    }
    let h = run.hist.lock().expect("histogram lock");
    Ok(Outcome {
        ops,
        errors,
        secs: match run.s.count {
            Some(_) => run.start.elapsed().as_secs_f64(),
            None => run.s.duration.as_secs_f64(),
        },
        p50_us: h.value_at_quantile(0.50),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    })
}
