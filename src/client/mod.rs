//! A small async ZooKeeper client speaking jute over TCP: enough for the simulation harness
//! and tests (connect, any request, pings, watch notifications), not a kazoo replacement.

use crate::jute::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

mod direct;
pub use direct::DirectSession;

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    #[error("connection lost")]
    ConnectionLoss,
    #[error("session expired or refused")]
    SessionExpired,
    #[error("timed out")]
    Timeout,
    #[error("bad reply: {0}")]
    Protocol(String),
    #[error("server error {0:?}")]
    Server(ErrorCode),
}

/// Outstanding requests: each waits for its reply and the count of notifications before it;
/// `order` holds their xids in the order sent (replies must come back in that order).
#[derive(Default)]
struct Outstanding {
    by_xid: BTreeMap<i32, (OpCode, oneshot::Sender<(ReplyFrame, u64)>)>,
    order: std::collections::VecDeque<i32>,
}

type Pending = Arc<Mutex<Outstanding>>;

/// A request sent and not yet answered (see `Client::send`).
pub struct PendingReply {
    rx: oneshot::Receiver<(ReplyFrame, u64)>,
}

impl PendingReply {
    /// Waits for the reply and the count of notifications delivered before it.
    pub async fn wait(self, timeout: Duration) -> Result<(ReplyFrame, u64), ClientError> {
        // One timer for the whole wait (a pipelining client's task wakes for every reply).
        match crate::timer::timeout(timeout, self.rx).await {
            Err(_) => Err(ClientError::Timeout),
            Ok(Err(_)) => Err(ClientError::ConnectionLoss),
            Ok(Ok(r)) => Ok(r),
        }
    }
}

/// A connected session.
pub struct Client {
    session_id: i64,
    timeout_ms: i32,
    next_xid: i32,
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    /// Watch notifications (WatcherEvent) in arrival order.
    pub events: mpsc::UnboundedReceiver<WatcherEvent>,
    last_zxid: Arc<Mutex<i64>>,
    /// Replies that came back out of request order (each ended the connection, as the Java
    /// client's "Xid out of order" does).
    fifo_violations: Arc<std::sync::atomic::AtomicU64>,
    /// Reader, writer and pinger: stopped when the client is dropped, so a dropped client
    /// goes silent (its session then expires) instead of pinging forever.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.ok()?;
    let n = i32::from_be_bytes(len);
    if !(0..=DEFAULT_MAX_BUFFER as i32).contains(&n) {
        return None;
    }
    let mut b = vec![0u8; n as usize];
    r.read_exact(&mut b).await.ok()?;
    Some(b)
}

/// The framed ConnectRequest opening a session (or resuming `session`).
fn connect_frame(timeout_ms: i32, session: Option<(i64, Vec<u8>)>, last_zxid: i64) -> Vec<u8> {
    let (sid, passwd) = session.unwrap_or((0, vec![0; 16]));
    let req = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: last_zxid,
        time_out: timeout_ms,
        session_id: sid,
        passwd,
        read_only: Some(false),
    };
    encode_frame(&req.to_bytes())
}

/// The server's answer to a ConnectRequest: a session, or why not.
fn accepted(b: &[u8]) -> Result<ConnectResponse, ClientError> {
    let resp = ConnectResponse::from_bytes(b).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if resp.session_id == 0 || resp.time_out <= 0 {
        return Err(ClientError::SessionExpired);
    }
    Ok(resp)
}

impl Client {
    /// Connects and opens a new session (or resumes `session`).
    pub async fn connect(
        addr: &str,
        timeout_ms: i32,
        session: Option<(i64, Vec<u8>)>,
        last_zxid: i64,
    ) -> Result<Client, ClientError> {
        let stream = tokio::time::timeout(Duration::from_millis(timeout_ms as u64), TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|_| ClientError::ConnectionLoss)?;
        // As ZooKeeper's Java client and kazoo: a request leaves at once, not held back by
        // Nagle's algorithm behind an unacknowledged one (pipelined requests).
        let _ = stream.set_nodelay(true);
        let (rd, mut wr) = tokio::io::split(stream);
        // Reads buffered: one recv takes a reply and its length (and any replies behind it).
        let mut rd = tokio::io::BufReader::with_capacity(16 * 1024, rd);
        wr.write_all(&connect_frame(timeout_ms, session, last_zxid))
            .await
            .map_err(|_| ClientError::ConnectionLoss)?;
        wr.flush().await.map_err(|_| ClientError::ConnectionLoss)?;
        let b = tokio::time::timeout(Duration::from_millis(timeout_ms as u64), read_frame(&mut rd))
            .await
            .map_err(|_| ClientError::Timeout)?
            .ok_or(ClientError::ConnectionLoss)?;
        let resp = accepted(&b)?;
        let pending: Pending = Arc::default();
        let last = Arc::new(Mutex::new(last_zxid));
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            while let Some(b) = out_rx.recv().await {
                if wr.write_all(&b).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
        });
        let (p2, l2) = (pending.clone(), last.clone());
        let fifo_violations = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let violations = fifo_violations.clone();
        let reader = tokio::spawn(async move {
            let mut notified = 0u64;
            while let Some(b) = read_frame(&mut rd).await {
                let op_of = |x: i32| p2.lock().expect("pending lock").by_xid.get(&x).map(|(op, _)| *op);
                let Ok(f) = ReplyFrame::from_bytes(&b, op_of) else {
                    break;
                };
                // As the Java client and kazoo: a ping's reply does not count as seen (its zxid
                // would make a later setWatches skip changes whose events this client missed).
                if f.header.zxid > 0 && f.header.xid != xid::PING {
                    let mut l = l2.lock().expect("zxid lock");
                    *l = (*l).max(f.header.zxid);
                }
                match f.header.xid {
                    xid::NOTIFICATION => {
                        if let Response::Notification(e) = f.response {
                            notified += 1;
                            let _ = ev_tx.send(e);
                        }
                    }
                    xid::PING => {}
                    // An auth reply is not in the request order (ZooKeeper answers it at once).
                    xid::AUTH => {
                        if let Some((_, tx)) = p2.lock().expect("pending lock").by_xid.remove(&xid::AUTH) {
                            let _ = tx.send((f, notified));
                        }
                    }
                    x => {
                        let mut p = p2.lock().expect("pending lock");
                        // ZooKeeper answers a session's requests in the order sent.
                        if p.order.pop_front() != Some(x) {
                            violations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                        if let Some((_, tx)) = p.by_xid.remove(&x) {
                            let _ = tx.send((f, notified));
                        }
                    }
                }
            }
            // Connection gone: fail everything outstanding.
            let mut p = p2.lock().expect("pending lock");
            p.by_xid.clear();
            p.order.clear();
        });
        // Pings at a third of the session timeout keep the session alive.
        let ping_out = out_tx.clone();
        let every = Duration::from_millis((resp.time_out / 3).max(1) as u64);
        let pinger = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let f = RequestFrame {
                    xid: xid::PING,
                    request: Request::Ping,
                };
                if ping_out.send(encode_frame(&f.to_bytes())).is_err() {
                    return;
                }
            }
        });
        Ok(Client {
            session_id: resp.session_id,
            timeout_ms: resp.time_out,
            next_xid: 1,
            out: out_tx,
            pending,
            events: ev_rx,
            last_zxid: last,
            fifo_violations,
            tasks: vec![writer, reader, pinger],
        })
    }

    /// The session id.
    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    /// The negotiated session timeout.
    pub fn timeout_ms(&self) -> i32 {
        self.timeout_ms
    }

    /// The xid the next request gets.
    pub fn next_xid(&self) -> i32 {
        self.next_xid
    }

    /// Continues the xid sequence of an earlier connection of the same session, as the Java
    /// client does (its xids count per session handle, not per socket).
    pub fn continue_xids(&mut self, next: i32) {
        self.next_xid = next.max(1);
    }

    /// Highest zxid seen in any reply.
    pub fn last_zxid(&self) -> i64 {
        *self.last_zxid.lock().expect("zxid lock")
    }

    /// Sends a request and waits for its reply frame (any error code).
    pub async fn call(&mut self, request: Request, timeout: Duration) -> Result<ReplyFrame, ClientError> {
        self.call_counted(request, timeout).await.map(|(f, _)| f)
    }

    /// Like `call`, also returning how many notifications this connection delivered to
    /// `events` before the reply: exactly which watch events came first.
    pub async fn call_counted(
        &mut self,
        request: Request,
        timeout: Duration,
    ) -> Result<(ReplyFrame, u64), ClientError> {
        self.send(request)?.wait(timeout).await
    }

    /// Sends a request without waiting for its reply, so that many can be in flight at once
    /// (pipelining, as kazoo's async calls and Curator do).
    pub fn send(&mut self, request: Request) -> Result<PendingReply, ClientError> {
        let xid = self.next_xid;
        self.next_xid += 1;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().expect("pending lock");
            p.by_xid.insert(xid, (request.op_code(), tx));
            p.order.push_back(xid);
        }
        let f = RequestFrame { xid, request };
        self.out
            .send(encode_frame(&f.to_bytes()))
            .map_err(|_| ClientError::ConnectionLoss)?;
        Ok(PendingReply { rx })
    }

    /// Adds an identity to the connection (`addauth`); a refused one is `AuthFailed` and the
    /// server closes the connection.
    pub async fn auth(&mut self, scheme: &str, auth: &[u8], timeout: Duration) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock")
            .by_xid
            .insert(xid::AUTH, (OpCode::Auth, tx));
        let f = RequestFrame {
            xid: xid::AUTH,
            request: Request::Auth(AuthPacket {
                r#type: 0,
                scheme: scheme.into(),
                auth: auth.to_vec(),
            }),
        };
        self.out
            .send(encode_frame(&f.to_bytes()))
            .map_err(|_| ClientError::ConnectionLoss)?;
        let (r, _) = PendingReply { rx }.wait(timeout).await?;
        match ErrorCode::try_from(r.header.err) {
            Ok(ErrorCode::Ok) => Ok(()),
            Ok(e) => Err(ClientError::Server(e)),
            Err(_) => Err(ClientError::Protocol(format!("error code {}", r.header.err))),
        }
    }

    /// Replies that arrived out of request order on this client's connection.
    pub fn fifo_violations(&self) -> u64 {
        self.fifo_violations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Like `call`, but a non-zero error code is an `Err`.
    pub async fn ok(&mut self, request: Request, timeout: Duration) -> Result<Response, ClientError> {
        let r = self.call(request, timeout).await?;
        match ErrorCode::try_from(r.header.err) {
            Ok(ErrorCode::Ok) => Ok(r.response),
            Ok(e) => Err(ClientError::Server(e)),
            Err(_) => Err(ClientError::Protocol(format!("error code {}", r.header.err))),
        }
    }

    /// create with the open ACL.
    pub async fn create(&mut self, path: &str, data: &[u8], mode: CreateMode) -> Result<String, ClientError> {
        let req = CreateRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            acl: crate::tree::acl::open_acl(),
            flags: mode.code(),
        };
        match self.ok(Request::Create(req), Duration::from_secs(10)).await? {
            Response::Create(c) => Ok(c.path),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// getData.
    pub async fn get(&mut self, path: &str) -> Result<(Option<Vec<u8>>, Stat), ClientError> {
        match self
            .ok(
                Request::GetData(GetDataRequest {
                    path: path.into(),
                    watch: false,
                }),
                Duration::from_secs(10),
            )
            .await?
        {
            Response::GetData(g) => Ok((g.data, g.stat)),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// Closes the session (and then the connection).
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.call(Request::CloseSession, Duration::from_secs(5))
            .await
            .map(|_| ())
    }
}
