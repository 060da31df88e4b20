//! HTTPS and registration trust on the public port (issue 18), as the reference has them
//! (`MCP_MESH_TLS_MODE`, `MCP_MESH_TLS_CERT`/`KEY`, the filestore trust backend): the registry
//! asks every client for a certificate; `strict` refuses requests without a trusted one, `auto`
//! admits clients without one and refuses untrusted ones. Certificates are made here.
//!
//! Transport, not storage: these run on the embedded backend only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_registry::tls::TlsMode;
use serde_json::{json, Value};

use crate::helpers::certs::{Issued, TestCa};
use crate::helpers::{embedded_only, spawn_app_with, within, Backend, TestApp};

/// A mesh's certificates: the CA of the registry's certificate, an entity CA the registry
/// trusts (its file `acme.pem` in the trust directory), and one it does not.
struct Mesh {
    directory: PathBuf,
    registry_ca: TestCa,
    registry: Issued,
    trust_dir: PathBuf,
    agent: Issued,
    stranger: Issued,
    stranger_ca: TestCa,
}

impl Mesh {
    fn new() -> Mesh {
        let directory = std::env::temp_dir().join(format!(
            "mesh-registry-https-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let registry_ca = TestCa::new(&directory, "registry-ca");
        let registry = registry_ca.server("registry", &["127.0.0.1", "localhost"]);
        let acme = TestCa::new(&directory, "acme-ca");
        let stranger_ca = TestCa::new(&directory, "stranger-ca");
        let trust_dir = directory.join("trust");
        std::fs::create_dir_all(&trust_dir).unwrap();
        std::fs::copy(&acme.certificate, trust_dir.join("acme.pem")).unwrap();
        Mesh {
            agent: acme.client("agent", "agent-1"),
            stranger: stranger_ca.client("stranger", "agent-2"),
            registry,
            registry_ca,
            trust_dir,
            stranger_ca,
            directory,
        }
    }

    async fn registry(&self, backend: Backend, mode: TlsMode) -> TestApp {
        let (cert, key) = (self.registry.certificate.clone(), self.registry.key.clone());
        let trust_dir = self.trust_dir.clone();
        spawn_app_with(backend, move |config| {
            config.tls.mode = mode;
            config.tls.cert = Some(cert);
            config.tls.key = Some(key);
            config.tls.trust_backend = "filestore".into();
            config.tls.trust_dir = Some(trust_dir);
        })
        .await
    }
}

/// A client that trusts `ca` and presents `identity`, on a fresh connection pool.
fn client(ca: &Path, identity: Option<&Issued>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .timeout(Duration::from_secs(10));
    if let Some(issued) = identity {
        let mut pem = std::fs::read(&issued.certificate).unwrap();
        pem.extend(std::fs::read(&issued.key).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

async fn get(client: &reqwest::Client, app: &TestApp, path: &str) -> (u16, Value) {
    let response = client.get(app.url(path)).send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

embedded_only!(strict_mode_serves_trusted_client_certificates_only);
async fn strict_mode_serves_trusted_client_certificates_only(backend: Backend) {
    let mesh = Mesh::new();
    let app = mesh.registry(backend, TlsMode::Strict).await;
    assert!(app.address.starts_with("https://"));
    let ca = &mesh.registry_ca.certificate;

    let (status, body) = get(&client(ca, Some(&mesh.agent)), &app, "/health").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&client(ca, None), &app, "/health").await;
    assert_eq!(
        (status, body),
        (403, json!({"error": "client certificate required"}))
    );
    let (status, body) = get(&client(ca, Some(&mesh.stranger)), &app, "/agents").await;
    assert_eq!(
        (status, body),
        (
            403,
            json!({"error": "untrusted certificate",
                   "detail": "certificate not trusted by any entity CA"})
        )
    );
    // Plain HTTP on the HTTPS port gets no answer from the API.
    let plain = reqwest::Client::new()
        .get(app.url("/health").replacen("https://", "http://", 1))
        .send()
        .await;
    assert!(plain.map(|r| r.status().as_u16() != 200).unwrap_or(true));
    // A client that does not trust the registry's CA refuses the registry.
    let wrong = client(&mesh.stranger_ca.certificate, Some(&mesh.agent))
        .get(app.url("/health"))
        .send()
        .await;
    assert!(wrong.is_err(), "{wrong:?}");
}

embedded_only!(auto_mode_admits_clients_without_certificates_and_refuses_untrusted_ones);
async fn auto_mode_admits_clients_without_certificates_and_refuses_untrusted_ones(
    backend: Backend,
) {
    let mesh = Mesh::new();
    let app = mesh.registry(backend, TlsMode::Auto).await;
    let ca = &mesh.registry_ca.certificate;
    let (status, _) = get(&client(ca, None), &app, "/health").await;
    assert_eq!(status, 200);
    let (status, _) = get(&client(ca, Some(&mesh.agent)), &app, "/health").await;
    assert_eq!(status, 200);
    let (status, body) = get(&client(ca, Some(&mesh.stranger)), &app, "/health").await;
    assert_eq!(
        (status, &body["error"]),
        (403, &json!("untrusted certificate"))
    );
}

embedded_only!(an_entity_added_to_the_trust_directory_is_trusted_without_a_restart);
async fn an_entity_added_to_the_trust_directory_is_trusted_without_a_restart(backend: Backend) {
    let mesh = Mesh::new();
    let app = mesh.registry(backend, TlsMode::Strict).await;
    let ca = mesh.registry_ca.certificate.clone();
    let (_, listed) = get(&client(&ca, Some(&mesh.agent)), &app, "/admin/entities").await;
    let names: Vec<&Value> = listed["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["name"])
        .collect();
    assert_eq!(names, [&json!("acme")], "{listed}");
    assert_eq!(listed["entities"][0]["subject"], "CN=acme-ca");

    // meshctl entity register writes into entities/.
    std::fs::create_dir_all(mesh.trust_dir.join("entities")).unwrap();
    std::fs::copy(
        &mesh.stranger_ca.certificate,
        mesh.trust_dir.join("entities").join("partner.pem"),
    )
    .unwrap();
    let stranger = client(&ca, Some(&mesh.stranger));
    within(
        Duration::from_secs(10),
        "the new entity is trusted",
        || async { get(&stranger, &app, "/health").await.0 == 200 },
    )
    .await;
    let (_, listed) = get(&stranger, &app, "/admin/entities").await;
    assert_eq!(listed["entities"].as_array().unwrap().len(), 2, "{listed}");

    // And removed: refused again.
    std::fs::remove_file(mesh.trust_dir.join("acme.pem")).unwrap();
    let agent = client(&ca, Some(&mesh.agent));
    within(
        Duration::from_secs(10),
        "the removed entity is no longer trusted",
        || async { get(&agent, &app, "/health").await.0 == 403 },
    )
    .await;
}

embedded_only!(a_renewed_server_certificate_is_served_without_a_restart);
async fn a_renewed_server_certificate_is_served_without_a_restart(backend: Backend) {
    let mesh = Mesh::new();
    let app = mesh.registry(backend, TlsMode::Auto).await;
    let (status, _) = get(
        &client(&mesh.registry_ca.certificate, None),
        &app,
        "/health",
    )
    .await;
    assert_eq!(status, 200);
    // cert-manager renews from another CA: the files are replaced in place.
    let renewed_ca = TestCa::new(&mesh.directory, "renewed-ca");
    let renewed = renewed_ca.server("renewed", &["127.0.0.1"]);
    std::fs::copy(&renewed.key, &mesh.registry.key).unwrap();
    std::fs::copy(&renewed.certificate, &mesh.registry.certificate).unwrap();
    within(
        Duration::from_secs(10),
        "the renewed certificate is served",
        || async {
            client(&renewed_ca.certificate, None)
                .get(app.url("/health"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    let old = client(&mesh.registry_ca.certificate, None)
        .get(app.url("/health"))
        .send()
        .await;
    assert!(
        old.is_err(),
        "the old CA no longer vouches for the served certificate"
    );
}

#[actix_web::test]
async fn tls_without_its_files_or_with_an_unknown_backend_refuses_to_start() {
    let mesh = Mesh::new();
    let database = crate::helpers::TestDatabase::create(Backend::Embedded).await;
    for (tweak, expected) in [
        (
            Box::new(|c: &mut mesh_registry::config::Config| c.tls.mode = TlsMode::Strict)
                as Box<dyn Fn(&mut mesh_registry::config::Config)>,
            "requires MCP_MESH_TLS_CERT and MCP_MESH_TLS_KEY",
        ),
        (
            Box::new(|c: &mut mesh_registry::config::Config| {
                c.tls.mode = TlsMode::Auto;
                c.tls.cert = Some(mesh.registry.certificate.clone());
                c.tls.key = Some(mesh.registry.key.clone());
                c.tls.trust_backend = "filestore,vault".into();
                c.tls.trust_dir = Some(mesh.trust_dir.clone());
            }),
            "unknown trust backend \"vault\"",
        ),
        (
            Box::new(|c: &mut mesh_registry::config::Config| {
                c.tls.mode = TlsMode::Auto;
                c.tls.cert = Some(mesh.registry.certificate.clone());
                c.tls.key = Some(mesh.agent.key.clone());
            }),
            "are not a certificate and its key",
        ),
    ] {
        let mut config = crate::helpers::test_config(database.url());
        tweak(&mut config);
        let error = match mesh_registry::startup::Application::build(&config).await {
            Ok(_) => panic!("started without a way to serve TLS ({expected})"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains(expected), "{error}");
    }
}

embedded_only!(our_cli_speaks_https_with_a_ca_or_insecure_and_a_client_certificate);
async fn our_cli_speaks_https_with_a_ca_or_insecure_and_a_client_certificate(backend: Backend) {
    let mesh = Mesh::new();
    let app = mesh.registry(backend, TlsMode::Strict).await;
    let ca = mesh.registry_ca.certificate.display().to_string();
    let cert = mesh.agent.certificate.display().to_string();
    let key = mesh.agent.key.display().to_string();
    // Awaited, not blocking: the registry under test serves on this very thread.
    let status = |extra: Vec<String>| {
        let command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mesh-registry"))
            .args(["registry", "status", "--registry-url", &app.address])
            .args(extra)
            .env_remove("MCP_MESH_REGISTRY_URL")
            .output();
        async move {
            let output = command.await.unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned()
                    + &String::from_utf8_lossy(&output.stderr),
            )
        }
    };
    let trusted = vec![
        "--client-cert".to_owned(),
        cert.clone(),
        "--client-key".into(),
        key.clone(),
    ];
    let (ok, said) = status([vec!["--ca-cert".into(), ca.clone()], trusted.clone()].concat()).await;
    assert!(ok, "{said}");
    let (ok, said) = status([vec!["--insecure".into()], trusted.clone()].concat()).await;
    assert!(ok, "{said}");
    // The public web's CAs do not vouch for the registry.
    let (ok, said) = status(trusted).await;
    assert!(!ok && said.contains("failed to connect"), "{said}");
    // Without a client certificate, strict mode refuses.
    let (ok, said) = status(vec!["--ca-cert".into(), ca]).await;
    assert!(
        !ok && said.contains("client certificate required"),
        "{said}"
    );
}
