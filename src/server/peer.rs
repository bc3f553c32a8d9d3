//! The transport between ensemble members: length-framed messages over TCP, one
//! reconnecting outbound task per peer with a bounded queue (a full queue drops the message:
//! Raft tolerates loss, and a slow peer must not stall the leader).

use super::node::{Event, PeerMsg};
use crate::raft::NodeId;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The version of the messages between members, sent in every Hello. Builds before 1 sent
/// none (and had no `Commit`); 2 codes Raft messages by hand (`raft::wire`) instead of with
/// bincode. A member of another version cannot read this one's messages, so its connections
/// are refused with a warning that names both versions.
pub const PEER_PROTOCOL: u32 = 2;

/// Largest peer frame accepted (snapshot chunks and entry batches are far smaller).
const MAX_PEER_FRAME: usize = 64 << 20;
/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Bytes an inbound connection reads at once.
const IO_BUFFER: usize = 64 * 1024;
/// The largest frame buffer an inbound connection keeps between frames.
const KEEP_BUFFER: usize = 1 << 20;

/// An encoded message on its way to a peer. Under the simulator, message chaos keeps each one
/// for replay, so it is shared by reference there (a copy per Raft message before). A real
/// server keeps none: a plain vector spares it the allocation `Bytes::from(Vec)` would add.
#[cfg(madsim)]
type Frame = bytes::Bytes;
#[cfg(not(madsim))]
type Frame = Vec<u8>;

/// Encodes a peer message. Raft messages (nearly all the traffic) are the tag bincode gives
/// `PeerMsg::Raft`, then `raft::wire`'s hand-made coding; the rest are bincode, so that a Hello
/// reads the same in every protocol version and a mismatch can be named.
pub fn encode(m: &PeerMsg) -> Vec<u8> {
    match m {
        PeerMsg::Raft(msg) => {
            let mut b = Vec::with_capacity(1 + crate::raft::wire::encoded_len_hint(msg));
            b.push(RAFT_TAG);
            crate::raft::wire::encode(msg, &mut b);
            b
        }
        other => bincode::serde::encode_to_vec(other, bincode::config::standard()).expect("peer messages encode"),
    }
}

/// The first byte of a Raft message: bincode's variant index of `PeerMsg::Raft`, which no
/// other message starts with.
const RAFT_TAG: u8 = 1;

/// Encodes a peer message for its queue.
#[allow(clippy::useless_conversion)] // a Vec already, outside the simulator
fn frame(m: &PeerMsg) -> Frame {
    encode(m).into()
}

fn decode(b: &[u8]) -> Option<PeerMsg> {
    match b.first() {
        Some(&RAFT_TAG) => crate::raft::wire::decode(&b[1..]).ok().map(PeerMsg::Raft),
        _ => bincode::serde::decode_from_slice(b, bincode::config::standard())
            .ok()
            .map(|(m, _)| m),
    }
}

/// Outbound queues to every peer.
#[derive(Clone, Default)]
pub struct Peers {
    me: NodeId,
    /// Where this node listens for peers (sent in every Hello).
    my_addr: String,
    /// Addresses peers announced in their Hellos: a node behind in the log can answer a
    /// member it does not know of yet (its vote counts for that member's election).
    announced: std::sync::Arc<std::sync::Mutex<BTreeMap<NodeId, String>>>,
    /// Each peer's address and the queue of its outbound task.
    queues: BTreeMap<NodeId, (String, mpsc::Sender<Frame>)>,
    /// Recent messages per peer, for message chaos to replay (simulation builds only).
    #[cfg(madsim)]
    sent: std::sync::Arc<std::sync::Mutex<BTreeMap<NodeId, std::collections::VecDeque<Frame>>>>,
}

/// Messages per peer message chaos may replay.
#[cfg(madsim)]
const REPLAYABLE: usize = 64;

impl Peers {
    /// Starts an outbound task per peer (all but `me`).
    pub fn start(me: NodeId, addrs: &BTreeMap<NodeId, String>) -> Self {
        let mut p = Peers {
            me,
            my_addr: addrs.get(&me).cloned().unwrap_or_default(),
            announced: Default::default(),
            queues: BTreeMap::new(),
            #[cfg(madsim)]
            sent: Default::default(),
        };
        p.update(addrs);
        p
    }

    /// Follows a membership change: tasks start for new peers and for moved ones, and stop
    /// for peers no longer listed (their queues close).
    pub fn update(&mut self, addrs: &BTreeMap<NodeId, String>) {
        let me = self.me;
        // Broken on purpose under raft-removed-counted (with its Raft half): removed members
        // stay connected, so the leader keeps replicating to them and counting them.
        let keep_removed = crate::bug("raft-removed-counted");
        self.queues
            .retain(|id, (addr, _)| addrs.get(id).map_or(keep_removed, |a| a == addr));
        for (&id, addr) in addrs {
            if id == me || self.queues.contains_key(&id) {
                continue;
            }
            self.connect(id, addr.clone());
        }
    }

    fn connect(&mut self, id: NodeId, addr: String) {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.queues.insert(id, (addr.clone(), tx));
        tokio::spawn(outbound(self.me, self.my_addr.clone(), addr, rx));
    }

    /// The table inbound connections record announced addresses in.
    pub fn announced(&self) -> std::sync::Arc<std::sync::Mutex<BTreeMap<NodeId, String>>> {
        self.announced.clone()
    }

    /// The peers messages can be sent to.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.queues.keys().copied()
    }

    /// Queues a message; false if the peer is unknown or its queue is full (dropped). A peer
    /// the membership does not list yet is reached at the address it announced.
    pub fn send(&mut self, to: NodeId, m: &PeerMsg) -> bool {
        if !self.queues.contains_key(&to) {
            let announced = self.announced.lock().expect("announced").get(&to).cloned();
            match announced {
                Some(addr) if to != self.me => self.connect(to, addr),
                _ => return false,
            }
        }
        let Some((_, q)) = self.queues.get(&to) else {
            return false;
        };
        // Only Raft messages: the protocol must survive any fate of them. A forwarded write or
        // a session touch travels over TCP, which never loses, doubles or replays one alone.
        #[cfg(madsim)]
        if matches!(m, PeerMsg::Raft(_)) {
            return self.send_with_chaos(to, q, frame(m));
        }
        q.try_send(frame(m)).is_ok()
    }

    /// `send` under message chaos: the message may be lost, doubled or held back, and an old
    /// one to the same peer may go again (a receiver cannot tell it from a stale connection's).
    #[cfg(madsim)]
    fn send_with_chaos(&self, to: NodeId, q: &mpsc::Sender<Frame>, b: Frame) -> bool {
        use super::chaos::{decide, pick, Fate};
        let (fate, replay) = decide();
        if replay {
            let old = {
                let sent = self.sent.lock().expect("chaos history");
                sent.get(&to)
                    .filter(|h| !h.is_empty())
                    .map(|h| h[pick(h.len())].clone())
            };
            if let Some(old) = old {
                let _ = q.try_send(old);
            }
        }
        {
            let mut sent = self.sent.lock().expect("chaos history");
            let h = sent.entry(to).or_default();
            h.push_back(b.clone());
            if h.len() > REPLAYABLE {
                h.pop_front();
            }
        }
        match fate {
            Fate::Deliver => q.try_send(b).is_ok(),
            Fate::Drop => true,
            Fate::Duplicate => {
                let _ = q.try_send(b.clone());
                q.try_send(b).is_ok()
            }
            Fate::Delay(d) => {
                let q = q.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = q.try_send(b);
                });
                true
            }
        }
    }
}

async fn outbound(me: NodeId, my_addr: String, addr: String, mut rx: mpsc::Receiver<Frame>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut stream = match TcpStream::connect(&addr).await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // Messages queued while the peer is down are stale; drop them. A closed queue
                // means the peer left the ensemble.
                loop {
                    match rx.try_recv() {
                        Ok(_) => {}
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                    }
                }
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let _ = stream.set_nodelay(true);
        let hello = encode(&PeerMsg::Hello {
            from: me,
            addr: my_addr.clone(),
            protocol: PEER_PROTOCOL,
        });
        if write_frame(&mut stream, &hello).await.is_err() {
            continue;
        }
        loop {
            let Some(first) = rx.recv().await else { return };
            let mut buf = Vec::with_capacity(first.len() + 4);
            buf.extend_from_slice(&(first.len() as u32).to_be_bytes());
            buf.extend_from_slice(&first);
            // Coalesce whatever else is queued into one write.
            while let Ok(m) = rx.try_recv() {
                buf.extend_from_slice(&(m.len() as u32).to_be_bytes());
                buf.extend_from_slice(&m);
                if buf.len() > 1 << 20 {
                    break;
                }
            }
            if stream.write_all(&buf).await.is_err() || stream.flush().await.is_err() {
                break;
            }
        }
    }
}

async fn write_frame(s: &mut TcpStream, b: &[u8]) -> std::io::Result<()> {
    s.write_all(&(b.len() as u32).to_be_bytes()).await?;
    s.write_all(b).await?;
    s.flush().await
}

/// Addresses announced by peers, by id.
pub type Announced = std::sync::Arc<std::sync::Mutex<BTreeMap<NodeId, String>>>;

/// Accepts peer connections and feeds their messages to the node; records the addresses
/// peers announce.
pub async fn listen(listener: TcpListener, events: mpsc::UnboundedSender<Event>, announced: Announced) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (events, announced) = (events.clone(), announced.clone());
        tokio::spawn(async move {
            let _ = inbound(stream, events, announced).await;
        });
    }
}

async fn inbound(s: TcpStream, events: mpsc::UnboundedSender<Event>, announced: Announced) -> std::io::Result<()> {
    let remote = s.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    // Buffered: one recv takes every frame that has arrived, where reading each frame's length
    // and body straight from the socket cost two recvs a message plus one that found it empty.
    let mut s = tokio::io::BufReader::with_capacity(IO_BUFFER, s);
    let mut buf = Vec::new();
    let mut from = None;
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await?;
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_PEER_FRAME {
            return Ok(());
        }
        // One buffer for every frame; a snapshot chunk's worth is not kept for the small ones.
        if buf.capacity() > KEEP_BUFFER && n <= KEEP_BUFFER {
            buf = Vec::new();
        }
        buf.clear();
        buf.resize(n, 0);
        s.read_exact(&mut buf).await?;
        let Some(m) = decode(&buf) else {
            if from.is_none() {
                // What a build from before PEER_PROTOCOL sends first (its Hello has no version).
                tracing::warn!("peer connection from {remote}: its first message is not a Hello this build can read (a build of another peer protocol?); closed");
            }
            return Ok(());
        };
        match (&m, from) {
            (
                PeerMsg::Hello {
                    from: f,
                    addr,
                    protocol,
                },
                _,
            ) => {
                if *protocol != PEER_PROTOCOL {
                    tracing::warn!(
                        "peer {f} at {addr} ({remote}) speaks peer protocol {protocol}, this node {PEER_PROTOCOL}: connection refused (every member must run a build of the same protocol)"
                    );
                    return Ok(());
                }
                from = Some(*f);
                if !addr.is_empty() {
                    announced.lock().expect("announced").insert(*f, addr.clone());
                }
            }
            (_, Some(_)) => {
                if events.send(Event::Peer(m)).is_err() {
                    return Ok(());
                }
            }
            (_, None) => return Ok(()),
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use std::time::Duration;

    fn framed(m: &PeerMsg) -> Vec<u8> {
        let b = encode(m);
        let mut f = (b.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&b);
        f
    }

    fn hello(protocol: u32) -> PeerMsg {
        PeerMsg::Hello {
            from: 2,
            addr: "10.0.0.2:2888".into(),
            protocol,
        }
    }

    /// Raft messages take the hand-made coding behind bincode's own tag for them; the others
    /// stay bincode (a Hello reads the same in every version); all come back as they went.
    #[test]
    fn peer_messages_round_trip_and_keep_their_tags() {
        let raft = PeerMsg::Raft(crate::raft::Message {
            from: 1,
            to: 2,
            term: 3,
            body: crate::raft::Body::Commit {
                prev_index: 9,
                prev_term: 3,
                commit: 9,
            },
        });
        let bincoded = bincode::serde::encode_to_vec(&raft, bincode::config::standard()).expect("encode");
        assert_eq!(bincoded[0], RAFT_TAG, "bincode's tag for PeerMsg::Raft");
        let touch = PeerMsg::Touch { sessions: vec![7, 8] };
        for m in [hello(PEER_PROTOCOL), hello(1), raft, touch] {
            let b = encode(&m);
            assert_eq!(
                b[0] == RAFT_TAG,
                matches!(m, PeerMsg::Raft(_)),
                "only a Raft message starts with its tag: {m:?}"
            );
            let back = decode(&b).expect("decodes");
            assert_eq!(format!("{back:?}"), format!("{m:?}"));
        }
        // Raft bytes cut short are no message (the connection is then closed).
        let b = encode(&hello(PEER_PROTOCOL));
        assert!(decode(&b[..b.len() - 1]).is_none());
        assert!(decode(&[RAFT_TAG, 1, 2, 3]).is_none());
    }

    /// A member of another peer protocol is refused: nothing it sends reaches the node, its
    /// address is not recorded, its connection is closed. One of the same protocol is heard.
    #[test]
    fn a_peer_of_another_protocol_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let (tx, mut rx) = mpsc::unbounded_channel();
            let announced = Announced::default();
            tokio::spawn(listen(listener, tx, announced.clone()));
            let touch = PeerMsg::Touch { sessions: vec![7] };

            let mut other = TcpStream::connect(addr).await.expect("connect");
            other
                .write_all(&framed(&hello(PEER_PROTOCOL + 1)))
                .await
                .expect("write");
            other.write_all(&framed(&touch)).await.expect("write");
            other.flush().await.expect("flush");
            let mut b = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(5), other.read(&mut b))
                .await
                .expect("the refused connection is closed, not left open");
            assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
            assert!(rx.try_recv().is_err(), "nothing from a peer of another protocol");
            assert!(announced.lock().expect("announced").is_empty());

            let mut same = TcpStream::connect(addr).await.expect("connect");
            same.write_all(&framed(&hello(PEER_PROTOCOL))).await.expect("write");
            same.write_all(&framed(&touch)).await.expect("write");
            same.flush().await.expect("flush");
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a message from a peer of the same protocol");
            assert!(matches!(got, Some(Event::Peer(PeerMsg::Touch { sessions })) if sessions == vec![7]));
            assert_eq!(
                announced.lock().expect("announced").get(&2).map(String::as_str),
                Some("10.0.0.2:2888")
            );
        });
    }
}
