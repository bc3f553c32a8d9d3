//! Raft messages in bytes, coded by hand: integers as LEB128 varints, a byte per tag and per
//! flag, byte strings length-first. Peer traffic is almost all appends, their answers and
//! commits; bincode's serde path cost 600–750 instructions a message to encode or decode
//! (ten times the bytes moved), a twentieth of a five-node simulation's time and of a
//! follower's CPU. Decoding checks every length against what is left and every tag and flag,
//! so that a malformed frame is an error, never a panic or a huge allocation.

use super::message::{Body, ConfState, Entry, EntryKind, Message, SnapshotMeta};
use std::collections::BTreeSet;

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message truncated")]
    Truncated,
    #[error("varint longer than 64 bits")]
    Overlong,
    #[error("unknown {what} tag {tag}")]
    Tag { what: &'static str, tag: u8 },
    #[error("{0} bytes after the message")]
    Trailing(usize),
}

/// Bytes a varint takes at most.
pub const MAX_VARINT: usize = 10;

/// Appends `m` to `out`.
pub fn encode(m: &Message, out: &mut Vec<u8>) {
    out.reserve(encoded_len_hint(m));
    put(out, m.from);
    put(out, m.to);
    put(out, m.term);
    match &m.body {
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            out.push(0);
            put(out, *prev_index);
            put(out, *prev_term);
            put(out, *commit);
            put(out, entries.len() as u64);
            for e in entries {
                put(out, e.term);
                put(out, e.index);
                out.push(match e.kind {
                    EntryKind::Normal => 0,
                    EntryKind::ConfChange => 1,
                    EntryKind::Noop => 2,
                });
                put_bytes(out, &e.data);
            }
        }
        Body::AppendResponse {
            reject,
            index,
            hint_index,
            hint_term,
        } => {
            out.push(1);
            out.push(*reject as u8);
            put(out, *index);
            put(out, *hint_index);
            put(out, *hint_term);
        }
        Body::RequestVote {
            last_index,
            last_term,
            pre_vote,
            transfer,
        } => {
            out.push(2);
            put(out, *last_index);
            put(out, *last_term);
            out.push(*pre_vote as u8);
            out.push(*transfer as u8);
        }
        Body::VoteResponse { granted, pre_vote } => {
            out.push(3);
            out.push(*granted as u8);
            out.push(*pre_vote as u8);
        }
        Body::Heartbeat { commit, ctx } => {
            out.push(4);
            put(out, *commit);
            put_bytes(out, ctx);
        }
        Body::HeartbeatResponse { ctx } => {
            out.push(5);
            put_bytes(out, ctx);
        }
        Body::InstallSnapshot {
            meta,
            offset,
            data,
            done,
        } => {
            out.push(6);
            put(out, meta.index);
            put(out, meta.term);
            for set in [&meta.conf.voters, &meta.conf.learners] {
                put(out, set.len() as u64);
                for &id in set {
                    put(out, id);
                }
            }
            put(out, *offset);
            put_bytes(out, data);
            out.push(*done as u8);
        }
        Body::SnapshotResponse {
            index,
            offset,
            installed,
            reject,
        } => {
            out.push(7);
            put(out, *index);
            put(out, *offset);
            out.push(*installed as u8);
            out.push(*reject as u8);
        }
        Body::TimeoutNow => out.push(8),
        Body::ReadIndex { ctx } => {
            out.push(9);
            put_bytes(out, ctx);
        }
        Body::ReadIndexResponse { index, ctx } => {
            out.push(10);
            put(out, *index);
            put_bytes(out, ctx);
        }
        Body::Commit {
            prev_index,
            prev_term,
            commit,
        } => {
            out.push(11);
            put(out, *prev_index);
            put(out, *prev_term);
            put(out, *commit);
        }
    }
}

/// Bytes `encode` writes at most, give or take the membership of a snapshot chunk.
pub fn encoded_len_hint(m: &Message) -> usize {
    let carried = match &m.body {
        Body::Append { entries, .. } => entries.iter().map(|e| 3 * MAX_VARINT + 1 + e.data.len()).sum(),
        Body::InstallSnapshot { data, meta, .. } => {
            data.len() + MAX_VARINT * (meta.conf.voters.len() + meta.conf.learners.len())
        }
        Body::Heartbeat { ctx, .. }
        | Body::HeartbeatResponse { ctx }
        | Body::ReadIndex { ctx }
        | Body::ReadIndexResponse { ctx, .. } => ctx.len(),
        _ => 0,
    };
    // The header and the most fixed fields any body has (a snapshot chunk's nine, two flags).
    12 * MAX_VARINT + carried
}

/// The message `b` holds, all of it.
pub fn decode(b: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader { b };
    let from = r.uint()?;
    let to = r.uint()?;
    let term = r.uint()?;
    let body = match r.byte()? {
        0 => {
            let prev_index = r.uint()?;
            let prev_term = r.uint()?;
            let commit = r.uint()?;
            let n = r.uint()?;
            // Every entry takes at least four bytes: a count beyond that is a lie, not a
            // reason to allocate.
            let mut entries = Vec::with_capacity((n as usize).min(r.b.len() / 4));
            for _ in 0..n {
                let term = r.uint()?;
                let index = r.uint()?;
                let kind = match r.byte()? {
                    0 => EntryKind::Normal,
                    1 => EntryKind::ConfChange,
                    2 => EntryKind::Noop,
                    tag => {
                        return Err(WireError::Tag {
                            what: "entry kind",
                            tag,
                        })
                    }
                };
                let data = bytes::Bytes::copy_from_slice(r.bytes()?);
                entries.push(Entry {
                    term,
                    index,
                    kind,
                    data,
                });
            }
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            }
        }
        1 => Body::AppendResponse {
            reject: r.flag()?,
            index: r.uint()?,
            hint_index: r.uint()?,
            hint_term: r.uint()?,
        },
        2 => Body::RequestVote {
            last_index: r.uint()?,
            last_term: r.uint()?,
            pre_vote: r.flag()?,
            transfer: r.flag()?,
        },
        3 => Body::VoteResponse {
            granted: r.flag()?,
            pre_vote: r.flag()?,
        },
        4 => Body::Heartbeat {
            commit: r.uint()?,
            ctx: r.bytes()?.to_vec(),
        },
        5 => Body::HeartbeatResponse {
            ctx: r.bytes()?.to_vec(),
        },
        6 => {
            let index = r.uint()?;
            let term = r.uint()?;
            let voters = r.ids()?;
            let learners = r.ids()?;
            Body::InstallSnapshot {
                meta: SnapshotMeta {
                    index,
                    term,
                    conf: ConfState { voters, learners },
                },
                offset: r.uint()?,
                data: r.bytes()?.to_vec(),
                done: r.flag()?,
            }
        }
        7 => Body::SnapshotResponse {
            index: r.uint()?,
            offset: r.uint()?,
            installed: r.flag()?,
            reject: r.flag()?,
        },
        8 => Body::TimeoutNow,
        9 => Body::ReadIndex {
            ctx: r.bytes()?.to_vec(),
        },
        10 => Body::ReadIndexResponse {
            index: r.uint()?,
            ctx: r.bytes()?.to_vec(),
        },
        11 => Body::Commit {
            prev_index: r.uint()?,
            prev_term: r.uint()?,
            commit: r.uint()?,
        },
        tag => return Err(WireError::Tag { what: "message", tag }),
    };
    if !r.b.is_empty() {
        return Err(WireError::Trailing(r.b.len()));
    }
    Ok(Message { from, to, term, body })
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// What is left of the bytes being decoded.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, WireError> {
        let (&first, rest) = self.b.split_first().ok_or(WireError::Truncated)?;
        self.b = rest;
        Ok(first)
    }

    fn flag(&mut self) -> Result<bool, WireError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(WireError::Tag { what: "flag", tag }),
        }
    }

    fn uint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may hold only the top bit of a u64.
            if shift == 63 && bits > 1 {
                return Err(WireError::Overlong);
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::Overlong)
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.uint()?;
        if n > self.b.len() as u64 {
            return Err(WireError::Truncated);
        }
        let (b, rest) = self.b.split_at(n as usize);
        self.b = rest;
        Ok(b)
    }

    fn ids(&mut self) -> Result<BTreeSet<u64>, WireError> {
        let n = self.uint()?;
        let mut ids = BTreeSet::new();
        for _ in 0..n {
            ids.insert(self.uint()?);
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = Entry> {
        (
            any::<u64>(),
            any::<u64>(),
            0..3u8,
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(term, index, kind, data)| Entry {
                term,
                index,
                kind: [EntryKind::Normal, EntryKind::ConfChange, EntryKind::Noop][kind as usize],
                data: data.into(),
            })
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..40)
    }

    fn ids() -> impl Strategy<Value = BTreeSet<u64>> {
        proptest::collection::btree_set(any::<u64>(), 0..6)
    }

    fn body() -> impl Strategy<Value = Body> {
        let u = any::<u64>;
        prop_oneof![
            (u(), u(), proptest::collection::vec(entry(), 0..5), u()).prop_map(
                |(prev_index, prev_term, entries, commit)| {
                    Body::Append {
                        prev_index,
                        prev_term,
                        entries,
                        commit,
                    }
                }
            ),
            (any::<bool>(), u(), u(), u()).prop_map(|(reject, index, hint_index, hint_term)| Body::AppendResponse {
                reject,
                index,
                hint_index,
                hint_term
            }),
            (u(), u(), any::<bool>(), any::<bool>()).prop_map(|(last_index, last_term, pre_vote, transfer)| {
                Body::RequestVote {
                    last_index,
                    last_term,
                    pre_vote,
                    transfer,
                }
            }),
            (any::<bool>(), any::<bool>()).prop_map(|(granted, pre_vote)| Body::VoteResponse { granted, pre_vote }),
            (u(), bytes()).prop_map(|(commit, ctx)| Body::Heartbeat { commit, ctx }),
            bytes().prop_map(|ctx| Body::HeartbeatResponse { ctx }),
            (u(), u(), ids(), ids(), u(), bytes(), any::<bool>()).prop_map(
                |(index, term, voters, learners, offset, data, done)| Body::InstallSnapshot {
                    meta: SnapshotMeta {
                        index,
                        term,
                        conf: ConfState { voters, learners },
                    },
                    offset,
                    data,
                    done,
                }
            ),
            (u(), u(), any::<bool>(), any::<bool>()).prop_map(|(index, offset, installed, reject)| {
                Body::SnapshotResponse {
                    index,
                    offset,
                    installed,
                    reject,
                }
            }),
            Just(Body::TimeoutNow),
            bytes().prop_map(|ctx| Body::ReadIndex { ctx }),
            (u(), bytes()).prop_map(|(index, ctx)| Body::ReadIndexResponse { index, ctx }),
            (u(), u(), u()).prop_map(|(prev_index, prev_term, commit)| Body::Commit {
                prev_index,
                prev_term,
                commit
            }),
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        (any::<u64>(), any::<u64>(), any::<u64>(), body()).prop_map(|(from, to, term, body)| Message {
            from,
            to,
            term,
            body,
        })
    }

    fn encoded(m: &Message) -> Vec<u8> {
        let mut b = Vec::new();
        encode(m, &mut b);
        b
    }

    proptest! {
        #[test]
        fn every_message_round_trips(m in message()) {
            let b = encoded(&m);
            prop_assert!(b.len() <= encoded_len_hint(&m), "{} bytes, hint {}", b.len(), encoded_len_hint(&m));
            prop_assert_eq!(decode(&b), Ok(m));
        }

        /// Every proper prefix and every extension of a message is refused, never misread.
        #[test]
        fn cut_or_padded_messages_are_errors(m in message(), extra in 1..4usize) {
            let b = encoded(&m);
            for n in 0..b.len() {
                prop_assert!(decode(&b[..n]).is_err(), "prefix of {} bytes of {}", n, b.len());
            }
            let mut longer = b.clone();
            longer.extend(std::iter::repeat_n(0, extra));
            prop_assert_eq!(decode(&longer), Err(WireError::Trailing(extra)));
        }

        /// Arbitrary bytes decode to a message or an error: no panic, no allocation sized
        /// by a lying count.
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&b);
        }
    }

    /// The layout, pinned: changing it changes the peer protocol (bump `PEER_PROTOCOL`).
    #[test]
    fn layout_is_pinned() {
        let cases: Vec<(Body, &str)> = vec![
            (
                Body::Append {
                    prev_index: 300,
                    prev_term: 2,
                    entries: vec![Entry {
                        term: 2,
                        index: 301,
                        kind: EntryKind::Normal,
                        data: bytes::Bytes::from_static(b"ab"),
                    }],
                    commit: 299,
                },
                "010203 00 ac0202ab0201 02ad020002 6162",
            ),
            (
                Body::AppendResponse {
                    reject: true,
                    index: 5,
                    hint_index: 4,
                    hint_term: 1,
                },
                "010203 01 01050401",
            ),
            (
                Body::Commit {
                    prev_index: 7,
                    prev_term: 3,
                    commit: 7,
                },
                "010203 0b 070307",
            ),
            (Body::TimeoutNow, "010203 08"),
        ];
        for (body, hex) in cases {
            let m = Message {
                from: 1,
                to: 2,
                term: 3,
                body,
            };
            assert_eq!(hex::encode(encoded(&m)), hex.replace(' ', ""), "{m:?}");
        }
    }

    #[test]
    fn overlong_varints_and_bad_tags_are_named() {
        assert_eq!(decode(&[0xff; 11]), Err(WireError::Overlong));
        // 2^64 does not fit: the tenth byte may only be 0 or 1.
        let mut b = vec![0x80; 9];
        b.push(0x02);
        assert_eq!(decode(&b), Err(WireError::Overlong));
        assert_eq!(
            decode(&[1, 2, 3, 12]),
            Err(WireError::Tag {
                what: "message",
                tag: 12
            })
        );
        assert_eq!(
            decode(&[1, 2, 3, 1, 2, 0, 0, 0]),
            Err(WireError::Tag { what: "flag", tag: 2 })
        );
        assert_eq!(
            decode(&[1, 2, 3, 0, 0, 0, 0, 1, 1, 1, 3, 0]),
            Err(WireError::Tag {
                what: "entry kind",
                tag: 3
            })
        );
        // A count of entries far beyond the bytes: an error, after no large allocation.
        assert_eq!(
            decode(&[1, 2, 3, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Err(WireError::Truncated)
        );
    }
}
