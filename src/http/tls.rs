//! HTTPS on the public port and registration trust, as the reference serves them
//! (`MCP_MESH_TLS_MODE`): the listener asks every client for a certificate without requiring
//! one, and each request is judged here against the trust chain: `strict` refuses a request
//! without a certificate, both `auto` and `strict` refuse one whose certificate no entity
//! trusts (403, the reference's bodies). A trusted request carries its `Verified` entity.

use std::any::Any;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{HttpMessage, HttpResponse};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ServerConfig;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use serde_json::json;

use crate::tls::{ReloadingIdentity, TlsMode};
use crate::trust::TrustChain;

/// What the public port checks, when TLS is on.
pub struct RegistrationTrust {
    pub mode: TlsMode,
    pub chain: TrustChain,
}

/// The certificates a client presented in its handshake (the leaf first).
#[derive(Clone)]
struct PeerCertificates(Arc<Vec<CertificateDer<'static>>>);

/// The listener's TLS: the registry's certificate (reloaded when its files change), and a
/// request for the client's, which the handshake does not judge (`verify_client` does).
pub fn server_config(identity: Arc<ReloadingIdentity>) -> Result<ServerConfig, String> {
    let provider = crate::tls::provider();
    Ok(ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(RequestClientCertificate(provider)))
        .with_cert_resolver(identity))
}

/// Keeps the client's certificates with its connection (`HttpServer::on_connect`).
pub fn keep_peer_certificates(connection: &dyn Any, data: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let Some(tls) = connection.downcast_ref::<Tls>() else {
        return;
    };
    if let Some(presented) = tls.get_ref().1.peer_certificates() {
        let chain = presented.iter().map(|c| c.clone().into_owned()).collect();
        data.insert(PeerCertificates(Arc::new(chain)));
    }
}

/// Judges each request's client certificate (a no-op without `RegistrationTrust`).
pub async fn verify_client(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let trust = req.app_data::<Data<RegistrationTrust>>();
    if let Some(trust) = trust.filter(|trust| trust.mode != TlsMode::Off) {
        let presented = req.conn_data::<PeerCertificates>().cloned();
        let refusal = match presented {
            None if trust.mode == TlsMode::Strict => {
                Some(json!({"error": "client certificate required"}))
            }
            None => None,
            Some(chain) => match trust.chain.verify(&chain.0) {
                Ok(verified) => {
                    req.extensions_mut().insert(verified);
                    None
                }
                Err(detail) => {
                    tracing::info!(detail, peer = ?req.peer_addr(), "client certificate refused");
                    Some(json!({"error": "untrusted certificate", "detail": detail}))
                }
            },
        };
        if let Some(body) = refusal {
            let response = HttpResponse::Forbidden().json(body);
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// The entity that vouched for the request's client certificate (`verify_client` found it), if
/// any: recorded as an agent's owner, and as the poster of a job event.
pub(super) fn verified_entity(req: &actix_web::HttpRequest) -> Option<String> {
    req.extensions()
        .get::<crate::trust::Verified>()
        .map(|verified| verified.entity_id.clone())
}

/// Go's `tls.RequestClientCert`: ask for a certificate, accept any (or none); the handshake
/// still proves the client holds the certificate's key.
#[derive(Debug)]
struct RequestClientCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ClientCertVerifier for RequestClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
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
