//! TLS on the client port (real builds only): a rustls acceptor built from ZooKeeper-style
//! PEM key and trust stores (`ssl.keyStore.location`, `ssl.trustStore.location`).

use super::config::{ClientAuth, TlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
pub use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {path}: {msg}")]
    File {
        key: &'static str,
        path: String,
        msg: String,
    },
    #[error("TLS setup: {0}")]
    Setup(String),
}

fn certs(key: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |msg: String| TlsError::File {
        key,
        path: path.into(),
        msg,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err("holds no PEM CERTIFICATE".into()));
    }
    Ok(certs)
}

/// The acceptor for `secureClientPort`; fails on unreadable files or keys that do not match.
pub fn acceptor(t: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs("ssl.keyStore.location", &t.key_store)?;
    let key = PrivateKeyDer::from_pem_file(&t.key_store).map_err(|e| TlsError::File {
        key: "ssl.keyStore.location",
        path: t.key_store.clone(),
        msg: format!("no unencrypted PEM private key: {e}"),
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match (t.client_auth, &t.trust_store) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (auth, Some(path)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("ssl.trustStore.location", path)? {
                roots.add(c).map_err(|e| TlsError::File {
                    key: "ssl.trustStore.location",
                    path: path.clone(),
                    msg: e.to_string(),
                })?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if auth == ClientAuth::Want {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| TlsError::Setup(e.to_string()))?)
        }
        // The configuration parser requires a trust store for need and want.
        (_, None) => {
            return Err(TlsError::Setup(
                "client certificates need ssl.trustStore.location".into(),
            ))
        }
    };
    let cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Setup(format!("ssl.keyStore.location {}: {e}", t.key_store)))?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}
