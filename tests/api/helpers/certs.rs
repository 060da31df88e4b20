//! Certificate authorities and certificates made inside the tests (nothing that can expire in
//! the repository), written as PEM files into a directory of the test's own.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A CA whose certificate is in `<directory>/<name>.crt`.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    directory: PathBuf,
    pub certificate: PathBuf,
}

/// A certificate and its key, as files.
pub struct Issued {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(directory: &Path, name: &str) -> TestCa {
        std::fs::create_dir_all(directory).expect("certificate directory");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let certificate = directory.join(format!("{name}.crt"));
        std::fs::write(&certificate, params.self_signed(&key).expect("CA").pem())
            .expect("write the CA");
        TestCa {
            issuer: Issuer::new(params, key),
            directory: directory.to_owned(),
            certificate,
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, file: &str, names: &[&str]) -> Issued {
        self.issue(file, names, None, &[ExtendedKeyUsagePurpose::ServerAuth])
    }

    /// A certificate for `names` that serves and calls (the registry's, which it also presents
    /// when it calls agents).
    pub fn peer(&self, file: &str, names: &[&str]) -> Issued {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        self.issue(file, names, None, &[ServerAuth, ClientAuth])
    }

    /// A client certificate whose common name is `name`.
    pub fn client(&self, file: &str, name: &str) -> Issued {
        self.issue(
            file,
            &[],
            Some(name),
            &[ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    fn issue(
        &self,
        file: &str,
        names: &[&str],
        common_name: Option<&str>,
        usages: &[ExtendedKeyUsagePurpose],
    ) -> Issued {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        if let Some(name) = common_name {
            params.distinguished_name.push(DnType::CommonName, name);
        }
        params.extended_key_usages = usages.to_vec();
        let certificate = params.signed_by(&key, &self.issuer).expect("sign");
        let issued = Issued {
            certificate: self.directory.join(format!("{file}.crt")),
            key: self.directory.join(format!("{file}.key")),
        };
        std::fs::write(&issued.certificate, certificate.pem()).expect("write the certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write the key");
        issued
    }
}

/// A server's TLS configuration: it serves `certificate`, asks for no client certificate, and
/// offers `alpn` (`h2` for gRPC).
pub fn server_config(certificate: &Issued, alpn: &[&[u8]]) -> rustls::ServerConfig {
    use mesh_registry::tls;
    let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(
            tls::certificates(&certificate.certificate).expect("the certificate"),
            tls::private_key(&certificate.key).expect("the key"),
        )
        .expect("a server configuration");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}
