//! TLS to `https://` targets: rustls (with the *ring* provider) over the
//! same pooled, tick-driven connections as plain http (`stream`).
//!
//! * Trust: the platform's root certificates (the system store, as curl
//!   and the service's own clients use, updated by the OS and holding the
//!   organisation's private CAs), or, per target, the certificates of a CA
//!   file *instead* of them.
//! * The URL's host is the SNI name and the name checked against the
//!   certificate (an IP address is checked against the certificate's IP
//!   addresses and sends no SNI).
//! * `insecure_skip_verify`: the certificate and name are not checked
//!   (handshake signatures still are), for test setups only; the target
//!   warns at start.
//! * A failed handshake is counted `tls_certificate` when the certificate
//!   was refused, `tls_handshake` otherwise, and sets the address aside
//!   like a refused connect (`endpoints`).
//! * ALPN offers `http/1.1` only: the agent speaks HTTP/1.1. Sessions are
//!   resumed from rustls' in-memory cache, so a replaced connection costs
//!   less than a full handshake.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::{info, warn};

use super::stats::DropReason;
use super::stream::ShadowStream;

/// How an https target's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub roots: TlsRoots,
    /// `false` (`insecure_skip_verify`): any certificate, for any name.
    pub verify: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            roots: TlsRoots::System,
            verify: true,
        }
    }
}

/// The trust anchors of an https target.
#[derive(Clone, PartialEq, Eq)]
pub enum TlsRoots {
    /// The platform's root certificates.
    System,
    /// The certificates of a CA file (`ca_file`), read when the
    /// configuration was: a reload reads it again.
    CaFile {
        path: PathBuf,
        certs: Vec<CertificateDer<'static>>,
    },
}

impl fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsRoots::System => f.write_str("System"),
            TlsRoots::CaFile { path, certs } => {
                write!(
                    f,
                    "CaFile({}, {} certificates)",
                    path.display(),
                    certs.len()
                )
            }
        }
    }
}

impl TlsRoots {
    /// Reads a CA file: PEM certificates (other PEM sections are ignored),
    /// at least one, each usable as a trust anchor.
    pub fn from_ca_file(path: &Path) -> Result<TlsRoots, String> {
        let shown = path.display();
        let text = std::fs::read(path).map_err(|e| format!("cannot read `{shown}`: {e}"))?;
        let certs = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("`{shown}` is not a PEM file of certificates: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "`{shown}` holds no certificate (PEM, `-----BEGIN CERTIFICATE-----`)"
            ));
        }
        let mut store = RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            store.add(cert.clone()).map_err(|e| {
                format!(
                    "certificate {} of `{shown}` is not a valid CA certificate: {e}",
                    i + 1
                )
            })?;
        }
        Ok(TlsRoots::CaFile {
            path: path.to_owned(),
            certs,
        })
    }

    /// The store to verify with; the platform's is read now.
    fn store(&self, target: &str) -> RootCertStore {
        let mut store = RootCertStore::empty();
        match self {
            TlsRoots::CaFile { certs, .. } => {
                store.add_parsable_certificates(certs.iter().cloned());
            }
            TlsRoots::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, ignored) = store.add_parsable_certificates(found.certs);
                for error in &found.errors {
                    warn!(target_name = target, %error, "reading the system's root certificates");
                }
                if added == 0 {
                    warn!(
                        target_name = target,
                        "no system root certificate found: every request to this https \
                         target will fail verification (tls_certificate); give a CA file \
                         (--ca-file, `ca_file`)"
                    );
                } else if ignored > 0 {
                    info!(
                        target_name = target,
                        added, ignored, "system root certificates loaded, some unusable"
                    );
                }
            }
        }
        store
    }
}

/// The client side of one https target: its rustls configuration and the
/// name it checks.
pub(crate) struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl TlsClient {
    /// The client for `host` (the URL's), named `target` in the logs.
    pub fn new(settings: &TlsSettings, host: &str, target: &str) -> Result<TlsClient, String> {
        let server_name = server_name(host)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?;
        let mut config = if settings.verify {
            builder
                .with_root_certificates(settings.roots.store(target))
                .with_no_client_auth()
        } else {
            warn!(
                target_name = target,
                "insecure_skip_verify: this https target's certificate and host name are \
                 NOT verified; anyone on the path can read and answer the mirrored requests"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The handshake over a connected stream; on failure why (the
    /// [`DropReason`]) and rustls' error.
    pub async fn handshake(
        &self,
        stream: ShadowStream,
    ) -> Result<TlsStream<ShadowStream>, (DropReason, io::Error)> {
        self.connector
            .connect(self.server_name.clone(), stream)
            .await
            .map_err(|error| (failure_reason(&error), error))
    }
}

/// The name a certificate is checked against (and sent as SNI): a DNS name
/// or an IP address.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("`{host}` cannot be checked against a certificate: {e}"))
}

/// What a failed handshake counts as: the certificate refused
/// (`tls_certificate`: unknown issuer, wrong name, expired ...) or anything
/// else (`tls_handshake`: no common protocol, an alert, not TLS at all, the
/// connection closed mid-handshake).
pub(crate) fn failure_reason(error: &io::Error) -> DropReason {
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_),
        ) => DropReason::TlsCertificate,
        _ => DropReason::TlsHandshake,
    }
}

/// `insecure_skip_verify`: every certificate is taken for every name; the
/// handshake's signatures are still checked with the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, bytes: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mirror-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_ca_file_must_be_readable_pem_with_valid_certificates() {
        let err = TlsRoots::from_ca_file(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            err.starts_with("cannot read `/nonexistent/ca.pem`"),
            "{err}"
        );
        let err = TlsRoots::from_ca_file(&temp("empty.pem", b"just text\n")).unwrap_err();
        assert!(err.contains("holds no certificate"), "{err}");
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = TlsRoots::from_ca_file(&temp("garbage.pem", garbage)).unwrap_err();
        assert!(err.contains("certificate 1 of"), "{err}");
        assert!(err.contains("not a valid CA certificate"), "{err}");
    }

    #[test]
    fn hosts_become_server_names() {
        assert!(matches!(
            server_name("shadow.example.com"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("10.0.0.7"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Ok(ServerName::IpAddress(_))));
        assert!(server_name("bad..name").is_err());
    }

    #[test]
    fn certificate_errors_and_other_handshake_errors_are_told_apart() {
        let wrapped = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            failure_reason(&wrapped(unknown)),
            DropReason::TlsCertificate
        );
        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        assert_eq!(failure_reason(&wrapped(name)), DropReason::TlsCertificate);
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert_eq!(failure_reason(&wrapped(alert)), DropReason::TlsHandshake);
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(failure_reason(&reset), DropReason::TlsHandshake);
    }
}
