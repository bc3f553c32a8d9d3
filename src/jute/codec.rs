//! Jute binary primitives: big-endian ints, booleans, length-prefixed strings, buffers and vectors.

use thiserror::Error;

/// Everything that can go wrong while decoding jute bytes; never a panic.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JuteError {
    /// The input ended before the record did.
    #[error("truncated input: needed {needed} bytes at offset {offset}, {available} available")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// A length prefix is negative (other than -1 for null) or larger than the input allows.
    #[error("invalid length {length} at offset {offset}")]
    BadLength { offset: usize, length: i32 },
    /// A boolean byte other than 0 or 1.
    #[error("invalid boolean byte {value:#04x} at offset {offset}")]
    BadBool { offset: usize, value: u8 },
    /// A ustring that is not valid UTF-8.
    #[error("invalid UTF-8 string at offset {offset}")]
    BadUtf8 { offset: usize },
    /// An opcode this server does not know.
    #[error("unknown opcode {0}")]
    UnknownOpCode(i32),
    /// An error code ZooKeeper does not define.
    #[error("unknown error code {0}")]
    UnknownErrorCode(i32),
    /// A value outside the set ZooKeeper defines for a field.
    #[error("invalid value {value} for {field}")]
    BadValue { field: &'static str, value: i64 },
    /// The record decoded but bytes were left over.
    #[error("{0} trailing bytes after record")]
    TrailingBytes(usize),
    /// A frame length prefix is negative or above `jute.maxbuffer`.
    #[error("frame length {length} outside 0..={max}")]
    FrameTooLarge { length: i64, max: u32 },
    /// A multi sequence that does not end with its terminator or nests illegally.
    #[error("malformed multi: {0}")]
    BadMulti(&'static str),
    /// An opcode that is valid on the wire but not in this position (e.g. inside a multi).
    #[error("opcode {0} not allowed here")]
    UnexpectedOpCode(i32),
}

/// Result of decoding.
pub type Result<T> = std::result::Result<T, JuteError>;

/// Cursor over bytes being decoded.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Errors unless every byte was consumed.
    pub fn finish(&self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(JuteError::TrailingBytes(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(JuteError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads a jute `int`.
    pub fn int(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a jute `long`.
    pub fn long(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// Reads a jute `boolean` (one byte, 0 or 1).
    pub fn boolean(&mut self) -> Result<bool> {
        let offset = self.pos;
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(JuteError::BadBool { offset, value }),
        }
    }

    /// Reads a length prefix: `None` for -1 (null); the length is checked against the input
    /// before anything is allocated.
    fn length(&mut self) -> Result<Option<usize>> {
        let offset = self.pos;
        let length = self.int()?;
        if length == -1 {
            return Ok(None);
        }
        if length < 0 || length as usize > self.remaining() {
            return Err(JuteError::BadLength { offset, length });
        }
        Ok(Some(length as usize))
    }

    /// Reads a nullable `buffer`.
    pub fn buffer(&mut self) -> Result<Option<Vec<u8>>> {
        match self.length()? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?.to_vec())),
        }
    }

    /// Reads a nullable `ustring`.
    pub fn ustring(&mut self) -> Result<Option<String>> {
        let offset = self.pos;
        match self.length()? {
            None => Ok(None),
            Some(n) => {
                let b = self.take(n)?;
                String::from_utf8(b.to_vec())
                    .map(Some)
                    .map_err(|_| JuteError::BadUtf8 { offset: offset + 4 })
            }
        }
    }

    /// Reads a vector's element count; null reads as zero elements. Each element takes at
    /// least `min_elem` bytes, so an absurd count fails before any allocation.
    pub fn vector_len(&mut self, min_elem: usize) -> Result<usize> {
        let offset = self.pos;
        let length = self.int()?;
        if length == -1 {
            return Ok(0);
        }
        if length < 0 || (length as usize).saturating_mul(min_elem.max(1)) > self.remaining() {
            return Err(JuteError::BadLength { offset, length });
        }
        Ok(length as usize)
    }

    /// Takes every remaining byte (used for bodies without a record, such as deleteContainer).
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// Growable output buffer for encoding.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes a jute `int`.
    pub fn int(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Writes a jute `long`.
    pub fn long(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Writes a jute `boolean`.
    pub fn boolean(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    /// Writes a nullable `buffer`.
    pub fn buffer(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.int(-1),
            Some(b) => {
                self.int(b.len() as i32);
                self.buf.extend_from_slice(b);
            }
        }
    }

    /// Writes a nullable `ustring`.
    pub fn ustring(&mut self, v: Option<&str>) {
        self.buffer(v.map(str::as_bytes))
    }

    /// Writes raw bytes with no prefix.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
}

/// A jute record: a struct with a fixed field order.
pub trait Record: Sized {
    /// Appends the record's encoding.
    fn write(&self, w: &mut Writer);
    /// Decodes one record from the reader's position.
    fn read(r: &mut Reader<'_>) -> Result<Self>;

    /// Encodes into a fresh buffer.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    /// Decodes a buffer that must hold exactly this record.
    fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b);
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// A field type a record can hold; maps Rust types onto jute's.
pub trait Field: Sized {
    /// Appends the field.
    fn put(&self, w: &mut Writer);
    /// Reads the field.
    fn get(r: &mut Reader<'_>) -> Result<Self>;
}

impl Field for i32 {
    fn put(&self, w: &mut Writer) {
        w.int(*self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.int()
    }
}

impl Field for i64 {
    fn put(&self, w: &mut Writer) {
        w.long(*self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.long()
    }
}

impl Field for bool {
    fn put(&self, w: &mut Writer) {
        w.boolean(*self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.boolean()
    }
}

/// A non-null `ustring`; a null on the wire reads as "" (ZooKeeper's clients never send one here).
impl Field for String {
    fn put(&self, w: &mut Writer) {
        w.ustring(Some(self))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.ustring()?.unwrap_or_default())
    }
}

/// A nullable `ustring`.
impl Field for Option<String> {
    fn put(&self, w: &mut Writer) {
        w.ustring(self.as_deref())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.ustring()
    }
}

/// A nullable `buffer` (znode data is null or bytes, and clients can tell the two apart).
impl Field for Option<Vec<u8>> {
    fn put(&self, w: &mut Writer) {
        w.buffer(self.as_deref())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        r.buffer()
    }
}

/// A non-null `buffer`; null reads as empty.
impl Field for Vec<u8> {
    fn put(&self, w: &mut Writer) {
        w.buffer(Some(self))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.buffer()?.unwrap_or_default())
    }
}

/// `vector<ustring>`.
impl Field for Vec<String> {
    fn put(&self, w: &mut Writer) {
        w.int(self.len() as i32);
        for s in self {
            s.put(w);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        let n = r.vector_len(4)?;
        (0..n).map(|_| String::get(r)).collect()
    }
}

/// `vector<record>`.
impl<T: Record> Field for Vec<T> {
    fn put(&self, w: &mut Writer) {
        w.int(self.len() as i32);
        for s in self {
            s.write(w);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        let n = r.vector_len(4)?;
        (0..n).map(|_| T::read(r)).collect()
    }
}

/// Declares a jute record: a struct whose fields are encoded in declaration order.
#[macro_export]
macro_rules! jute_record {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary))]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }

        impl $crate::jute::codec::Record for $name {
            fn write(&self, _w: &mut $crate::jute::codec::Writer) {
                $($crate::jute::codec::Field::put(&self.$field, _w);)*
            }
            fn read(_r: &mut $crate::jute::codec::Reader<'_>) -> $crate::jute::codec::Result<Self> {
                Ok($name { $($field: <$ty as $crate::jute::codec::Field>::get(_r)?),* })
            }
        }
    };
}

impl<T: Record> Field for T {
    fn put(&self, w: &mut Writer) {
        self.write(w)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self> {
        T::read(r)
    }
}
