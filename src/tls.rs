//! Certificates, keys and trust roots read from PEM files, for every TLS connection the
//! registry makes or accepts (PostgreSQL, the public listener, outbound calls to agents). One
//! crypto provider (ring) for all of them, chosen here rather than by whichever crate is linked.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

/// The crypto provider of every TLS configuration the registry builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (a chain: the leaf first), at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|found| found.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certificates)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1; not encrypted).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

/// The certificates of a PEM file as trust anchors.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots
            .add(certificate)
            .map_err(|e| format!("unusable CA certificate in {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The public web's trust anchors (Mozilla's list, built in: no system files needed).
pub fn public_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Whom a TLS client believes.
pub enum ServerTrust {
    /// Any certificate (libpq's `require`, a CLI's `--insecure`).
    Anyone,
    /// A certificate that chains to one of these roots, whatever name it carries (libpq's
    /// `verify-ca`; the reference's calls to agents, whose certificates name pod addresses).
    AnyName(RootCertStore),
    /// A certificate that chains to one of these roots and names the host.
    Named(RootCertStore),
}

/// A TLS client's configuration: the servers it believes, and what it presents when asked.
pub fn client_config(
    server: ServerTrust,
    identity: Option<Arc<ReloadingIdentity>>,
) -> Result<ClientConfig, String> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match server {
        ServerTrust::Anyone => Arc::new(Unverified(provider.clone())),
        ServerTrust::AnyName(roots) => Arc::new(AnyName(webpki(roots, &provider)?)),
        ServerTrust::Named(roots) => webpki(roots, &provider)?,
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder.with_client_cert_resolver(identity),
    })
}

/// `MCP_MESH_TLS_MODE`, as the reference defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain HTTP; no registration trust.
    #[default]
    Off,
    /// HTTPS; a client certificate is optional, but one that is presented must be trusted.
    Auto,
    /// HTTPS; every request needs a trusted client certificate.
    Strict,
}

impl TlsMode {
    /// `MCP_MESH_TLS_MODE`: empty means `off`, as unset does for the reference.
    pub fn parse(raw: &str) -> Result<TlsMode, String> {
        match raw.trim() {
            "" | "off" => Ok(TlsMode::Off),
            "auto" => Ok(TlsMode::Auto),
            "strict" => Ok(TlsMode::Strict),
            other => Err(format!("{other:?} is not one of off, auto, strict")),
        }
    }
}

/// A certificate chain and its key read from two PEM files, and read again when either file
/// changes (a renewed certificate is served from the next handshake on, without a restart;
/// until a complete new pair is readable, the old one stays).
#[derive(Debug)]
pub struct ReloadingIdentity {
    certificate: PathBuf,
    key: PathBuf,
    current: RwLock<(Stamp, Arc<CertifiedKey>)>,
}

/// What the two files looked like when they were read: sizes and modification times.
type Stamp = [(u64, Option<SystemTime>); 2];

impl ReloadingIdentity {
    pub fn load(certificate: &Path, key: &Path) -> Result<Arc<ReloadingIdentity>, String> {
        let stamp = stamp(certificate, key);
        let identity = certified_key(certificate, key)?;
        Ok(Arc::new(ReloadingIdentity {
            certificate: certificate.to_owned(),
            key: key.to_owned(),
            current: RwLock::new((stamp, identity)),
        }))
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let now = stamp(&self.certificate, &self.key);
        {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            if current.0 == now {
                return current.1.clone();
            }
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        match certified_key(&self.certificate, &self.key) {
            Ok(identity) => {
                tracing::info!(certificate = %self.certificate.display(), "TLS certificate reloaded");
                *current = (now, identity);
            }
            // Half written, or a key that no longer matches: keep serving the old pair, and
            // look again at the next handshake.
            Err(reason) => tracing::warn!(reason, "TLS certificate not reloaded"),
        }
        current.1.clone()
    }
}

impl rustls::server::ResolvesServerCert for ReloadingIdentity {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for ReloadingIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn stamp(certificate: &Path, key: &Path) -> Stamp {
    [certificate, key].map(|path| {
        std::fs::metadata(path)
            .map(|meta| (meta.len(), meta.modified().ok()))
            .unwrap_or((0, None))
    })
}

fn certified_key(certificate: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    CertifiedKey::from_der(certificates(certificate)?, private_key(key)?, &provider())
        .map(Arc::new)
        .map_err(|e| {
            format!(
                "{} and {} are not a certificate and its key: {e}",
                certificate.display(),
                key.display()
            )
        })
}

fn webpki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())
}

/// Encryption without proof of the server's identity (`ServerTrust::Anyone`). The handshake's
/// own signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `ServerTrust::AnyName`: the chain must lead to a root; the name in the certificate is not
/// compared with the host. webpki checks the chain before the name, so only a name mismatch is
/// forgiven.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_mode_reads_as_the_reference_and_empty_is_off() {
        for (raw, mode) in [
            ("", TlsMode::Off),
            (" off ", TlsMode::Off),
            ("auto", TlsMode::Auto),
        ] {
            assert_eq!(TlsMode::parse(raw), Ok(mode), "{raw:?}");
        }
        assert_eq!(TlsMode::parse("strict"), Ok(TlsMode::Strict));
        assert!(TlsMode::parse("on")
            .unwrap_err()
            .contains("off, auto, strict"));
    }
}
