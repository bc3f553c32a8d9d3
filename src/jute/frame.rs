//! Length-prefixed framing with the `jute.maxbuffer` limit, as a sans-IO incremental decoder.

use super::codec::JuteError;

/// ZooKeeper's default `jute.maxbuffer`: 0xfffff bytes.
pub const DEFAULT_MAX_BUFFER: u32 = 0xfffff;

/// Splits a byte stream into frames; feed it bytes as they arrive.
#[derive(Debug)]
pub struct FrameDecoder {
    max: u32,
    buf: Vec<u8>,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder that refuses frames longer than `max` bytes.
    pub fn new(max: u32) -> Self {
        FrameDecoder {
            max,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
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
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len < 0 || len as u32 > self.max {
            self.failed = true;
            return Err(JuteError::FrameTooLarge {
                length: len as i64,
                max: self.max,
            });
        }
        let total = 4 + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let payload = self.buf[4..total].to_vec();
        self.buf.drain(..total);
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
