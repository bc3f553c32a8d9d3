//! Length-prefixed framing with the `jute.maxbuffer` limit, as a sans-IO incremental decoder.

use super::codec::JuteError;

/// ZooKeeper's default `jute.maxbuffer`: 0xfffff bytes.
pub const DEFAULT_MAX_BUFFER: u32 = 0xfffff;

/// Splits a byte stream into frames; feed it bytes as they arrive.
#[derive(Debug)]
pub struct FrameDecoder {
    max: u32,
    buf: Vec<u8>,
    /// Where the next frame starts in `buf`: returned frames are not shifted out one by one
    /// (with many frames in one read that was quadratic, a quarter of the simulator's time);
    /// the consumed prefix goes once it is at least half the buffer.
    start: usize,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder that refuses frames longer than `max` bytes.
    pub fn new(max: u32) -> Self {
        FrameDecoder {
            max,
            buf: Vec::new(),
            start: 0,
            failed: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame's payload, `Ok(None)` if more bytes are needed. A bad length
    /// prefix is an error before any allocation, and the stream is dead afterwards (framing
    /// cannot resynchronize).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, JuteError> {
        if self.failed {
            return Err(JuteError::FrameTooLarge {
                length: -1,
                max: self.max,
            });
        }
        let buf = &self.buf[self.start..];
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len < 0 || len as u32 > self.max {
            self.failed = true;
            return Err(JuteError::FrameTooLarge {
                length: len as i64,
                max: self.max,
            });
        }
        let total = 4 + len as usize;
        if buf.len() < total {
            return Ok(None);
        }
        let payload = buf[4..total].to_vec();
        self.start += total;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(payload))
    }
}

/// Prefixes a payload with its 4-byte big-endian length.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_reassembles() {
        let mut d = FrameDecoder::new(DEFAULT_MAX_BUFFER);
        let mut stream = encode_frame(b"hello");
        stream.extend(encode_frame(b""));
        stream.extend(encode_frame(b"world!"));
        for b in &stream {
            d.push(std::slice::from_ref(b));
        }
        assert_eq!(d.next_frame().unwrap().unwrap(), b"hello");
        assert_eq!(d.next_frame().unwrap().unwrap(), b"");
        assert_eq!(d.next_frame().unwrap().unwrap(), b"world!");
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.buffered(), 0);
    }

    proptest::proptest! {
        /// However the stream is cut into reads, and however reads and frame takes interleave,
        /// the frames come out whole and in order, and nothing stays buffered at the end.
        #[test]
        fn any_chunking_gives_the_same_frames(
            frames in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..40),
            cuts in proptest::collection::vec(1usize..700, 1..60),
            takes in proptest::collection::vec(0usize..4, 1..60),
        ) {
            let stream: Vec<u8> = frames.iter().flat_map(|f| encode_frame(f)).collect();
            let mut d = FrameDecoder::new(DEFAULT_MAX_BUFFER);
            let (mut at, mut got, mut i) = (0, vec![], 0);
            while at < stream.len() {
                let n = cuts[i % cuts.len()].min(stream.len() - at);
                d.push(&stream[at..at + n]);
                at += n;
                for _ in 0..takes[i % takes.len()] {
                    if let Some(f) = d.next_frame().unwrap() {
                        got.push(f);
                    }
                }
                i += 1;
            }
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            proptest::prop_assert_eq!(got, frames);
            proptest::prop_assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn limits_are_enforced_before_allocation() {
        let cases: [(i32, bool); 5] = [
            (0xfffff, true),
            (0x100000, false),
            (-1, false),
            (i32::MIN, false),
            (i32::MAX, false),
        ];
        for (len, ok) in cases {
            let mut d = FrameDecoder::new(DEFAULT_MAX_BUFFER);
            d.push(&len.to_be_bytes());
            let r = d.next_frame();
            assert_eq!(r.is_ok(), ok, "length {len}");
            if !ok {
                // The stream is dead: framing cannot resynchronize.
                d.push(&encode_frame(b"x"));
                assert!(d.next_frame().is_err());
            }
        }
        let mut small = FrameDecoder::new(4);
        small.push(&encode_frame(b"12345"));
        assert_eq!(small.next_frame(), Err(JuteError::FrameTooLarge { length: 5, max: 4 }));
    }
}
