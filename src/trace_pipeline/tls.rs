//! TLS for the pipeline's connections (Redis, the collector, Tempo), as the reference sets them
//! up: the server's certificate must chain to the public web's CAs, or to `<PREFIX>_CA` when
//! given, and name the host; `<PREFIX>_SKIP_VERIFY=true` accepts any; `<PREFIX>_CERT` and
//! `_KEY` are presented when the server asks. One rustls configuration for all three, from
//! the registry's own TLS module.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::ClientTls;
use crate::tls::{client_config, public_roots, roots, ReloadingIdentity, ServerTrust};

/// The client configuration `tls` describes.
pub fn config(tls: &ClientTls) -> Result<ClientConfig, String> {
    let server = match (tls.skip_verify, &tls.ca) {
        (true, _) => ServerTrust::Anyone,
        (false, Some(ca)) => ServerTrust::Named(roots(ca)?),
        (false, None) => ServerTrust::Named(public_roots()),
    };
    let identity = match &tls.identity {
        Some((certificate, key)) => Some(ReloadingIdentity::load(certificate, key)?),
        None => None,
    };
    client_config(server, identity)
}

/// A TLS connection to `host:port` (a host name or an IP address, as the certificate names it).
pub async fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    port: u16,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = TcpStream::connect((host, port)).await?;
    TlsConnector::from(config).connect(name, tcp).await
}
