//! TLS on the client port (`secureClientPort`): a client with a certificate from the trust
//! store gets a session and works; without one, with a rogue one, or speaking plaintext to the
//! TLS port it gets nothing, and the server keeps serving. (kazoo with use_ssl=True and
//! zkCli.sh with client.secure=true: tests/integration/real_clients.py.)

mod common;

use common::free_port;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;
use zraft::jute::*;
use zraft::server::config::{ClientAuth, Config, TlsConfig};
use zraft::storage::RealDisk;

struct Pki {
    ca_pem: String,
    server_pem: String,
    client: (String, String),
    rogue: (String, String),
}

fn issue(name: &str, ca: Option<(&rcgen::Certificate, &KeyPair)>, sans: Vec<String>) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(sans).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    let cert = match ca {
        Some((c, k)) => p.signed_by(&key, c, k).unwrap(),
        None => {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.self_signed(&key).unwrap()
        }
    };
    (cert, key)
}

fn pki() -> Pki {
    let (ca, ca_key) = issue("zraft test CA", None, vec![]);
    let (server, server_key) = issue(
        "server",
        Some((&ca, &ca_key)),
        vec!["127.0.0.1".into(), "localhost".into()],
    );
    let (client, client_key) = issue("client", Some((&ca, &ca_key)), vec!["client".into()]);
    let (other_ca, other_key) = issue("another CA", None, vec![]);
    let (rogue, rogue_key) = issue("rogue", Some((&other_ca, &other_key)), vec!["rogue".into()]);
    Pki {
        ca_pem: ca.pem(),
        // ZooKeeper's PEM key store: the certificate chain and the private key in one file.
        server_pem: format!("{}{}", server.pem(), server_key.serialize_pem()),
        client: (client.pem(), client_key.serialize_pem()),
        rogue: (rogue.pem(), rogue_key.serialize_pem()),
    }
}

fn connector(pki: &Pki, identity: Option<&(String, String)>) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A session over `s`: handshake, then create `path` and read it back.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, path: &str) -> std::io::Result<Vec<u8>> {
    let resp = common::handshake(&mut s, 10_000).await?;
    assert_ne!(resp.session_id, 0, "a session");
    for (xid, request) in [
        (
            1,
            Request::Create(CreateRequest {
                path: path.into(),
                data: Some(b"over tls".to_vec()),
                acl: zraft::tree::acl::open_acl(),
                flags: 0,
            }),
        ),
        (
            2,
            Request::GetData(GetDataRequest {
                path: path.into(),
                watch: false,
            }),
        ),
    ] {
        s.write_all(&encode_frame(&RequestFrame { xid, request }.to_bytes()))
            .await?;
    }
    s.flush().await?;
    common::read_frame(&mut s).await?;
    let reply = common::read_frame(&mut s).await?;
    let frame = ReplyFrame::from_bytes(&reply, |_| Some(OpCode::GetData)).expect("a getData reply");
    assert_eq!(frame.header.err, 0);
    match frame.response {
        Response::GetData(g) => Ok(g.data.unwrap_or_default()),
        r => panic!("unexpected {r:?}"),
    }
}

#[test]
fn client_certificates_needed() {
    secure_client_port(ClientAuth::Need);
}

#[test]
fn client_certificates_wanted() {
    secure_client_port(ClientAuth::Want);
}

/// A server with TLS on its secure port and `ssl.clientAuth=auth`: a trusted client works; a
/// client without a certificate works only if certificates are wanted, not needed; one from
/// another CA never does; plaintext on the TLS port neither; the plaintext port keeps working.
fn secure_client_port(auth: ClientAuth) {
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("zraft-tls-{auth:?}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (key_store, trust_store) = (dir.join("server.pem"), dir.join("ca.pem"));
    std::fs::write(&key_store, &pki.server_pem).unwrap();
    std::fs::write(&trust_store, &pki.ca_pem).unwrap();
    let (plain, secure) = (free_port(), free_port());
    let cfg = Config {
        data_dir: dir.join("data").to_string_lossy().to_string(),
        client_port: plain,
        client_port_address: "127.0.0.1".into(),
        tls: Some(TlsConfig {
            port: secure,
            address: "127.0.0.1".into(),
            key_store: key_store.to_string_lossy().to_string(),
            trust_store: Some(trust_store.to_string_lossy().to_string()),
            client_auth: auth,
        }),
        raft_tick_ms: 20,
        prealloc_bytes: 1 << 20,
        ..Config::default()
    };
    let rt = common::runtime();
    rt.block_on(async move {
        let server = tokio::spawn(zraft::server::run(cfg, Box::new(RealDisk::new()), 1));
        let tcp = || async {
            for _ in 0..200 {
                if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", secure)).await {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("the secure port never opened")
        };
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        // A client with a certificate the trust store signed: a working session.
        let s = connector(&pki, Some(&pki.client))
            .connect(name.clone(), tcp().await)
            .await
            .unwrap();
        assert_eq!(session(s, "/tls").await.unwrap(), b"over tls");
        // No certificate: a session only if certificates are merely wanted.
        let r = match connector(&pki, None).connect(name.clone(), tcp().await).await {
            Ok(s) => session(s, "/no-cert").await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert_eq!(
            r.is_ok(),
            auth == ClientAuth::Want,
            "{auth:?} without a certificate: {r:?}"
        );
        // A certificate from another CA: never.
        let r = match connector(&pki, Some(&pki.rogue))
            .connect(name.clone(), tcp().await)
            .await
        {
            Ok(s) => session(s, "/never").await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(r.is_err(), "a client with an untrusted certificate got a session");
        // Plaintext jute sent to the TLS port: the handshake fails, nothing is created.
        assert!(session(tcp().await, "/plain-on-tls").await.is_err());
        // The plaintext port still serves, and sees what the TLS session wrote.
        let mut c = common::connect(&format!("127.0.0.1:{plain}")).await;
        assert_eq!(c.get("/tls").await.unwrap().0.as_deref(), Some(&b"over tls"[..]));
        assert!(c.get("/never").await.is_err() && c.get("/plain-on-tls").await.is_err());
        // And the secure port still serves a good client after the bad ones.
        let s = connector(&pki, Some(&pki.client))
            .connect(name, tcp().await)
            .await
            .unwrap();
        assert_eq!(session(s, "/tls2").await.unwrap(), b"over tls");
        server.abort();
    });
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_key_stores_stop_the_start_with_the_key_named() {
    let dir = std::env::temp_dir().join(format!("zraft-tls-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pki = pki();
    let only_cert = dir.join("cert-only.pem");
    std::fs::write(&only_cert, pki.client.0.as_bytes()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (store, want) in [
        (dir.join("missing.pem"), "ssl.keyStore.location"),
        (only_cert, "private key"),
    ] {
        let cfg = Config {
            data_dir: dir.join("data").to_string_lossy().to_string(),
            client_port: free_port(),
            client_port_address: "127.0.0.1".into(),
            tls: Some(TlsConfig {
                port: free_port(),
                address: "127.0.0.1".into(),
                key_store: store.to_string_lossy().to_string(),
                trust_store: None,
                client_auth: ClientAuth::None,
            }),
            prealloc_bytes: 1 << 20,
            ..Config::default()
        };
        let e = rt
            .block_on(zraft::server::run(cfg, Box::new(RealDisk::new()), 1))
            .expect_err("a bad key store must stop the start");
        assert!(e.to_string().contains(want), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
