//! A session driven by the one task that owns its socket, for load generation.

use super::{accepted, connect_frame, read_frame, ClientError};
use crate::jute::*;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A session whose requests are written by the task that sends them and whose replies that
/// task reads back, in order: no writer, reader or pinger tasks, no lock, no watch events.
/// A load generator's own cost per request is paid by whichever server it measures (both
/// share the machine); through `Client` each request crossed three tasks, a lock and a
/// oneshot. No pings: a session kept busy never idles out.
pub struct DirectSession {
    stream: tokio::io::BufReader<TcpStream>,
    /// Requests encoded and not yet written (`flush` writes them in one go).
    out: Vec<u8>,
    /// Requests written or buffered, oldest first: replies must come back in this order.
    sent: VecDeque<(i32, OpCode)>,
    next_xid: i32,
    session_id: i64,
}

impl DirectSession {
    /// Connects and opens a new session.
    pub async fn connect(addr: &str, timeout_ms: i32) -> Result<Self, ClientError> {
        let timeout = Duration::from_millis(timeout_ms as u64);
        let stream = crate::timer::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|_| ClientError::ConnectionLoss)?;
        // Requests leave at once, not held back by Nagle's algorithm (as `Client`).
        let _ = stream.set_nodelay(true);
        let mut stream = tokio::io::BufReader::with_capacity(16 * 1024, stream);
        let hello = connect_frame(timeout_ms, None, 0);
        stream
            .write_all(&hello)
            .await
            .map_err(|_| ClientError::ConnectionLoss)?;
        stream.flush().await.map_err(|_| ClientError::ConnectionLoss)?;
        let b = crate::timer::timeout(timeout, read_frame(&mut stream))
            .await
            .map_err(|_| ClientError::Timeout)?
            .ok_or(ClientError::ConnectionLoss)?;
        let resp = accepted(&b)?;
        Ok(DirectSession {
            stream,
            out: Vec::with_capacity(4096),
            sent: VecDeque::new(),
            next_xid: 1,
            session_id: resp.session_id,
        })
    }

    /// The session id.
    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.sent.len()
    }

    /// Encodes a request behind those not yet written; `flush` sends them.
    pub fn send(&mut self, request: Request) {
        let xid = self.next_xid;
        self.next_xid += 1;
        self.sent.push_back((xid, request.op_code()));
        let body = RequestFrame { xid, request }.to_bytes();
        self.out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        self.out.extend_from_slice(&body);
    }

    /// Writes every request `send` buffered, in one write.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let sock = self.stream.get_mut();
        let r = async {
            sock.write_all(&self.out).await?;
            sock.flush().await
        }
        .await;
        self.out.clear();
        r.map_err(|_| ClientError::ConnectionLoss)
    }

    /// Reads the reply to the oldest request outstanding (notifications and ping replies
    /// skipped). A reply to any other request is a protocol error: ZooKeeper answers a
    /// session's requests in the order sent.
    pub async fn recv(&mut self, timeout: Duration) -> Result<ReplyFrame, ClientError> {
        loop {
            let b = crate::timer::timeout(timeout, read_frame(&mut self.stream))
                .await
                .map_err(|_| ClientError::Timeout)?
                .ok_or(ClientError::ConnectionLoss)?;
            let front = self.sent.front().copied();
            // The xid leads the reply header.
            let x = b
                .get(..4)
                .map(|h| i32::from_be_bytes(h.try_into().expect("four bytes")));
            match x {
                Some(xid::NOTIFICATION | xid::PING) => continue,
                Some(x) if Some(x) != front.map(|(xid, _)| xid) => {
                    return Err(ClientError::Protocol(format!(
                        "reply to xid {x} while {:?} was the oldest outstanding",
                        front.map(|(xid, _)| xid)
                    )))
                }
                _ => {}
            }
            let f = ReplyFrame::from_bytes(&b, |_| front.map(|(_, op)| op))
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            self.sent.pop_front();
            return Ok(f);
        }
    }

    /// Closes the session: waits for the replies outstanding, then for the close's.
    pub async fn close(mut self, timeout: Duration) -> Result<(), ClientError> {
        self.send(Request::CloseSession);
        self.flush().await?;
        while !self.sent.is_empty() {
            self.recv(timeout).await?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Reads one frame and drops it.
    async fn skip_frame(s: &mut tokio::net::TcpStream) {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut b).await.unwrap();
    }

    /// A server that opens a session, reads `requests` requests, then answers with `xids`
    /// (empty replies: what matters is the order).
    async fn fake_server(requests: usize, xids: Vec<i32>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            skip_frame(&mut s).await;
            let resp = ConnectResponse {
                protocol_version: 0,
                time_out: 10_000,
                session_id: 7,
                passwd: vec![0; 16],
                read_only: Some(false),
            };
            s.write_all(&encode_frame(&resp.to_bytes())).await.unwrap();
            for _ in 0..requests {
                skip_frame(&mut s).await;
            }
            for x in xids {
                let h = ReplyHeader {
                    xid: x,
                    zxid: 1,
                    err: 0,
                };
                s.write_all(&encode_frame(&h.to_bytes())).await.unwrap();
            }
            // Keep the connection open until the client is done with it.
            let mut rest = vec![];
            let _ = s.read_to_end(&mut rest).await;
        });
        addr
    }

    fn sync() -> Request {
        Request::Sync(SyncRequest { path: "/".into() })
    }

    #[tokio::test]
    async fn replies_in_request_order_are_taken() {
        let addr = fake_server(2, vec![xid::PING, 1, 2]).await;
        let mut c = DirectSession::connect(&addr, 5_000).await.unwrap();
        assert_eq!(c.session_id(), 7);
        c.send(sync());
        c.send(sync());
        c.flush().await.unwrap();
        let t = Duration::from_secs(5);
        assert_eq!(c.recv(t).await.unwrap().header.xid, 1, "the ping reply is skipped");
        assert_eq!(c.recv(t).await.unwrap().header.xid, 2);
        assert_eq!(c.outstanding(), 0);
    }

    #[tokio::test]
    async fn a_reply_out_of_request_order_is_refused() {
        let addr = fake_server(2, vec![2, 1]).await;
        let mut c = DirectSession::connect(&addr, 5_000).await.unwrap();
        c.send(sync());
        c.send(sync());
        c.flush().await.unwrap();
        match c.recv(Duration::from_secs(5)).await {
            Err(ClientError::Protocol(why)) => assert!(why.contains("xid 2"), "{why}"),
            other => panic!("an out-of-order reply was taken: {other:?}"),
        }
    }
}
