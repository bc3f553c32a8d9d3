//! Reads served from the local tree (ZooKeeper's FinalRequestProcessor read cases).

use super::acl::{check_acl, redact, AuthIds};
use super::data_tree::DataTree;
use crate::jute::*;

impl DataTree {
    /// Answers a read request; `Err` is the reply's error code. Watch registration is the
    /// server's business, not the tree's.
    pub fn read(&self, session_id: i64, auth: &AuthIds, req: &Request) -> Result<Response, ErrorCode> {
        match req {
            Request::Exists(r) => {
                if r.path.contains('\0') {
                    return Err(ErrorCode::BadArguments);
                }
                let n = self.node(&r.path).ok_or(ErrorCode::NoNode)?;
                Ok(Response::Exists(ExistsResponse { stat: n.stat() }))
            }
            Request::GetData(r) => {
                let (data, stat) = self.get_data(auth, &r.path)?;
                Ok(Response::GetData(GetDataResponse { data, stat }))
            }
            Request::GetChildren(r) => Ok(Response::GetChildren(GetChildrenResponse {
                children: self.get_children(auth, &r.path)?.0,
            })),
            Request::GetChildren2(r) => {
                let (children, stat) = self.get_children(auth, &r.path)?;
                Ok(Response::GetChildren2(GetChildren2Response { children, stat }))
            }
            Request::GetAllChildrenNumber(r) => {
                let n = self.node(&r.path).ok_or(ErrorCode::NoNode)?;
                check_acl(n.acl(), perms::READ, auth)?;
                Ok(Response::GetAllChildrenNumber(GetAllChildrenNumberResponse {
                    total_number: self.descendant_count(&r.path) as i32,
                }))
            }
            Request::GetAcl(r) => {
                let n = self.node(&r.path).ok_or(ErrorCode::NoNode)?;
                check_acl(n.acl(), perms::READ | perms::ADMIN, auth)?;
                let acl = match check_acl(n.acl(), perms::ADMIN, auth) {
                    Ok(()) => n.acl().to_vec(),
                    Err(_) => redact(n.acl()),
                };
                Ok(Response::GetAcl(GetAclResponse { acl, stat: n.stat() }))
            }
            Request::GetEphemerals(r) => {
                let prefix = r.prefix_path.as_deref().map(str::trim).unwrap_or("");
                let ephemerals = self
                    .ephemerals_of(session_id)
                    .filter(|p| {
                        prefix.is_empty() || prefix == "/" || p.starts_with(r.prefix_path.as_deref().unwrap_or(""))
                    })
                    .cloned()
                    .collect();
                Ok(Response::GetEphemerals(GetEphemeralsResponse { ephemerals }))
            }
            Request::MultiRead(m) => {
                let results = m
                    .ops
                    .iter()
                    .map(|op| match op {
                        MultiOp::GetData(r) => match self.get_data(auth, &r.path) {
                            Ok((d, s)) => OpResult::GetData(d, s),
                            Err(e) => OpResult::Error(e),
                        },
                        MultiOp::GetChildren(r) => match self.get_children(auth, &r.path) {
                            Ok((c, _)) => OpResult::GetChildren(c),
                            Err(e) => OpResult::Error(e),
                        },
                        _ => OpResult::Error(ErrorCode::BadArguments),
                    })
                    .collect();
                Ok(Response::Multi(results))
            }
            Request::Sync(r) => Ok(Response::Sync(SyncResponse { path: r.path.clone() })),
            Request::WhoAmI => Ok(Response::WhoAmI(WhoAmIResponse {
                client_info: auth
                    .iter()
                    .map(|id| ClientInfo {
                        auth_scheme: id.scheme.clone(),
                        user: if id.scheme == "digest" {
                            id.id.split(':').next().unwrap_or("").to_string()
                        } else {
                            id.id.clone()
                        },
                    })
                    .collect(),
            })),
            _ => Err(ErrorCode::Unimplemented),
        }
    }

    fn get_data(&self, auth: &AuthIds, path: &str) -> Result<(Option<Vec<u8>>, Stat), ErrorCode> {
        let n = self.node(path).ok_or(ErrorCode::NoNode)?;
        check_acl(n.acl(), perms::READ, auth)?;
        Ok((n.data().map(<[u8]>::to_vec), n.stat()))
    }

    fn get_children(&self, auth: &AuthIds, path: &str) -> Result<(Vec<String>, Stat), ErrorCode> {
        let n = self.node(path).ok_or(ErrorCode::NoNode)?;
        check_acl(n.acl(), perms::READ, auth)?;
        Ok((n.children().map(str::to_string).collect(), n.stat()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads of the empty path answer with the root, as ZooKeeper 3.8 does (measured); a
    /// relative path is simply not found.
    #[test]
    fn the_empty_path_reads_the_root() {
        let t = DataTree::new();
        let auth = AuthIds::new();
        let root = t.read(
            1,
            &auth,
            &Request::Exists(ExistsRequest {
                path: "/".into(),
                watch: false,
            }),
        );
        let empty = t.read(
            1,
            &auth,
            &Request::Exists(ExistsRequest {
                path: "".into(),
                watch: false,
            }),
        );
        assert_eq!(root, empty);
        let kids = |p: &str| {
            t.read(
                1,
                &auth,
                &Request::GetChildren(GetChildrenRequest {
                    path: p.into(),
                    watch: false,
                }),
            )
        };
        assert_eq!(kids(""), kids("/"));
        assert_eq!(kids("zookeeper"), Err(ErrorCode::NoNode));
    }
}
