//! One client connection: handshake, four-letter words, framed requests in FIFO order,
//! pings, and a writer that sends replies and watch notifications in the order the node
//! produced them.

use super::config::Config;
use super::node::{Connecting, Event, Handshake, Out};
use crate::jute::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Requests of one connection that may wait for replies at once (ZooKeeper's
/// globalOutstandingLimit default): past it the connection is not read, so TCP pushes back
/// on a client that pipelines without bound instead of the server buffering its requests.
pub const MAX_OUTSTANDING: usize = 1000;

/// Bytes each connection buffers for reading and for writing.
const IO_BUFFER: usize = 16 * 1024;

/// The largest frame buffer a connection keeps between requests.
const KEEP_PAYLOAD_BUFFER: usize = 64 * 1024;

const FOUR_LETTER: [&str; 10] = [
    "ruok", "srvr", "stat", "mntr", "conf", "isro", "envi", "cons", "wchs", "dump",
];

/// What ended a wait for the next request.
enum Next {
    Read(Result<(), ConnEnd>),
    WriterDone,
}

/// Why a connection ended (for logs and tests).
#[derive(Debug, PartialEq, Eq)]
pub enum ConnEnd {
    Closed,
    FourLetter,
    BadFrame,
    Refused,
    Timeout,
}

/// Reads one frame's payload into `buf` (replacing what it held): a connection reuses one
/// buffer for all its frames, rather than a zeroed allocation per request (for 1 KiB values
/// past glibc's per-thread cache, one of the seven large allocations a setData made).
async fn read_payload_into<R: AsyncRead + Unpin>(
    r: &mut R,
    first4: Option<[u8; 4]>,
    max: u32,
    buf: &mut Vec<u8>,
) -> Result<(), ConnEnd> {
    let len = match first4 {
        Some(b) => b,
        None => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).await.map_err(|_| ConnEnd::Closed)?;
            b
        }
    };
    let n = i32::from_be_bytes(len);
    // The length is checked before anything is allocated (jute.maxbuffer).
    if n < 0 || n as u32 > max {
        return Err(ConnEnd::BadFrame);
    }
    buf.clear();
    buf.resize(n as usize, 0);
    r.read_exact(buf).await.map_err(|_| ConnEnd::Closed)?;
    Ok(())
}

/// Reads one frame's payload into a buffer of its own (the handshake).
async fn read_payload<R: AsyncRead + Unpin>(r: &mut R, first4: Option<[u8; 4]>, max: u32) -> Result<Vec<u8>, ConnEnd> {
    let mut buf = Vec::new();
    read_payload_into(r, first4, max, &mut buf).await?;
    Ok(buf)
}

/// Serves one client connection until it ends.
pub async fn serve<S>(
    stream: S,
    conn: u64,
    ip: String,
    cfg: Arc<Config>,
    node: mpsc::UnboundedSender<Event>,
    applied: Arc<AtomicI64>,
) -> ConnEnd
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    // Buffered both ways: a read takes whatever frames have arrived (one recv for a request
    // and its length, none wasted on an empty socket when the read came up short), and the
    // replies queued at once leave in one send (measured at depth 1: 3 recvs per request
    // unbuffered).
    let mut rd = tokio::io::BufReader::with_capacity(IO_BUFFER, rd);
    let mut wr = tokio::io::BufWriter::with_capacity(IO_BUFFER, wr);
    // A connection must complete its handshake within the longest session timeout.
    let handshake_deadline = Duration::from_millis(cfg.max_session_timeout_ms.max(1000) as u64);
    let mut first = [0u8; 4];
    match tokio::time::timeout(handshake_deadline, rd.read_exact(&mut first)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return ConnEnd::Closed,
        Err(_) => return ConnEnd::Timeout,
    }
    // Four-letter words come before any framing.
    if let Ok(word) = std::str::from_utf8(&first) {
        if FOUR_LETTER.contains(&word) {
            let answer = if cfg.allows_4lw(word) {
                let (tx, rx) = oneshot::channel();
                let _ = node.send(Event::FourLetter {
                    cmd: word.to_string(),
                    reply: tx,
                });
                rx.await.unwrap_or_default()
            } else {
                format!("{word} is not executed because it is not in the whitelist.\n")
            };
            let _ = wr.write_all(answer.as_bytes()).await;
            let _ = wr.flush().await;
            let _ = wr.shutdown().await;
            return ConnEnd::FourLetter;
        }
    }
    let payload =
        match tokio::time::timeout(handshake_deadline, read_payload(&mut rd, Some(first), cfg.max_buffer)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return e,
            Err(_) => return ConnEnd::Timeout,
        };
    let Ok(req) = ConnectRequest::from_bytes(&payload) else {
        return ConnEnd::BadFrame;
    };
    // A client that has seen a newer state than ours must not see older data here.
    if req.last_zxid_seen > applied.load(Ordering::Acquire) && !super::node::bug("stale-reconnect") {
        return ConnEnd::Refused;
    }
    let timeout =
        crate::session::negotiate_timeout(req.time_out, cfg.min_session_timeout_ms, cfg.max_session_timeout_ms);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Out>();
    let (htx, hrx) = oneshot::channel();
    let read_only = req.read_only;
    if node
        .send(Event::Connect(Connecting {
            conn,
            req,
            timeout,
            ip,
            out: out_tx.clone(),
            reply: htx,
        }))
        .is_err()
    {
        return ConnEnd::Closed;
    }
    let resp = match hrx.await {
        Ok(Handshake::Ok(r)) => r,
        Ok(Handshake::Refused) => {
            let _ = node.send(Event::Disconnect { conn });
            return ConnEnd::Refused;
        }
        _ => {
            // ZooKeeper's answer to an expired or unknown session, then close.
            let r = ConnectResponse {
                protocol_version: 0,
                time_out: 0,
                session_id: 0,
                passwd: vec![0; 16],
                read_only: read_only.map(|_| false),
            };
            let _ = wr.write_all(&encode_frame(&r.to_bytes())).await;
            let _ = wr.flush().await;
            let _ = node.send(Event::Disconnect { conn });
            return ConnEnd::Refused;
        }
    };
    let session_timeout = Duration::from_millis(resp.time_out.max(1) as u64);
    if wr.write_all(&encode_frame(&resp.to_bytes())).await.is_err() || wr.flush().await.is_err() {
        let _ = node.send(Event::Disconnect { conn });
        return ConnEnd::Closed;
    }
    // Writer: replies and notifications in the order the node queued them.
    let outstanding = Arc::new(Semaphore::new(MAX_OUTSTANDING));
    let answered = outstanding.clone();
    let mut writer = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            let (b, reply) = match o {
                Out::Reply(b) => (b, true),
                Out::Frame(b) => (b, false),
                Out::Close => break,
            };
            if wr.write_all(&b).await.is_err() {
                break;
            }
            if reply {
                answered.add_permits(1);
            }
            // Flush once the queue is drained (coalescing bursts).
            if out_rx.is_empty() && wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });
    let mut writer_done = false;
    let mut payload = Vec::new();
    // A client silent for a whole session timeout is gone (it pings every third). The
    // deadline moves only when it comes, to a session timeout after the wait for the current
    // frame began: one timer per session timeout, not one per request.
    let mut idle = crate::timer::Deadline::after(session_timeout);
    let end = loop {
        let waiting_since = tokio::time::Instant::now();
        let next = {
            let mut read = std::pin::pin!(read_payload_into(&mut rd, None, cfg.max_buffer, &mut payload));
            // The read is polled to the end here, never dropped halfway through a frame: the
            // deadline coming early is handled inside. The writer ending (the node closed the
            // connection) ends the reading too.
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = read.as_mut().poll(cx) {
                    return Poll::Ready(Next::Read(r));
                }
                if Pin::new(&mut writer).poll(cx).is_ready() {
                    return Poll::Ready(Next::WriterDone);
                }
                while idle.poll_expired(cx).is_ready() {
                    let due = waiting_since + session_timeout;
                    if tokio::time::Instant::now() >= due {
                        return Poll::Ready(Next::Read(Err(ConnEnd::Timeout)));
                    }
                    idle.reset(due);
                }
                Poll::Pending
            })
            .await
        };
        match next {
            Next::Read(Err(e)) => break e,
            Next::Read(Ok(())) => {}
            Next::WriterDone => {
                writer_done = true;
                break ConnEnd::Closed;
            }
        }
        let frame = match RequestFrame::from_bytes(&payload) {
            Ok(f) => f,
            Err(JuteError::UnknownOpCode(_)) => {
                // ZooKeeper answers an unknown type with Unimplemented, then closes.
                let xid = RequestHeader::from_bytes(&payload[..8.min(payload.len())])
                    .map(|h| h.xid)
                    .unwrap_or(0);
                let f = ReplyFrame {
                    header: ReplyHeader {
                        xid,
                        zxid: applied.load(Ordering::Acquire),
                        err: ErrorCode::Unimplemented.code(),
                    },
                    response: Response::Empty,
                };
                let _ = out_tx.send(Out::Frame(f.to_frame()));
                break ConnEnd::BadFrame;
            }
            Err(_) => break ConnEnd::BadFrame,
        };
        // A connection that once sent a large frame does not keep its buffer for good.
        if payload.capacity() > KEEP_PAYLOAD_BUFFER {
            payload = Vec::new();
        }
        if let Request::Ping = frame.request {
            let _ = node.send(Event::Ping { conn });
            let f = ReplyFrame {
                header: ReplyHeader {
                    xid: xid::PING,
                    zxid: applied.load(Ordering::Acquire),
                    err: 0,
                },
                response: Response::Empty,
            };
            let _ = out_tx.send(Out::Frame(f.to_frame()));
            continue;
        }
        // Backpressure: wait for a free outstanding slot before handing the request over.
        let permit = tokio::select! {
            p = outstanding.acquire() => p.expect("the semaphore is never closed"),
            _ = &mut writer => {
                writer_done = true;
                break ConnEnd::Closed;
            }
        };
        permit.forget();
        // One sender per connection: the node receives requests in the order read.
        if node
            .send(Event::Request {
                conn,
                xid: frame.xid,
                req: frame.request,
            })
            .is_err()
        {
            break ConnEnd::Closed;
        }
        // After closeSession the loop goes on: the node answers it, then closes the
        // connection, which ends the writer (the client sees its reply, then EOF).
    };
    let _ = node.send(Event::Disconnect { conn });
    drop(out_tx);
    if !writer_done {
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }
    end
}
