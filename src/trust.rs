//! Registration trust, as the Go registry has it: which certificate authorities ("entities")
//! vouch for the agents that present client certificates on the public port. The backends are
//! named in `MCP_MESH_TRUST_BACKEND` (comma-separated, tried in order, the first that trusts a
//! certificate wins); mesh-registry has `filestore`: every `*.pem` in `MCP_MESH_TRUST_DIR` and in
//! its `entities/` subdirectory is one entity, its CA certificates the roots. Files added,
//! changed or removed are seen within `RESCAN_EVERY` without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use x509_cert::der::Decode;

/// How stale the view of the trust directory may be.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// The reference's words for a refused certificate (its `detail`).
pub const UNTRUSTED: &str = "certificate not trusted by any entity CA";

/// The configured backends, in order.
pub struct TrustChain {
    stores: Vec<FileStore>,
}

/// A certificate a backend trusts: the entity whose CA signed it, and the certificate's subject.
#[derive(Debug, Clone)]
pub struct Verified {
    pub entity_id: String,
    pub subject: String,
}

/// One CA certificate of an entity, for `GET /admin/entities`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrustedEntity {
    pub name: String,
    pub subject: String,
    /// The CA certificate's last day, `YYYY-MM-DD`.
    pub expires: String,
}

impl TrustChain {
    /// The backends named in `backends`; `dir` is `MCP_MESH_TRUST_DIR`. A backend this registry
    /// does not have stops the start (an operator's typo must not leave a chain that trusts
    /// nothing); `filestore` without a directory is skipped with a warning, as the reference does.
    pub fn configure(backends: &str, dir: Option<&Path>) -> Result<TrustChain, String> {
        let mut stores = Vec::new();
        for name in backends.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match (name, dir) {
                ("filestore", Some(dir)) => stores.push(FileStore::open(dir)?),
                ("filestore", None) => {
                    tracing::warn!("trust backend filestore needs MCP_MESH_TRUST_DIR; skipped")
                }
                ("localca" | "k8s-secrets" | "spire", _) => {
                    return Err(format!(
                        "trust backend {name:?} is not available in mesh-registry (filestore is); \
                         configured via MCP_MESH_TRUST_BACKEND"
                    ))
                }
                (other, _) => {
                    return Err(format!(
                        "unknown trust backend {other:?} (configured via MCP_MESH_TRUST_BACKEND)"
                    ))
                }
            }
        }
        Ok(TrustChain { stores })
    }

    /// The entity of the first backend that trusts `chain` (the leaf first, as presented).
    pub fn verify(&self, chain: &[CertificateDer<'static>]) -> Result<Verified, String> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or("no client certificate presented")?;
        if self.stores.is_empty() {
            return Err(format!("{UNTRUSTED}: no backends configured"));
        }
        let now = UnixTime::now();
        self.stores
            .iter()
            .flat_map(|store| store.entities().to_vec())
            .find(|entity| {
                entity
                    .verifier
                    .verify_client_cert(leaf, intermediates, now)
                    .is_ok()
            })
            .map(|entity| Verified {
                entity_id: entity.id.clone(),
                subject: subject_of(leaf).unwrap_or_default(),
            })
            .ok_or_else(|| UNTRUSTED.to_owned())
    }

    /// Every CA certificate of every entity, backend by backend.
    pub fn entities(&self) -> Vec<TrustedEntity> {
        self.stores
            .iter()
            .flat_map(|store| store.entities().to_vec())
            .flat_map(|entity| entity.listed.clone())
            .collect()
    }
}

/// The `filestore` backend: a directory of PEM files, rescanned when it changes.
struct FileStore {
    dir: PathBuf,
    state: Mutex<Scan>,
}

struct Scan {
    checked: Instant,
    /// Names, sizes and times of the files the entities were read from.
    stamp: Vec<(PathBuf, u64, Option<SystemTime>)>,
    entities: Arc<Vec<Arc<EntityCa>>>,
}

struct EntityCa {
    id: String,
    verifier: Arc<dyn ClientCertVerifier>,
    listed: Vec<TrustedEntity>,
}

impl FileStore {
    fn open(dir: &Path) -> Result<FileStore, String> {
        if !dir.is_dir() {
            return Err(format!(
                "trust directory {} (MCP_MESH_TRUST_DIR) is not a directory",
                dir.display()
            ));
        }
        let stamp = stamp(dir);
        let entities = Arc::new(load(&stamp));
        tracing::info!(dir = %dir.display(), entities = entities.len(), "trust backend filestore loaded");
        Ok(FileStore {
            dir: dir.to_owned(),
            state: Mutex::new(Scan {
                checked: Instant::now(),
                stamp,
                entities,
            }),
        })
    }

    /// The entities as the directory holds them now (rescanned at most every `RESCAN_EVERY`).
    fn entities(&self) -> Arc<Vec<Arc<EntityCa>>> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.checked.elapsed() >= RESCAN_EVERY {
            state.checked = Instant::now();
            let now = stamp(&self.dir);
            if now != state.stamp {
                state.entities = Arc::new(load(&now));
                tracing::info!(dir = %self.dir.display(), entities = state.entities.len(),
                               "trust directory changed; entities reloaded");
                state.stamp = now;
            }
        }
        state.entities.clone()
    }
}

/// The `*.pem` files of `dir` and `dir/entities`, sorted, with their sizes and times.
fn stamp(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files: Vec<_> = [dir.to_owned(), dir.join("entities")]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pem"))
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok().filter(|m| m.is_file())?;
            Some((path, meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

/// One entity per readable file; a file that is not one is skipped with a warning.
fn load(files: &[(PathBuf, u64, Option<SystemTime>)]) -> Vec<Arc<EntityCa>> {
    files
        .iter()
        .filter_map(|(path, _, _)| match entity(path) {
            Ok(entity) => Some(Arc::new(entity)),
            Err(reason) => {
                tracing::warn!(file = %path.display(), reason, "trust file skipped");
                None
            }
        })
        .collect()
}

fn entity(path: &Path) -> Result<EntityCa, String> {
    let certificates = crate::tls::certificates(path)?;
    let parsed = certificates
        .iter()
        .map(|der| x509_cert::Certificate::from_der(der).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    // As the reference: the first certificate's organization, else its unit, else the file name.
    let id = attribute(&parsed[0], ORGANIZATION)
        .or_else(|| attribute(&parsed[0], ORGANIZATIONAL_UNIT))
        .unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let mut roots = rustls::RootCertStore::empty();
    for der in &certificates {
        roots.add(der.clone()).map_err(|e| e.to_string())?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
            .build()
            .map_err(|e| e.to_string())?;
    let listed = parsed
        .iter()
        .map(|certificate| TrustedEntity {
            name: id.clone(),
            subject: go_subject(certificate),
            expires: expiry_date(certificate),
        })
        .collect();
    Ok(EntityCa {
        id,
        verifier,
        listed,
    })
}

const ORGANIZATION: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.10");
const ORGANIZATIONAL_UNIT: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("2.5.4.11");

/// The first value of a subject attribute, as text.
fn attribute(
    certificate: &x509_cert::Certificate,
    oid: x509_cert::der::oid::ObjectIdentifier,
) -> Option<String> {
    attributes(certificate, oid)
        .into_iter()
        .find(|value| !value.is_empty())
}

/// Every value of a subject attribute that is text.
fn attributes(
    certificate: &x509_cert::Certificate,
    oid: x509_cert::der::oid::ObjectIdentifier,
) -> Vec<String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    certificate
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|attribute| attribute.oid == oid)
        .filter_map(|attribute| {
            let value = &attribute.value;
            value
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.as_str().to_owned())
                .or_else(|_| {
                    value
                        .decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .or_else(|_| {
                    value
                        .decode_as::<Ia5StringRef<'_>>()
                        .map(|s| s.as_str().to_owned())
                })
                .ok()
        })
        .collect()
}

fn subject_of(der: &CertificateDer<'_>) -> Option<String> {
    x509_cert::Certificate::from_der(der)
        .ok()
        .map(|certificate| go_subject(&certificate))
}

/// The subject as the reference prints it (Go's `pkix.Name.String()`): the common name first,
/// then unit, organization, postal code, street, locality, province and country, several values
/// of one kind joined by `+`.
fn go_subject(certificate: &x509_cert::Certificate) -> String {
    const ORDER: [(&str, &str); 9] = [
        ("SERIALNUMBER", "2.5.4.5"),
        ("CN", "2.5.4.3"),
        ("OU", "2.5.4.11"),
        ("O", "2.5.4.10"),
        ("POSTALCODE", "2.5.4.17"),
        ("STREET", "2.5.4.9"),
        ("L", "2.5.4.7"),
        ("ST", "2.5.4.8"),
        ("C", "2.5.4.6"),
    ];
    ORDER
        .iter()
        .filter_map(|(label, oid)| {
            let oid = x509_cert::der::oid::ObjectIdentifier::new_unwrap(oid);
            let values: Vec<String> = attributes(certificate, oid)
                .iter()
                .map(|value| format!("{label}={}", escape_dn_value(value)))
                .collect();
            (!values.is_empty()).then(|| values.join("+"))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// RFC 2253 escaping, as Go applies it.
fn escape_dn_value(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut escaped = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ')
        {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn expiry_date(certificate: &x509_cert::Certificate) -> String {
    let seconds = certificate
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs();
    time::OffsetDateTime::from_unix_timestamp(seconds as i64)
        .ok()
        .map(|at| {
            format!(
                "{:04}-{:02}-{:02}",
                at.year(),
                u8::from(at.month()),
                at.day()
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(subject: &[(rcgen::DnType, &str)]) -> x509_cert::Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let der = params.self_signed(&key).unwrap().der().to_vec();
        x509_cert::Certificate::from_der(&der).unwrap()
    }

    #[test]
    fn subjects_read_as_the_reference_prints_them() {
        use rcgen::DnType::*;
        let cert = certificate(&[
            (CountryName, "DE"),
            (OrganizationName, "Acme, Inc."),
            (OrganizationalUnitName, "mesh"),
            (CommonName, " edge "),
        ]);
        assert_eq!(go_subject(&cert), r"CN=\ edge\ ,OU=mesh,O=Acme\, Inc.,C=DE");
        assert_eq!(
            attribute(&cert, ORGANIZATION).as_deref(),
            Some("Acme, Inc.")
        );
    }
}
