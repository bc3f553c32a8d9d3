//! ACL checks and identities: world, auth, digest and ip schemes, and the super user.

use crate::jute::perms;
use crate::jute::{Acl, ErrorCode, Id};
use base64::Engine;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// The identities a session has proven (its ip, digests, and `super` if it knows the super
/// password), each once, in the order it proved them (an `auth` ACL expands in ZooKeeper's
/// hash-set order, `java_set_order`). The list travels in proposals, so every node agrees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthIds(Vec<Id>);

impl AuthIds {
    /// No identity.
    pub fn new() -> Self {
        AuthIds(Vec::new())
    }

    /// Adds an identity unless the session has it already; whether it was new.
    pub fn insert(&mut self, id: Id) -> bool {
        if self.0.contains(&id) {
            return false;
        }
        self.0.push(id);
        true
    }

    /// The identities in the order proved.
    pub fn iter(&self) -> std::slice::Iter<'_, Id> {
        self.0.iter()
    }
}

/// The identities as a list (what a proposal carries, and what ACL checks read).
impl std::ops::Deref for AuthIds {
    type Target = [Id];

    fn deref(&self) -> &[Id] {
        &self.0
    }
}

impl Extend<Id> for AuthIds {
    fn extend<I: IntoIterator<Item = Id>>(&mut self, ids: I) {
        for id in ids {
            self.insert(id);
        }
    }
}

impl FromIterator<Id> for AuthIds {
    fn from_iter<I: IntoIterator<Item = Id>>(ids: I) -> Self {
        let mut a = AuthIds::new();
        a.extend(ids);
        a
    }
}

/// `world:anyone` with every permission (`OPEN_ACL_UNSAFE`).
pub fn open_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::ALL,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

/// `world:anyone` with read only (`READ_ACL_UNSAFE`).
pub fn read_acl() -> Vec<Acl> {
    vec![Acl {
        perms: perms::READ,
        id: Id {
            scheme: "world".into(),
            id: "anyone".into(),
        },
    }]
}

/// The digest id for `user:password`: `user:base64(sha1("user:password"))`.
pub fn digest_id(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// The ids a successful `addAuth("digest", cred)` grants; `super_digest` is the configured
/// `DigestAuthenticationProvider.superDigest` (already hashed, as ZooKeeper takes it).
pub fn digest_auth(cred: &[u8], super_digest: Option<&str>) -> Result<Vec<Id>, ErrorCode> {
    let cred = std::str::from_utf8(cred).map_err(|_| ErrorCode::AuthFailed)?;
    let id = digest_id(cred);
    let mut ids = Vec::new();
    if super_digest == Some(id.as_str()) {
        ids.push(Id {
            scheme: "super".into(),
            id: String::new(),
        });
    }
    ids.push(Id {
        scheme: "digest".into(),
        id,
    });
    Ok(ids)
}

/// Java's `String.split(":")` length, which drops trailing empty parts.
fn java_split_len(s: &str, sep: char) -> usize {
    let parts: Vec<&str> = s.split(sep).collect();
    let mut n = parts.len();
    while n > 0 && parts[n - 1].is_empty() {
        n -= 1;
    }
    n
}

/// Parses an ip ACL id: an address with an optional `/bits` mask.
fn parse_ip_acl(id: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match id.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (id, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => {
            let b: i64 = b.parse().ok()?;
            if !(0..=max as i64).contains(&b) {
                return None;
            }
            b as u32
        }
    };
    Some((addr, bits))
}

fn ip_matches(client: &str, acl_id: &str) -> bool {
    let (Some((net, bits)), Ok(client)) = (parse_ip_acl(acl_id), client.parse::<IpAddr>()) else {
        return false;
    };
    match (net, client) {
        (IpAddr::V4(n), IpAddr::V4(c)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(n) & mask == u32::from(c) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(c)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(n) & mask == u128::from(c) & mask
        }
        _ => false,
    }
}

/// Whether a scheme's provider accepts this id in an ACL.
fn is_valid_id(id: &Id) -> bool {
    match id.scheme.as_str() {
        "digest" => java_split_len(&id.id, ':') == 2,
        "ip" => parse_ip_acl(&id.id).is_some(),
        _ => false,
    }
}

/// Validates and expands an ACL list as `PrepRequestProcessor.fixupACL`: duplicates removed,
/// `auth` replaced by the session's authenticated (digest) ids (`auth`: distinct, in the order
/// proved, as `AuthIds` keeps them).
pub fn fixup_acl(auth: &[Id], acl: &[Acl]) -> Result<Vec<Acl>, ErrorCode> {
    let mut uniq: Vec<&Acl> = Vec::new();
    for a in acl {
        if !uniq.contains(&a) {
            uniq.push(a);
        }
    }
    if uniq.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::new();
    for a in uniq {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            out.push(a.clone());
        } else if a.id.scheme == "auth" {
            // Only providers that authenticate (digest) count; ip does not.
            let mut any = false;
            for cid in java_set_order(auth).into_iter().filter(|i| i.scheme == "digest") {
                any = true;
                out.push(Acl {
                    perms: a.perms,
                    id: cid.clone(),
                });
            }
            if !any {
                return Err(ErrorCode::InvalidAcl);
            }
        } else if is_valid_id(&a.id) {
            out.push(a.clone());
        } else {
            return Err(ErrorCode::InvalidAcl);
        }
    }
    Ok(out)
}

/// Java's `String.hashCode`.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The jute-generated `Id.hashCode`.
fn java_id_hash(id: &Id) -> i32 {
    let h = 17i32.wrapping_mul(37).wrapping_add(java_string_hash(&id.scheme));
    h.wrapping_mul(37).wrapping_add(java_string_hash(&id.id))
}

/// The order ZooKeeper iterates a connection's ids in: they sit in a Java hash set, so bucket
/// by bucket (hash spread as HashMap does, the table doubling past three quarters full), in
/// the order added within a bucket. `auth` ACLs expand in this order (measured: alice then
/// bob gives bob first; a1..a5 gives a3 a4 a1 a2 a5).
fn java_set_order(auth: &[Id]) -> Vec<&Id> {
    let n = auth.len();
    let mut table = 16usize;
    while n > table / 4 * 3 {
        table *= 2;
    }
    let mut v: Vec<(usize, usize, &Id)> = auth
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let h = java_id_hash(id);
            let spread = h ^ ((h as u32) >> 16) as i32;
            (spread as u32 as usize & (table - 1), i, id)
        })
        .collect();
    v.sort_by_key(|&(bucket, i, _)| (bucket, i));
    v.into_iter().map(|(_, _, id)| id).collect()
}

/// `ZooKeeperServer.checkACL`: ok if any entry granting one of `perm`'s bits matches one of
/// the session's ids; `super` passes everything; an empty ACL allows all.
pub fn check_acl(acl: &[Acl], perm: i32, auth: &[Id]) -> Result<(), ErrorCode> {
    if acl.is_empty() || auth.iter().any(|i| i.scheme == "super") {
        return Ok(());
    }
    for a in acl {
        if a.perms & perm == 0 {
            continue;
        }
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return Ok(());
        }
        for mine in auth.iter().filter(|i| i.scheme == a.id.scheme) {
            let matched = match a.id.scheme.as_str() {
                "digest" => mine.id == a.id.id,
                "ip" => ip_matches(&mine.id, &a.id.id),
                _ => false,
            };
            if matched {
                return Ok(());
            }
        }
    }
    Err(ErrorCode::NoAuth)
}

/// getACL's view for a session without ADMIN: digest hashes are replaced by "x".
pub fn redact(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            let mut a = a.clone();
            if a.id.scheme == "digest" {
                let user = a.id.id.split(':').next().unwrap_or("").to_string();
                a.id.id = format!("{user}:x");
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[(&str, &str)]) -> AuthIds {
        v.iter()
            .map(|(s, i)| Id {
                scheme: s.to_string(),
                id: i.to_string(),
            })
            .collect()
    }
    fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id {
                scheme: scheme.into(),
                id: id.into(),
            },
        }
    }

    /// Each row: the digests a session authenticated with (password "pw"), in order, and the
    /// order ZooKeeper 3.8.0 stored them for an `auth` ACL (measured with difftest's client).
    #[test]
    fn auth_acl_expands_in_zookeepers_hash_set_order() {
        let rows: [(&[&str], &[&str]); 5] = [
            (&["alice", "bob"], &["bob", "alice"]),
            (&["bob", "alice"], &["bob", "alice"]),
            (&["carol", "alice", "bob"], &["bob", "carol", "alice"]),
            (&["a1", "a2", "a3", "a4", "a5"], &["a3", "a4", "a1", "a2", "a5"]),
            (&["a5", "a4", "a3", "a2", "a1"], &["a4", "a3", "a1", "a2", "a5"]),
        ];
        let acl = vec![Acl {
            perms: perms::ALL,
            id: Id {
                scheme: "auth".into(),
                id: "".into(),
            },
        }];
        for (users, want) in rows {
            let mut who: AuthIds = ids(&[("ip", "127.0.0.1")]);
            for u in users {
                who.extend(digest_auth(format!("{u}:pw").as_bytes(), None).unwrap());
            }
            who.extend(digest_auth(format!("{}:pw", users[0]).as_bytes(), None).unwrap());
            assert_eq!(who.iter().count(), users.len() + 1, "an id proved twice is kept once");
            let got: Vec<String> = fixup_acl(&who, &acl)
                .unwrap()
                .into_iter()
                .map(|a| a.id.id.split(':').next().unwrap().to_string())
                .collect();
            assert_eq!(got, want.to_vec(), "{users:?}");
        }
    }

    #[test]
    fn digest_matches_zookeeper() {
        // Values printed by ZooKeeper 3.8.0's `DigestAuthenticationProvider super:secret alice:pw`.
        assert_eq!(digest_id("super:secret"), "super:lK75jTNcA+U9vtVEw5vB51mj/w4=");
        assert_eq!(digest_id("alice:pw"), "alice:V55/p2T0OpjQ+low3NVAH4aLvm0=");
        let sup = Some("super:lK75jTNcA+U9vtVEw5vB51mj/w4=");
        let ids = digest_auth(b"super:secret", sup).unwrap();
        assert_eq!(ids[0].scheme, "super");
        assert_eq!(digest_auth(b"alice:pw", sup).unwrap().len(), 1);
    }

    #[test]
    fn check_table() {
        let anon = ids(&[("ip", "127.0.0.1")]);
        let alice = ids(&[("ip", "127.0.0.1"), ("digest", &digest_id("alice:pw"))]);
        let sup = ids(&[("super", "")]);
        let d = digest_id("alice:pw");
        let cases: Vec<(Vec<Acl>, i32, &AuthIds, bool)> = vec![
            (open_acl(), perms::WRITE, &anon, true),
            (read_acl(), perms::WRITE, &anon, false),
            (read_acl(), perms::READ, &anon, true),
            (vec![acl(31, "digest", &d)], perms::READ, &anon, false),
            (vec![acl(31, "digest", &d)], perms::READ, &alice, true),
            (vec![acl(31, "ip", "127.0.0.0/8")], perms::READ, &anon, true),
            (vec![acl(31, "ip", "10.0.0.0/8")], perms::READ, &anon, false),
            (vec![acl(31, "ip", "10.0.0.0/8")], perms::READ, &sup, true),
            (
                vec![acl(perms::READ, "digest", &d)],
                perms::READ | perms::ADMIN,
                &alice,
                true,
            ),
            (vec![], perms::ADMIN, &anon, true),
        ];
        for (i, (a, p, who, ok)) in cases.into_iter().enumerate() {
            assert_eq!(check_acl(&a, p, who).is_ok(), ok, "case {i}");
        }
    }

    #[test]
    fn fixup_table() {
        let anon = ids(&[("ip", "127.0.0.1")]);
        let alice = ids(&[("ip", "127.0.0.1"), ("digest", "alice:h")]);
        assert_eq!(fixup_acl(&anon, &[]), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup_acl(&anon, &[acl(31, "world", "someone")]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(fixup_acl(&anon, &[acl(31, "auth", "")]), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup_acl(&alice, &[acl(31, "auth", "")]),
            Ok(vec![acl(31, "digest", "alice:h")])
        );
        assert_eq!(
            fixup_acl(&anon, &[acl(31, "digest", "nocolon")]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(fixup_acl(&anon, &[acl(31, "digest", "a:")]), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup_acl(&anon, &[acl(31, "ip", "300.1.1.1")]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup_acl(&anon, &[acl(31, "ip", "10.0.0.0/33")]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(fixup_acl(&anon, &[acl(31, "x", "y")]), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup_acl(&anon, &[open_acl()[0].clone(), open_acl()[0].clone()]),
            Ok(open_acl())
        );
    }
}
