//! The records of ZooKeeper 3.8's `zookeeper.jute` that clients and servers exchange.

use super::codec::{Field, Reader, Record, Result, Writer};
use crate::jute_record;

jute_record! {
    /// An identity: scheme plus id (`world:anyone`, `digest:user:hash`, `ip:10.0.0.0/8`).
    pub struct Id { pub scheme: String, pub id: String }
}

jute_record! {
    /// One ACL entry: permission bits granted to an identity.
    pub struct Acl { pub perms: i32, pub id: Id }
}

jute_record! {
    /// Node metadata as clients see it.
    pub struct Stat {
        pub czxid: i64,
        pub mzxid: i64,
        pub ctime: i64,
        pub mtime: i64,
        pub version: i32,
        pub cversion: i32,
        pub aversion: i32,
        pub ephemeral_owner: i64,
        pub data_length: i32,
        pub num_children: i32,
        pub pzxid: i64,
    }
}

jute_record! {
    /// An authenticated identity reported by whoAmI.
    pub struct ClientInfo { pub auth_scheme: String, pub user: String }
}

/// Session handshake from the client; `read_only` is the optional trailing byte.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub time_out: i32,
    pub session_id: i64,
    #[serde(with = "serde_bytes")]
    pub passwd: Vec<u8>,
    /// `None` when the client sent the short (pre-3.4) form without the readOnly byte.
    pub read_only: Option<bool>,
}

impl Record for ConnectRequest {
    fn write(&self, w: &mut Writer) {
        w.int(self.protocol_version);
        w.long(self.last_zxid_seen);
        w.int(self.time_out);
        w.long(self.session_id);
        self.passwd.put(w);
        if let Some(ro) = self.read_only {
            w.boolean(ro);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(ConnectRequest {
            protocol_version: r.int()?,
            last_zxid_seen: r.long()?,
            time_out: r.int()?,
            session_id: r.long()?,
            passwd: Field::get(r)?,
            read_only: if r.remaining() > 0 { Some(r.boolean()?) } else { None },
        })
    }
}

/// Session handshake reply; carries the readOnly byte only if the request did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub time_out: i32,
    pub session_id: i64,
    #[serde(with = "serde_bytes")]
    pub passwd: Vec<u8>,
    /// `None` for the short form.
    pub read_only: Option<bool>,
}

impl Record for ConnectResponse {
    fn write(&self, w: &mut Writer) {
        w.int(self.protocol_version);
        w.int(self.time_out);
        w.long(self.session_id);
        self.passwd.put(w);
        if let Some(ro) = self.read_only {
            w.boolean(ro);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self> {
        Ok(ConnectResponse {
            protocol_version: r.int()?,
            time_out: r.int()?,
            session_id: r.long()?,
            passwd: Field::get(r)?,
            read_only: if r.remaining() > 0 { Some(r.boolean()?) } else { None },
        })
    }
}

jute_record! {
    /// Watches re-registered by a reconnecting client.
    pub struct SetWatches {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
    }
}

jute_record! {
    /// setWatches with persistent and recursive watches (3.6+).
    pub struct SetWatches2 {
        pub relative_zxid: i64,
        pub data_watches: Vec<String>,
        pub exist_watches: Vec<String>,
        pub child_watches: Vec<String>,
        pub persistent_watches: Vec<String>,
        pub persistent_recursive_watches: Vec<String>,
    }
}

impl From<SetWatches> for SetWatches2 {
    /// The 3.5 form is the 3.6 form without persistent watches.
    fn from(w: SetWatches) -> SetWatches2 {
        SetWatches2 {
            relative_zxid: w.relative_zxid,
            data_watches: w.data_watches,
            exist_watches: w.exist_watches,
            child_watches: w.child_watches,
            persistent_watches: vec![],
            persistent_recursive_watches: vec![],
        }
    }
}

jute_record! {
    /// Header of every client request.
    pub struct RequestHeader { pub xid: i32, pub r#type: i32 }
}

jute_record! {
    /// Header of each op inside a multi request or response.
    pub struct MultiHeader { pub r#type: i32, pub done: bool, pub err: i32 }
}

jute_record! {
    /// addAuth credentials.
    pub struct AuthPacket { pub r#type: i32, pub scheme: String, #[serde(with = "serde_bytes")] pub auth: Vec<u8> }
}

jute_record! {
    /// Header of every server reply.
    pub struct ReplyHeader { pub xid: i32, pub zxid: i64, pub err: i32 }
}

jute_record! {
    /// getData.
    pub struct GetDataRequest { pub path: String, pub watch: bool }
}

jute_record! {
    /// setData; version -1 matches any.
    pub struct SetDataRequest { pub path: String, #[serde(with = "serde_bytes")] pub data: Option<Vec<u8>>, pub version: i32 }
}

jute_record! {
    /// reconfig; absent fields are null.
    pub struct ReconfigRequest {
        pub joining_servers: Option<String>,
        pub leaving_servers: Option<String>,
        pub new_members: Option<String>,
        pub cur_config_id: i64,
    }
}

jute_record! {
    /// setData reply (also check's and reconfig's shape).
    pub struct SetDataResponse { pub stat: Stat }
}

jute_record! {
    /// create, create2 and createContainer.
    pub struct CreateRequest {
        pub path: String,
        #[serde(with = "serde_bytes")]
        pub data: Option<Vec<u8>>,
        pub acl: Vec<Acl>,
        pub flags: i32,
    }
}

jute_record! {
    /// createTTL.
    pub struct CreateTtlRequest {
        pub path: String,
        #[serde(with = "serde_bytes")]
        pub data: Option<Vec<u8>>,
        pub acl: Vec<Acl>,
        pub flags: i32,
        pub ttl: i64,
    }
}

jute_record! {
    /// delete; version -1 matches any.
    pub struct DeleteRequest { pub path: String, pub version: i32 }
}

jute_record! {
    /// getChildren.
    pub struct GetChildrenRequest { pub path: String, pub watch: bool }
}

jute_record! {
    /// getAllChildrenNumber.
    pub struct GetAllChildrenNumberRequest { pub path: String }
}

jute_record! {
    /// getChildren2.
    pub struct GetChildren2Request { pub path: String, pub watch: bool }
}

jute_record! {
    /// check (a version assertion, inside multi).
    pub struct CheckVersionRequest { pub path: String, pub version: i32 }
}

jute_record! {
    /// sync.
    pub struct SyncRequest { pub path: String }
}

jute_record! {
    /// sync reply.
    pub struct SyncResponse { pub path: String }
}

jute_record! {
    /// getACL.
    pub struct GetAclRequest { pub path: String }
}

jute_record! {
    /// setACL; version is the aversion, -1 matches any.
    pub struct SetAclRequest { pub path: String, pub acl: Vec<Acl>, pub version: i32 }
}

jute_record! {
    /// setACL reply.
    pub struct SetAclResponse { pub stat: Stat }
}

jute_record! {
    /// addWatch.
    pub struct AddWatchRequest { pub path: String, pub mode: i32 }
}

jute_record! {
    /// Watch notification body (xid -1).
    pub struct WatcherEvent { pub r#type: i32, pub state: i32, pub path: String }
}

jute_record! {
    /// An error inside a multi reply, or addWatch's reply body.
    pub struct ErrorResponse { pub err: i32 }
}

jute_record! {
    /// create reply.
    pub struct CreateResponse { pub path: String }
}

jute_record! {
    /// create2/createTTL/createContainer reply.
    pub struct Create2Response { pub path: String, pub stat: Stat }
}

jute_record! {
    /// exists.
    pub struct ExistsRequest { pub path: String, pub watch: bool }
}

jute_record! {
    /// exists reply.
    pub struct ExistsResponse { pub stat: Stat }
}

jute_record! {
    /// getData reply; data is null for a node created with null data.
    pub struct GetDataResponse { #[serde(with = "serde_bytes")] pub data: Option<Vec<u8>>, pub stat: Stat }
}

jute_record! {
    /// getChildren reply.
    pub struct GetChildrenResponse { pub children: Vec<String> }
}

jute_record! {
    /// getAllChildrenNumber reply.
    pub struct GetAllChildrenNumberResponse { pub total_number: i32 }
}

jute_record! {
    /// getChildren2 reply.
    pub struct GetChildren2Response { pub children: Vec<String>, pub stat: Stat }
}

jute_record! {
    /// getACL reply.
    pub struct GetAclResponse { pub acl: Vec<Acl>, pub stat: Stat }
}

jute_record! {
    /// checkWatches.
    pub struct CheckWatchesRequest { pub path: String, pub r#type: i32 }
}

jute_record! {
    /// removeWatches.
    pub struct RemoveWatchesRequest { pub path: String, pub r#type: i32 }
}

jute_record! {
    /// getEphemerals; a null or "/" prefix lists them all.
    pub struct GetEphemeralsRequest { pub prefix_path: Option<String> }
}

jute_record! {
    /// getEphemerals reply.
    pub struct GetEphemeralsResponse { pub ephemerals: Vec<String> }
}

jute_record! {
    /// whoAmI reply.
    pub struct WhoAmIResponse { pub client_info: Vec<ClientInfo> }
}
