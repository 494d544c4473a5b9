//! TLS on the listeners: a certificate chain and its private key, read from
//! PEM files, served through rustls on ring, and replaced without a
//! restart.
//!
//! [`Certificates`] holds the pair in use and answers every handshake with
//! it ([`ResolvesServerCert`]), so a new pair applies to the next
//! connection while open ones keep theirs. It is read again on demand
//! ([`Certificates::reload`], on SIGHUP) and when either file's modification
//! time or size changes ([`Certificates::reload_if_changed`], polled). A
//! pair that cannot be read, parsed or matched is refused as a whole and the
//! pair in use stays: a half-written renewal never takes the listeners down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::ServerConfig;
use rustls::crypto::ring as ring_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a PEM certificate chain: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "{path} holds no usable private key: expected a PEM PKCS#8, RSA or SEC1 (EC) key ({reason})"
    )]
    BadKey { path: PathBuf, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

/// When the files were last seen: modification time and size of each.
type Stamp = [(Option<SystemTime>, u64); 2];

/// The served certificate chain and key, replaceable while serving.
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamp at the last attempt, good or bad, so that a broken
    /// pair is reported once, not at every poll.
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Reads and checks the pair; refused with the reason if either file is
    /// unreadable, not PEM, or the key does not match the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>, TlsError> {
        let seen = stamp(cert, key);
        let pair = read_pair(cert, key)?;
        Ok(Arc::new(Certificates {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(pair),
            seen: Mutex::new(seen),
        }))
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// Reads the pair again and serves it from the next handshake on. On
    /// failure the pair in use stays and the reason is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        let seen = stamp(&self.cert, &self.key);
        if let Ok(mut s) = self.seen.lock() {
            *s = seen;
        }
        let pair = read_pair(&self.cert, &self.key)?;
        if let Ok(mut current) = self.current.write() {
            *current = pair;
        }
        Ok(())
    }

    /// Reloads if either file changed (modification time or size) since
    /// the last attempt: `Ok(true)` if a new pair is served, `Ok(false)` if
    /// nothing changed. A failure is returned once per change.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.cert, &self.key);
        let changed = match self.seen.lock() {
            Ok(seen) => *seen != now,
            Err(_) => false,
        };
        if !changed {
            return Ok(false);
        }
        self.reload().map(|()| true)
    }

    /// A rustls server configuration (ring, TLS 1.2 and 1.3, HTTP/1.1)
    /// that answers with whatever pair is current.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(ring_provider::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| TlsError::Config(e.to_string()))?
                .with_no_client_auth()
                .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.clone())
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [one(cert), one(key)]
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The chain (leaf first) and key of one pair, checked to belong together.
fn read_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("key", key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let signing = ring_provider::sign::any_supported_type(&der).map_err(|e| TlsError::BadKey {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) => {}
        // A key type whose public half rustls cannot derive is not a
        // mismatch; the handshake itself would fail on a wrong one.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(TlsError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            });
        }
    }
    Ok(Arc::new(pair))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::process::Command;

    /// Makes a self-signed pair with the openssl command, the key in the
    /// form `kind` asks for; returns (cert, key).
    fn openssl_pair(dir: &Path, name: &str, kind: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let k = key.to_str().unwrap();
        match kind {
            "rsa" => run(&["genrsa", "-traditional", "-out", k, "2048"]),
            "sec1" => run(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                k,
            ]),
            "pkcs8" => run(&["genpkey", "-algorithm", "ed25519", "-out", k]),
            _ => unreachable!(),
        }
        run(&[
            "req",
            "-x509",
            "-key",
            k,
            "-out",
            cert.to_str().unwrap(),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ]);
        (cert, key)
    }

    fn served(c: &Certificates) -> Vec<u8> {
        c.current.read().unwrap().cert[0].to_vec()
    }

    #[test]
    fn rsa_sec1_and_pkcs8_keys_load_and_their_pem_headers_are_the_expected_ones() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, header) in [
            ("rsa", "BEGIN RSA PRIVATE KEY"),
            ("sec1", "BEGIN EC PRIVATE KEY"),
            ("pkcs8", "BEGIN PRIVATE KEY"),
        ] {
            let (cert, key) = openssl_pair(dir.path(), kind, kind);
            assert!(
                std::fs::read_to_string(&key).unwrap().contains(header),
                "{kind}"
            );
            let c = Certificates::load(&cert, &key).unwrap_or_else(|e| panic!("{kind}: {e}"));
            c.server_config().unwrap();
        }
    }

    #[test]
    fn a_failed_reload_keeps_the_pair_in_use_and_a_change_is_seen_once() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = openssl_pair(dir.path(), "a", "sec1");
        let (cert_b, key_b) = openssl_pair(dir.path(), "b", "sec1");
        let c = Certificates::load(&cert, &key).unwrap();
        let first = served(&c);
        assert!(!c.reload_if_changed().unwrap(), "nothing changed");

        // The certificate replaced, the key not yet: refused, the old pair stays.
        std::fs::copy(&cert_b, &cert).unwrap();
        let err = c.reload().unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        assert_eq!(served(&c), first);
        // Once the key follows, the next check serves the new pair.
        std::fs::copy(&key_b, &key).unwrap();
        assert!(c.reload_if_changed().unwrap());
        assert_eq!(served(&c), served_of(&cert_b));
        assert!(!c.reload_if_changed().unwrap());

        // Garbage is reported once per change, not at every check.
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            c.reload_if_changed(),
            Err(TlsError::BadCertificate { .. })
        ));
        assert!(!c.reload_if_changed().unwrap());
        assert_eq!(served(&c), served_of(&cert_b));
        std::fs::copy(&cert_b, &cert).unwrap();
        std::fs::write(&key, "no key here").unwrap();
        assert!(matches!(c.reload(), Err(TlsError::BadKey { .. })));
        assert_eq!(served(&c), served_of(&cert_b));
    }

    fn served_of(cert: &Path) -> Vec<u8> {
        CertificateDer::pem_slice_iter(&std::fs::read(cert).unwrap())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }
}
