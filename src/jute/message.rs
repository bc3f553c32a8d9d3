//! Whole client requests and server replies: header plus the body its opcode selects.

use super::codec::{JuteError, Reader, Record, Result, Writer};
use super::codes::{ErrorCode, OpCode};
use super::records::*;
use serde::{Deserialize, Serialize};

/// One operation inside a multi or multiRead request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum MultiOp {
    /// create (1), create2 (15) or createContainer (19); the opcode picks the result shape.
    Create(
        #[cfg_attr(test, proptest(strategy = "tests::create_ops()"))] OpCode,
        CreateRequest,
    ),
    /// createTTL (21).
    CreateTtl(CreateTtlRequest),
    /// delete (2).
    Delete(DeleteRequest),
    /// setData (5).
    SetData(SetDataRequest),
    /// check (13).
    Check(CheckVersionRequest),
    /// getChildren (8), multiRead only.
    GetChildren(GetChildrenRequest),
    /// getData (4), multiRead only.
    GetData(GetDataRequest),
}

impl MultiOp {
    /// The op's opcode as written in its MultiHeader.
    pub fn op_code(&self) -> OpCode {
        match self {
            MultiOp::Create(op, _) => *op,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
            MultiOp::GetData(_) => OpCode::GetData,
        }
    }

    /// The path the op names.
    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(_, r) => &r.path,
            MultiOp::CreateTtl(r) => &r.path,
            MultiOp::Delete(r) => &r.path,
            MultiOp::SetData(r) => &r.path,
            MultiOp::Check(r) => &r.path,
            MultiOp::GetChildren(r) => &r.path,
            MultiOp::GetData(r) => &r.path,
        }
    }

    fn write(&self, w: &mut Writer) {
        MultiHeader {
            r#type: self.op_code().code(),
            done: false,
            err: -1,
        }
        .write(w);
        match self {
            MultiOp::Create(_, r) => r.write(w),
            MultiOp::CreateTtl(r) => r.write(w),
            MultiOp::Delete(r) => r.write(w),
            MultiOp::SetData(r) => r.write(w),
            MultiOp::Check(r) => r.write(w),
            MultiOp::GetChildren(r) => r.write(w),
            MultiOp::GetData(r) => r.write(w),
        }
    }
}

/// Writes the terminating MultiHeader {-1, true, -1}.
fn write_multi_end(w: &mut Writer) {
    MultiHeader {
        r#type: -1,
        done: true,
        err: -1,
    }
    .write(w);
}

/// Reads MultiHeaders until the `done` terminator, calling `item` for each op type.
fn read_multi<T>(r: &mut Reader<'_>, mut item: impl FnMut(i32, i32, &mut Reader<'_>) -> Result<T>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(out);
        }
        // Every op costs at least a 9-byte header, so a loop cannot outrun its input.
        out.push(item(h.r#type, h.err, r)?);
    }
}

/// The ops of a multi (14) or multiRead (22) request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct MultiRequest {
    pub ops: Vec<MultiOp>,
}

impl MultiRequest {
    fn write(&self, w: &mut Writer) {
        for op in &self.ops {
            op.write(w);
        }
        write_multi_end(w);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let ops = read_multi(r, |t, _err, r| {
            let op = OpCode::try_from(t)?;
            Ok(match op {
                OpCode::Create | OpCode::Create2 | OpCode::CreateContainer => {
                    MultiOp::Create(op, CreateRequest::read(r)?)
                }
                OpCode::CreateTtl => MultiOp::CreateTtl(CreateTtlRequest::read(r)?),
                OpCode::Delete => MultiOp::Delete(DeleteRequest::read(r)?),
                OpCode::SetData => MultiOp::SetData(SetDataRequest::read(r)?),
                OpCode::Check => MultiOp::Check(CheckVersionRequest::read(r)?),
                OpCode::GetChildren => MultiOp::GetChildren(GetChildrenRequest::read(r)?),
                OpCode::GetData => MultiOp::GetData(GetDataRequest::read(r)?),
                other => return Err(JuteError::UnexpectedOpCode(other.code())),
            })
        })?;
        Ok(MultiRequest { ops })
    }
}

/// A client request body, tagged by opcode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Request {
    Create(CreateRequest),
    Create2(CreateRequest),
    CreateContainer(CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    /// Server-internal: the body is the bare UTF-8 path.
    DeleteContainer(String),
    Exists(ExistsRequest),
    GetData(GetDataRequest),
    SetData(SetDataRequest),
    GetAcl(GetAclRequest),
    SetAcl(SetAclRequest),
    GetChildren(GetChildrenRequest),
    GetChildren2(GetChildren2Request),
    GetAllChildrenNumber(GetAllChildrenNumberRequest),
    GetEphemerals(GetEphemeralsRequest),
    Sync(SyncRequest),
    Check(CheckVersionRequest),
    Multi(MultiRequest),
    MultiRead(MultiRequest),
    Ping,
    Auth(AuthPacket),
    SetWatches(SetWatches),
    SetWatches2(SetWatches2),
    AddWatch(AddWatchRequest),
    RemoveWatches(RemoveWatchesRequest),
    CheckWatches(CheckWatchesRequest),
    WhoAmI,
    Reconfig(ReconfigRequest),
    CloseSession,
}

impl Request {
    /// The opcode this body travels under.
    pub fn op_code(&self) -> OpCode {
        use Request::*;
        match self {
            Create(_) => OpCode::Create,
            Create2(_) => OpCode::Create2,
            CreateContainer(_) => OpCode::CreateContainer,
            CreateTtl(_) => OpCode::CreateTtl,
            Delete(_) => OpCode::Delete,
            DeleteContainer(_) => OpCode::DeleteContainer,
            Exists(_) => OpCode::Exists,
            GetData(_) => OpCode::GetData,
            SetData(_) => OpCode::SetData,
            GetAcl(_) => OpCode::GetAcl,
            SetAcl(_) => OpCode::SetAcl,
            GetChildren(_) => OpCode::GetChildren,
            GetChildren2(_) => OpCode::GetChildren2,
            GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            GetEphemerals(_) => OpCode::GetEphemerals,
            Sync(_) => OpCode::Sync,
            Check(_) => OpCode::Check,
            Multi(_) => OpCode::Multi,
            MultiRead(_) => OpCode::MultiRead,
            Ping => OpCode::Ping,
            Auth(_) => OpCode::Auth,
            SetWatches(_) => OpCode::SetWatches,
            SetWatches2(_) => OpCode::SetWatches2,
            AddWatch(_) => OpCode::AddWatch,
            RemoveWatches(_) => OpCode::RemoveWatches,
            CheckWatches(_) => OpCode::CheckWatches,
            WhoAmI => OpCode::WhoAmI,
            Reconfig(_) => OpCode::Reconfig,
            CloseSession => OpCode::CloseSession,
        }
    }

    /// Whether the request changes state and so goes through the log.
    pub fn is_write(&self) -> bool {
        use Request::*;
        matches!(
            self,
            Create(_)
                | Create2(_)
                | CreateContainer(_)
                | CreateTtl(_)
                | Delete(_)
                | DeleteContainer(_)
                | SetData(_)
                | SetAcl(_)
                | Check(_)
                | Multi(_)
                | Reconfig(_)
                | CloseSession
        )
    }

    /// Appends the body (no header).
    pub fn write_body(&self, w: &mut Writer) {
        use Request::*;
        match self {
            Create(r) | Create2(r) | CreateContainer(r) => r.write(w),
            CreateTtl(r) => r.write(w),
            Delete(r) => r.write(w),
            DeleteContainer(p) => w.raw(p.as_bytes()),
            Exists(r) => r.write(w),
            GetData(r) => r.write(w),
            SetData(r) => r.write(w),
            GetAcl(r) => r.write(w),
            SetAcl(r) => r.write(w),
            GetChildren(r) => r.write(w),
            GetChildren2(r) => r.write(w),
            GetAllChildrenNumber(r) => r.write(w),
            GetEphemerals(r) => r.write(w),
            Sync(r) => r.write(w),
            Check(r) => r.write(w),
            Multi(r) | MultiRead(r) => r.write(w),
            Ping | WhoAmI | CloseSession => {}
            Auth(r) => r.write(w),
            SetWatches(r) => r.write(w),
            SetWatches2(r) => r.write(w),
            AddWatch(r) => r.write(w),
            RemoveWatches(r) => r.write(w),
            CheckWatches(r) => r.write(w),
            Reconfig(r) => r.write(w),
        }
    }

    /// Decodes a body for `op`; the reader must hold exactly that body.
    pub fn read_body(op: OpCode, r: &mut Reader<'_>) -> Result<Self> {
        use Request as R;
        let req = match op {
            OpCode::Create => R::Create(Record::read(r)?),
            OpCode::Create2 => R::Create2(Record::read(r)?),
            OpCode::CreateContainer => R::CreateContainer(Record::read(r)?),
            OpCode::CreateTtl => R::CreateTtl(Record::read(r)?),
            OpCode::Delete => R::Delete(Record::read(r)?),
            OpCode::DeleteContainer => {
                let offset = r.position();
                R::DeleteContainer(String::from_utf8(r.rest().to_vec()).map_err(|_| JuteError::BadUtf8 { offset })?)
            }
            OpCode::Exists => R::Exists(Record::read(r)?),
            OpCode::GetData => R::GetData(Record::read(r)?),
            OpCode::SetData => R::SetData(Record::read(r)?),
            OpCode::GetAcl => R::GetAcl(Record::read(r)?),
            OpCode::SetAcl => R::SetAcl(Record::read(r)?),
            OpCode::GetChildren => R::GetChildren(Record::read(r)?),
            OpCode::GetChildren2 => R::GetChildren2(Record::read(r)?),
            OpCode::GetAllChildrenNumber => R::GetAllChildrenNumber(Record::read(r)?),
            OpCode::GetEphemerals => R::GetEphemerals(Record::read(r)?),
            OpCode::Sync => R::Sync(Record::read(r)?),
            OpCode::Check => R::Check(Record::read(r)?),
            OpCode::Multi => R::Multi(MultiRequest::read(r)?),
            OpCode::MultiRead => R::MultiRead(MultiRequest::read(r)?),
            OpCode::Ping => R::Ping,
            OpCode::Auth => R::Auth(Record::read(r)?),
            OpCode::SetWatches => R::SetWatches(Record::read(r)?),
            OpCode::SetWatches2 => R::SetWatches2(Record::read(r)?),
            OpCode::AddWatch => R::AddWatch(Record::read(r)?),
            OpCode::RemoveWatches => R::RemoveWatches(Record::read(r)?),
            OpCode::CheckWatches => R::CheckWatches(Record::read(r)?),
            OpCode::WhoAmI => R::WhoAmI,
            OpCode::Reconfig => R::Reconfig(Record::read(r)?),
            OpCode::CloseSession => R::CloseSession,
            OpCode::Notification | OpCode::Sasl | OpCode::CreateSession | OpCode::Error => {
                return Err(JuteError::UnexpectedOpCode(op.code()))
            }
        };
        r.finish()?;
        Ok(req)
    }
}

/// A framed request after the handshake: header plus body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    pub xid: i32,
    pub request: Request,
}

impl RequestFrame {
    /// Encodes header and body (without the length prefix).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        RequestHeader {
            xid: self.xid,
            r#type: self.request.op_code().code(),
        }
        .write(&mut w);
        self.request.write_body(&mut w);
        w.into_bytes()
    }

    /// Decodes a request payload. An unknown opcode is `UnknownOpCode`, so the server can
    /// answer it with ZooKeeper's error rather than dropping the connection.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut r = Reader::new(b);
        let h = RequestHeader::read(&mut r)?;
        let op = OpCode::try_from(h.r#type)?;
        Ok(RequestFrame {
            xid: h.xid,
            request: Request::read_body(op, &mut r)?,
        })
    }
}

/// The result of one op inside a multi or multiRead reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum OpResult {
    /// create (1): the created path.
    Create(String),
    /// create2/createTTL/createContainer: path and stat.
    Create2(
        #[cfg_attr(test, proptest(strategy = "tests::create2_ops()"))] OpCode,
        String,
        Stat,
    ),
    /// delete.
    Delete,
    /// setData.
    SetData(Stat),
    /// check.
    Check,
    /// getChildren in multiRead.
    GetChildren(Vec<String>),
    /// getData in multiRead.
    GetData(#[serde(with = "serde_bytes")] Option<Vec<u8>>, Stat),
    /// A failed (or rolled back) op.
    Error(ErrorCode),
}

impl OpResult {
    fn write(&self, w: &mut Writer) {
        let (t, err) = match self {
            OpResult::Create(_) => (OpCode::Create.code(), 0),
            OpResult::Create2(op, _, _) => (op.code(), 0),
            OpResult::Delete => (OpCode::Delete.code(), 0),
            OpResult::SetData(_) => (OpCode::SetData.code(), 0),
            OpResult::Check => (OpCode::Check.code(), 0),
            OpResult::GetChildren(_) => (OpCode::GetChildren.code(), 0),
            OpResult::GetData(_, _) => (OpCode::GetData.code(), 0),
            OpResult::Error(e) => (-1, e.code()),
        };
        MultiHeader {
            r#type: t,
            done: false,
            err,
        }
        .write(w);
        match self {
            OpResult::Create(p) => CreateResponse { path: p.clone() }.write(w),
            OpResult::Create2(_, p, s) => Create2Response {
                path: p.clone(),
                stat: s.clone(),
            }
            .write(w),
            OpResult::Delete | OpResult::Check => {}
            OpResult::SetData(s) => s.write(w),
            OpResult::GetChildren(c) => GetChildrenResponse { children: c.clone() }.write(w),
            OpResult::GetData(d, s) => GetDataResponse {
                data: d.clone(),
                stat: s.clone(),
            }
            .write(w),
            OpResult::Error(e) => ErrorResponse { err: e.code() }.write(w),
        }
    }

    fn read(t: i32, r: &mut Reader<'_>) -> Result<Self> {
        if t == -1 {
            return Ok(OpResult::Error(ErrorCode::try_from(ErrorResponse::read(r)?.err)?));
        }
        let op = OpCode::try_from(t)?;
        Ok(match op {
            OpCode::Create => OpResult::Create(CreateResponse::read(r)?.path),
            OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer => {
                let c = Create2Response::read(r)?;
                OpResult::Create2(op, c.path, c.stat)
            }
            OpCode::Delete => OpResult::Delete,
            OpCode::SetData => OpResult::SetData(Stat::read(r)?),
            OpCode::Check => OpResult::Check,
            OpCode::GetChildren => OpResult::GetChildren(GetChildrenResponse::read(r)?.children),
            OpCode::GetData => {
                let d = GetDataResponse::read(r)?;
                OpResult::GetData(d.data, d.stat)
            }
            other => return Err(JuteError::UnexpectedOpCode(other.code())),
        })
    }
}

/// A reply body, tagged by the request's opcode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Response {
    /// No body: errors other than multi's, delete, ping, sync-less ops, setWatches, closeSession.
    Empty,
    Create(CreateResponse),
    Create2(Create2Response),
    SetData(SetDataResponse),
    Exists(ExistsResponse),
    GetData(GetDataResponse),
    GetAcl(GetAclResponse),
    SetAcl(SetAclResponse),
    GetChildren(GetChildrenResponse),
    GetChildren2(GetChildren2Response),
    GetAllChildrenNumber(GetAllChildrenNumberResponse),
    GetEphemerals(GetEphemeralsResponse),
    Sync(SyncResponse),
    Multi(Vec<OpResult>),
    /// addWatch answers with an ErrorResponse body.
    AddWatch(ErrorResponse),
    WhoAmI(WhoAmIResponse),
    Notification(WatcherEvent),
}

impl Response {
    /// Appends the body.
    pub fn write_body(&self, w: &mut Writer) {
        match self {
            Response::Empty => {}
            Response::Create(r) => r.write(w),
            Response::Create2(r) => r.write(w),
            Response::SetData(r) => r.write(w),
            Response::Exists(r) => r.write(w),
            Response::GetData(r) => r.write(w),
            Response::GetAcl(r) => r.write(w),
            Response::SetAcl(r) => r.write(w),
            Response::GetChildren(r) => r.write(w),
            Response::GetChildren2(r) => r.write(w),
            Response::GetAllChildrenNumber(r) => r.write(w),
            Response::GetEphemerals(r) => r.write(w),
            Response::Sync(r) => r.write(w),
            Response::Multi(results) => {
                for res in results {
                    res.write(w);
                }
                write_multi_end(w);
            }
            Response::AddWatch(r) => r.write(w),
            Response::WhoAmI(r) => r.write(w),
            Response::Notification(r) => r.write(w),
        }
    }

    /// Decodes the body of a reply to `op` with header error `err`; the reader must hold
    /// exactly that body.
    pub fn read_body(op: OpCode, err: i32, r: &mut Reader<'_>) -> Result<Self> {
        if r.remaining() == 0 && (err != 0 || op != OpCode::Multi) {
            return Ok(Response::Empty);
        }
        let resp = match op {
            OpCode::Create => Response::Create(Record::read(r)?),
            OpCode::Create2 | OpCode::CreateTtl | OpCode::CreateContainer => Response::Create2(Record::read(r)?),
            OpCode::SetData | OpCode::Check => Response::SetData(Record::read(r)?),
            OpCode::Exists => Response::Exists(Record::read(r)?),
            // ZooKeeper answers reconfig with the new configuration (GetDataResponse).
            OpCode::GetData | OpCode::Reconfig => Response::GetData(Record::read(r)?),
            OpCode::GetAcl => Response::GetAcl(Record::read(r)?),
            OpCode::SetAcl => Response::SetAcl(Record::read(r)?),
            OpCode::GetChildren => Response::GetChildren(Record::read(r)?),
            OpCode::GetChildren2 => Response::GetChildren2(Record::read(r)?),
            OpCode::GetAllChildrenNumber => Response::GetAllChildrenNumber(Record::read(r)?),
            OpCode::GetEphemerals => Response::GetEphemerals(Record::read(r)?),
            OpCode::Sync => Response::Sync(Record::read(r)?),
            OpCode::Multi | OpCode::MultiRead => Response::Multi(read_multi(r, |t, _err, r| OpResult::read(t, r))?),
            OpCode::AddWatch => Response::AddWatch(Record::read(r)?),
            OpCode::WhoAmI => Response::WhoAmI(Record::read(r)?),
            OpCode::Notification => Response::Notification(Record::read(r)?),
            _ => Response::Empty,
        };
        r.finish()?;
        Ok(resp)
    }
}

/// A framed reply: header plus body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyFrame {
    pub header: ReplyHeader,
    pub response: Response,
}

impl ReplyFrame {
    /// Encodes header and body (without the length prefix).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.header.write(&mut w);
        self.response.write_body(&mut w);
        w.into_bytes()
    }

    /// The reply framed for the wire (length prefix included), written into one buffer sized
    /// for it up front: `encode_frame(&to_bytes())` grew a buffer from nothing (nine
    /// reallocations for a 1 KiB getData) and then copied it into a second one.
    pub fn to_frame(&self) -> Vec<u8> {
        let data = match &self.response {
            Response::GetData(r) => r.data.as_ref().map_or(0, Vec::len),
            _ => 0,
        };
        let mut w = Writer::with_capacity(128 + data);
        w.int(0);
        self.header.write(&mut w);
        self.response.write_body(&mut w);
        let mut b = w.into_bytes();
        let len = (b.len() - 4) as u32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        b
    }

    /// Decodes a reply payload. The opcode is not on the wire: `op_of_xid` maps the xid back
    /// to the request it answers (special xids are handled here).
    pub fn from_bytes(b: &[u8], op_of_xid: impl FnOnce(i32) -> Option<OpCode>) -> Result<Self> {
        let mut r = Reader::new(b);
        let header = ReplyHeader::read(&mut r)?;
        let op = match header.xid {
            super::codes::xid::NOTIFICATION => OpCode::Notification,
            super::codes::xid::PING => OpCode::Ping,
            super::codes::xid::AUTH => OpCode::Auth,
            super::codes::xid::SET_WATCHES => OpCode::SetWatches,
            x => op_of_xid(x).ok_or(JuteError::BadValue {
                field: "reply xid",
                value: x as i64,
            })?,
        };
        let response = Response::read_body(op, header.err, &mut r)?;
        Ok(ReplyFrame { header, response })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reply framed in one buffer is the payload framed after the fact, for replies with
    /// and without data, small and past the buffer's first guess.
    #[test]
    fn replies_frame_as_encode_frame_does() {
        let stat = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let responses = [
            Response::Empty,
            Response::SetData(SetDataResponse { stat: stat.clone() }),
            Response::GetData(GetDataResponse {
                data: None,
                stat: stat.clone(),
            }),
            Response::GetData(GetDataResponse {
                data: Some(vec![]),
                stat: stat.clone(),
            }),
            Response::GetData(GetDataResponse {
                data: Some(vec![0x5a; 1024]),
                stat,
            }),
            Response::GetChildren(GetChildrenResponse {
                children: (0..100).map(|i| format!("child-{i}")).collect(),
            }),
        ];
        for response in responses {
            let f = ReplyFrame {
                header: ReplyHeader {
                    xid: 7,
                    zxid: 99,
                    err: 0,
                },
                response,
            };
            assert_eq!(
                f.to_frame(),
                crate::jute::encode_frame(&f.to_bytes()),
                "{:?}",
                f.response
            );
        }
    }

    pub fn create_ops() -> impl Strategy<Value = OpCode> {
        prop_oneof![
            Just(OpCode::Create),
            Just(OpCode::Create2),
            Just(OpCode::CreateContainer)
        ]
    }

    pub fn create2_ops() -> impl Strategy<Value = OpCode> {
        prop_oneof![
            Just(OpCode::Create2),
            Just(OpCode::CreateTtl),
            Just(OpCode::CreateContainer)
        ]
    }

    /// The opcode whose reply decodes into this response variant.
    fn op_of(r: &Response) -> OpCode {
        match r {
            Response::Empty => OpCode::Delete,
            Response::Create(_) => OpCode::Create,
            Response::Create2(_) => OpCode::Create2,
            Response::SetData(_) => OpCode::SetData,
            Response::Exists(_) => OpCode::Exists,
            Response::GetData(_) => OpCode::GetData,
            Response::GetAcl(_) => OpCode::GetAcl,
            Response::SetAcl(_) => OpCode::SetAcl,
            Response::GetChildren(_) => OpCode::GetChildren,
            Response::GetChildren2(_) => OpCode::GetChildren2,
            Response::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Response::GetEphemerals(_) => OpCode::GetEphemerals,
            Response::Sync(_) => OpCode::Sync,
            Response::Multi(_) => OpCode::Multi,
            Response::AddWatch(_) => OpCode::AddWatch,
            Response::WhoAmI(_) => OpCode::WhoAmI,
            Response::Notification(_) => OpCode::Notification,
        }
    }

    proptest! {
        #[test]
        fn request_frames_round_trip(xid in any::<i32>(), request in any::<Request>()) {
            let f = RequestFrame { xid, request };
            let bytes = f.to_bytes();
            prop_assert_eq!(RequestFrame::from_bytes(&bytes).unwrap(), f);
        }

        #[test]
        fn reply_frames_round_trip(zxid in any::<i64>(), err in any::<ErrorCode>(), response in any::<Response>()) {
            let op = op_of(&response);
            let err = if matches!(response, Response::Empty) { err.code() } else { 0 };
            let f = ReplyFrame { header: ReplyHeader { xid: 7, zxid, err }, response };
            let bytes = f.to_bytes();
            prop_assert_eq!(ReplyFrame::from_bytes(&bytes, |_| Some(op)).unwrap(), f);
        }

        #[test]
        fn connect_round_trip(req in any::<ConnectRequest>(), resp in any::<ConnectResponse>()) {
            prop_assert_eq!(ConnectRequest::from_bytes(&req.to_bytes()).unwrap(), req);
            prop_assert_eq!(ConnectResponse::from_bytes(&resp.to_bytes()).unwrap(), resp);
        }

        #[test]
        fn records_round_trip(
            stat in any::<Stat>(), acl in any::<Vec<Acl>>(), sw in any::<SetWatches>(), sw2 in any::<SetWatches2>(),
            ev in any::<WatcherEvent>(), auth in any::<AuthPacket>(), mh in any::<MultiHeader>(),
            rc in any::<ReconfigRequest>(), who in any::<WhoAmIResponse>(),
        ) {
            fn rt<T: Record + PartialEq + std::fmt::Debug>(v: T) -> std::result::Result<(), TestCaseError> {
                prop_assert_eq!(T::from_bytes(&v.to_bytes()).unwrap(), v);
                Ok(())
            }
            rt(stat)?; rt(GetAclResponse { acl, stat: Stat::default() })?; rt(sw)?; rt(sw2)?; rt(ev)?;
            rt(auth)?; rt(mh)?; rt(rc)?; rt(who)?;
        }

        /// Requests and replies travel between servers through serde and bincode (a write
        /// forwarded to the leader): they come back as they went.
        #[test]
        fn requests_and_replies_round_trip_through_bincode(request in any::<Request>(), response in any::<Response>()) {
            let cfg = bincode::config::standard();
            let b = bincode::serde::encode_to_vec(&request, cfg).unwrap();
            prop_assert_eq!(bincode::serde::decode_from_slice::<Request, _>(&b, cfg).unwrap(), (request, b.len()));
            let b = bincode::serde::encode_to_vec(&response, cfg).unwrap();
            prop_assert_eq!(bincode::serde::decode_from_slice::<Response, _>(&b, cfg).unwrap(), (response, b.len()));
        }

        #[test]
        fn truncations_are_errors(xid in any::<i32>(), request in any::<Request>(), cut in any::<prop::sample::Index>()) {
            let bytes = RequestFrame { xid, request }.to_bytes();
            let cut = cut.index(bytes.len());
            // Bodies that can legitimately end anywhere (deleteContainer's bare path) are excepted.
            if let Ok(f) = RequestFrame::from_bytes(&bytes[..cut]) {
                prop_assert!(matches!(f.request, Request::DeleteContainer(_)), "prefix decoded: {:?}", f);
            }
        }
    }

    /// The byte fields of records go through serde_bytes (decoded as one byte string, not
    /// element by element: a forwarded 1 KiB setData was a thousand visits) with the bytes
    /// they had as plain sequences, so servers of both versions forward to each other.
    #[test]
    fn record_bytes_encode_as_they_did_as_sequences() {
        #[derive(serde::Serialize)]
        struct SetDataBefore {
            path: String,
            data: Option<Vec<u8>>,
            version: i32,
        }
        #[derive(serde::Serialize)]
        struct CreateBefore {
            path: String,
            data: Option<Vec<u8>>,
            acl: Vec<Acl>,
            flags: i32,
        }
        #[derive(serde::Serialize)]
        struct AuthBefore {
            r#type: i32,
            scheme: String,
            auth: Vec<u8>,
        }
        let cfg = bincode::config::standard();
        fn enc<T: serde::Serialize>(v: &T) -> Vec<u8> {
            bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap()
        }
        let acl = vec![Acl {
            perms: 31,
            id: Id {
                scheme: "world".into(),
                id: "anyone".into(),
            },
        }];
        for data in [None, Some(vec![]), Some(vec![7]), Some(vec![0xab; 1500])] {
            let path = "/a/b".to_string();
            assert_eq!(
                enc(&SetDataRequest {
                    path: path.clone(),
                    data: data.clone(),
                    version: 3
                }),
                enc(&SetDataBefore {
                    path: path.clone(),
                    data: data.clone(),
                    version: 3
                })
            );
            assert_eq!(
                enc(&CreateRequest {
                    path: path.clone(),
                    data: data.clone(),
                    acl: acl.clone(),
                    flags: 2
                }),
                enc(&CreateBefore {
                    path: path.clone(),
                    data: data.clone(),
                    acl: acl.clone(),
                    flags: 2
                })
            );
            let auth = data.clone().unwrap_or_default();
            assert_eq!(
                enc(&AuthPacket {
                    r#type: 0,
                    scheme: "digest".into(),
                    auth: auth.clone()
                }),
                enc(&AuthBefore {
                    r#type: 0,
                    scheme: "digest".into(),
                    auth
                })
            );
            // And the bytes decode back.
            let req = SetDataRequest { path, data, version: 3 };
            let b = enc(&req);
            assert_eq!(
                bincode::serde::decode_from_slice::<SetDataRequest, _>(&b, cfg)
                    .unwrap()
                    .0,
                req
            );
        }
    }

    #[test]
    fn opcode_and_error_tables() {
        for op in OpCode::ALL {
            assert_eq!(OpCode::try_from(op.code()).unwrap(), *op);
        }
        for e in ErrorCode::ALL {
            assert_eq!(ErrorCode::try_from(e.code()).unwrap(), *e);
        }
        assert_eq!(OpCode::try_from(10), Err(JuteError::UnknownOpCode(10)));
        assert_eq!(ErrorCode::try_from(-9), Err(JuteError::UnknownErrorCode(-9)));
        // Spot-check values against ZooDefs.OpCode / KeeperException.Code.
        assert_eq!(OpCode::MultiRead.code(), 22);
        assert_eq!(OpCode::WhoAmI.code(), 107);
        assert_eq!(OpCode::CloseSession.code(), -11);
        assert_eq!(ErrorCode::Throttled.code(), -127);
        assert_eq!(ErrorCode::NoChildrenForEphemerals.code(), -108);
    }

    #[test]
    fn unknown_opcode_is_typed() {
        let mut w = Writer::new();
        RequestHeader { xid: 1, r#type: 55 }.write(&mut w);
        assert_eq!(
            RequestFrame::from_bytes(&w.into_bytes()),
            Err(JuteError::UnknownOpCode(55))
        );
    }

    #[test]
    fn connect_both_lengths() {
        let long = ConnectRequest {
            passwd: vec![0; 16],
            read_only: Some(false),
            ..Default::default()
        }
        .to_bytes();
        assert_eq!(long.len(), 45);
        let short = ConnectRequest {
            passwd: vec![0; 16],
            read_only: None,
            ..Default::default()
        }
        .to_bytes();
        assert_eq!(short.len(), 44);
        assert_eq!(ConnectRequest::from_bytes(&short).unwrap().read_only, None);
        let resp = ConnectResponse {
            passwd: vec![0; 16],
            read_only: Some(true),
            ..Default::default()
        }
        .to_bytes();
        assert_eq!(resp.len(), 37);
    }
}
