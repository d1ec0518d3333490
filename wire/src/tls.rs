//! The one identity (certificate) and the TLS 1.3 configurations every protocol
//! uses: same certificate, same cipher-suite preference, same key-exchange groups
//! for TCP+TLS and QUIC, so a comparison is like with like.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::transport::{TcpFastStart, Transport};

pub const ALPN_H1: &[u8] = b"http/1.1";
pub const ALPN_H1_0: &[u8] = b"http/1.0";
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_H3: &[u8] = b"h3";

/// TLS set-up failures, naming the file or the step.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCert { path: String },
    #[error("{path}: no PEM private key found ({detail})")]
    NoKey { path: String, detail: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The crypto provider of every endpoint: ring, TLS 1.3 suites in a fixed order
/// (AES-128-GCM first: it is also QUIC's Initial suite), default groups.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// A server identity: certificate chain, key, and the PEM a client must trust.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// PEM of the certificates a client should trust to accept `chain`.
    pub trust_pem: String,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            trust_pem: self.trust_pem.clone(),
        }
    }
}

impl Identity {
    /// A fresh CA and a server certificate it signs, with SANs localhost,
    /// 127.0.0.1, ::1 and `extra_sans` (the addresses served). The CA and the leaf
    /// are both in `trust_pem`: strict verifiers (Python's, OpenSSL's) want a CA
    /// as trust anchor, lenient ones accept the leaf itself.
    pub fn generate(extra_sans: &[String]) -> Result<Identity, TlsError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "quicbench test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().map_err(gen)?;
        let ca_cert = ca_params.self_signed(&ca_key).map_err(gen)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let mut sans = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        for s in extra_sans {
            if !sans.contains(s) {
                sans.push(s.clone());
            }
        }
        let mut leaf_params = CertificateParams::new(sans).map_err(gen)?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "quicbench server");
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().map_err(gen)?;
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(gen)?;

        let key = PrivateKeyDer::try_from(leaf_key.serialize_der())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(Identity {
            chain: vec![leaf.der().clone(), ca_cert.der().clone()],
            key,
            trust_pem: format!("{}{}", ca_cert.pem(), leaf.pem()),
        })
    }

    /// Load a PEM chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Identity, TlsError> {
        let pem = std::fs::read(cert_path).map_err(|source| TlsError::Read {
            path: cert_path.display().to_string(),
            source,
        })?;
        let chain = certs_from_pem(&pem);
        if chain.is_empty() {
            return Err(TlsError::NoCert {
                path: cert_path.display().to_string(),
            });
        }
        let key_pem = std::fs::read(key_path).map_err(|source| TlsError::Read {
            path: key_path.display().to_string(),
            source,
        })?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
            path: key_path.display().to_string(),
            detail: e.to_string(),
        })?;
        Ok(Identity {
            chain,
            key,
            trust_pem: String::from_utf8_lossy(&pem).into_owned(),
        })
    }

    /// Write the PEM a client must trust (`--cert-out`).
    pub fn write_trust(&self, path: &Path) -> Result<(), TlsError> {
        std::fs::write(path, &self.trust_pem).map_err(|source| TlsError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Write the private key as PEM (PKCS#8), for foreign servers in interop tests
    /// that must present the same certificate (e.g. aioquic). Mode 0600.
    pub fn write_key(&self, path: &Path) -> Result<(), TlsError> {
        let der = match &self.key {
            PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
            _ => {
                return Err(TlsError::Config(
                    "only PKCS#8 keys can be written as PEM".into(),
                ))
            }
        };
        let pair = rcgen::KeyPair::try_from(der.as_slice())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(pair.serialize_pem().as_bytes())
        };
        write().map_err(|source| TlsError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Write the certificate chain (leaf first) as PEM, for foreign servers
    /// (docs/endpoints.md: `QB_CERT`).
    pub fn write_chain(&self, path: &Path) -> Result<(), TlsError> {
        let blocks: Vec<pem::Pem> = self
            .chain
            .iter()
            .map(|c| pem::Pem::new("CERTIFICATE", c.as_ref().to_vec()))
            .collect();
        std::fs::write(path, pem::encode_many(&blocks)).map_err(|source| TlsError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// The certificates to put in a client's root store.
    pub fn trust_anchors(&self) -> Vec<CertificateDer<'static>> {
        certs_from_pem(self.trust_pem.as_bytes())
    }
}

/// Every certificate in a PEM blob (other sections ignored).
pub fn certs_from_pem(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// Read a PEM file of trusted certificates (`--cacert`).
pub fn load_trust(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let certs = certs_from_pem(&pem);
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// Server TLS config: TLS 1.3 only, session tickets, key log (SSLKEYLOGFILE).
/// `quic` allows 0-RTT (quinn requires `max_early_data_size = u32::MAX`; rustls
/// then needs stateful, single-use tickets instead of a ticketer); over
/// TCP early data stays off here (hyper has no 0-RTT replay protection), so
/// TCP resumption is 1-RTT TLS resumption; [`tcp_server_config`] turns it on
/// for the handshake cells that measure it.
pub fn server_config(
    id: &Identity,
    alpn: &[&[u8]],
    quic: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .map_err(|e| {
            TlsError::Config(format!("certificate/key mismatch or unsupported key: {e}"))
        })?;
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    cfg.send_tls13_tickets = 4;
    cfg.key_log = Arc::new(rustls::KeyLogFile::new());
    if quic {
        // rustls offers 0-RTT only with stateful resumption (RFC 8446 §8.1: a
        // server-side cache whose entries are single use is the anti-replay
        // defence), so no ticketer here: tickets are ids into this cache.
        // 4 tickets per connection: room for a few thousand clients.
        cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(16_384);
        cfg.max_early_data_size = u32::MAX;
    } else {
        cfg.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
    }
    Ok(cfg)
}

/// The TCP (TLS-over-TCP) server config for a cell's [`TcpFastStart`]: as
/// [`server_config`], and with early data on (`start.early_data` > 0) the
/// server accepts that many bytes of TLS 1.3 early data, with the same
/// stateful single-use tickets as QUIC's 0-RTT (rustls's anti-replay; it
/// refuses early data with stateless tickets), and sends its response before
/// the client's Finished (0.5-RTT data), as a 0-RTT server must to answer in
/// one round trip. Off: 1-RTT resumption with stateless tickets.
pub fn tcp_server_config(
    id: &Identity,
    alpn: &[&[u8]],
    start: TcpFastStart,
) -> Result<rustls::ServerConfig, TlsError> {
    if start.early_data == 0 {
        return server_config(id, alpn, false);
    }
    let mut cfg = server_config(id, alpn, true)?;
    cfg.max_early_data_size = start.early_data;
    cfg.send_half_rtt_data = true;
    Ok(cfg)
}

/// Client TLS config trusting `anchors`: TLS 1.3 only, in-memory resumption
/// store (shared by every connection made with this config), key log.
/// `early_data` enables 0-RTT (QUIC only).
pub fn client_config(
    anchors: &[CertificateDer<'static>],
    alpn: &[&[u8]],
    early_data: bool,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(anchors.iter().cloned());
    if added == 0 {
        return Err(TlsError::Config("no usable trusted certificate".into()));
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    cfg.enable_early_data = early_data;
    cfg.key_log = Arc::new(rustls::KeyLogFile::new());
    Ok(cfg)
}

/// A quinn server config: TLS as [`server_config`] with ALPN h3 and 0-RTT,
/// migration allowed, transport settings `t` (controller, packet size).
pub fn quic_server_config(id: &Identity, t: Transport) -> Result<quinn::ServerConfig, TlsError> {
    let tls = server_config(id, &[ALPN_H3], true)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Config(format!("QUIC server TLS: {e}")))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(t.quic()));
    cfg.migration(true);
    Ok(cfg)
}

/// A quinn client config over a TLS client config (keep the same `Arc` across
/// connections to resume sessions and use 0-RTT).
pub fn quic_client_config(
    tls: Arc<rustls::ClientConfig>,
    t: Transport,
) -> Result<quinn::ClientConfig, TlsError> {
    quic_client_config_with_qlog(tls, t, None, None)
}

/// As [`quic_client_config`], writing a qlog trace (JSON-SEQ) of the
/// connection to `qlog` (quinn's `qlog` feature). With `keep_alive`, the
/// client pings after that long without hearing from the server (quinn's
/// keep-alive timer restarts on every packet received): how a downloading
/// client, which otherwise sends only in reply, notices a silent path (after
/// a NAT rebinding the server's packets go to the old mapping), as the TCP
/// clients notice a stalled response (`ClientOptions::stall_timeout`).
pub fn quic_client_config_with_qlog(
    tls: Arc<rustls::ClientConfig>,
    transport: Transport,
    qlog: Option<Box<dyn std::io::Write + Send + Sync>>,
    keep_alive: Option<std::time::Duration>,
) -> Result<quinn::ClientConfig, TlsError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TlsError::Config(format!("QUIC client TLS: {e}")))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let mut t = transport.quic_client();
    t.keep_alive_interval(keep_alive);
    if let Some(w) = qlog {
        let mut q = quinn::QlogConfig::default();
        q.writer(w).title(Some("quicbench client".into()));
        t.qlog_stream(q.into_stream());
    }
    cfg.transport_config(Arc::new(t));
    Ok(cfg)
}

/// A TLS key log (NSS SSLKEYLOGFILE format) written to a given file, so a
/// capture of one cell can be decrypted by Wireshark/tshark. rustls's own
/// `KeyLogFile` only reads the SSLKEYLOGFILE variable of the whole process.
#[derive(Debug)]
pub struct FileKeyLog {
    file: std::sync::Mutex<std::fs::File>,
}

impl FileKeyLog {
    /// Append to `path` (created if missing).
    pub fn open(path: &Path) -> Result<FileKeyLog, TlsError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TlsError::Write {
                path: path.display().to_string(),
                source,
            })?;
        Ok(FileKeyLog {
            file: std::sync::Mutex::new(file),
        })
    }
}

impl rustls::KeyLog for FileKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        use std::fmt::Write as _;
        use std::io::Write as _;
        let mut line =
            String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
        line.push_str(label);
        line.push(' ');
        for b in client_random {
            let _ = write!(line, "{b:02x}");
        }
        line.push(' ');
        for b in secret {
            let _ = write!(line, "{b:02x}");
        }
        line.push('\n');
        if let Ok(mut f) = self.file.lock() {
            // A key log is a debugging aid: a failed write must not fail a handshake.
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Name of a negotiated cipher suite, e.g. "TLS13_AES_128_GCM_SHA256".
pub fn suite_name(s: rustls::SupportedCipherSuite) -> String {
    format!("{:?}", s.suite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_builds_every_config_and_round_trips_pem() {
        let id = Identity::generate(&["198.18.1.1".into()]).unwrap();
        assert_eq!(id.chain.len(), 2);
        assert!(id.trust_anchors().len() >= 2);
        server_config(&id, &[ALPN_H2, ALPN_H1], false).unwrap();
        let off = tcp_server_config(&id, &[ALPN_H2], TcpFastStart::default()).unwrap();
        assert_eq!(off.max_early_data_size, 0);
        assert!(off.ticketer.enabled());
        let on = tcp_server_config(&id, &[ALPN_H2], TcpFastStart::new(true, true)).unwrap();
        assert_eq!(
            on.max_early_data_size,
            crate::transport::TCP_EARLY_DATA_SIZE
        );
        // rustls offers early data only without a stateless ticketer.
        assert!(!on.ticketer.enabled() && on.send_half_rtt_data);
        quic_server_config(&id, Transport::new(crate::CongestionControl::Bbr)).unwrap();
        let c = client_config(&id.trust_anchors(), &[ALPN_H3], true).unwrap();
        quic_client_config(Arc::new(c), Transport::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        id.write_trust(&p).unwrap();
        assert_eq!(load_trust(&p).unwrap().len(), id.trust_anchors().len());
        let k = dir.path().join("key.pem");
        id.write_key(&k).unwrap();
        let back = Identity::load(&p, &k).unwrap();
        assert_eq!(back.key.secret_der(), id.key.secret_der());
    }

    #[test]
    fn file_key_log_writes_nss_lines() {
        use rustls::KeyLog as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.log");
        let k = FileKeyLog::open(&p).unwrap();
        k.log("CLIENT_TRAFFIC_SECRET_0", &[1, 2], &[0xab]);
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "CLIENT_TRAFFIC_SECRET_0 0102 ab\n"
        );
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.pem");
        std::fs::write(&p, "nothing here").unwrap();
        let e = load_trust(&p).unwrap_err().to_string();
        assert!(e.contains("empty.pem"), "{e}");
        let e = Identity::load(&dir.path().join("missing.pem"), &p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
