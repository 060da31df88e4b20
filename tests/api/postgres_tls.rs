//! PostgreSQL over TLS (issue 18): every `sslmode` with libpq's meaning, against a cluster of
//! the test's own that serves TLS with certificates made here. `pg_hba.conf` decides who may
//! connect how, so a connection that succeeds proves the transport it used:
//!
//! * `plain_only` may connect without TLS only, `tls_only` with TLS only;
//! * `cert_user` must present a client certificate, issued by the test CA for that name;
//! * `postgres` connects either way (to set the cluster up).
//!
//! The server's certificate names `db.mesh.test` only: reached as 127.0.0.1 its name does not
//! match (what `verify-ca` forgives and `verify-full` refuses); reached as `db.mesh.test` with
//! `hostaddr=127.0.0.1` it matches.

use std::path::PathBuf;
use std::process::Command;

use tokio::sync::OnceCell;

use crate::helpers::certs::{Issued, TestCa};
use crate::helpers::throwaway_cluster::ThrowawayCluster;
use serde_json::json;

use crate::helpers::RegistryProcess;

const BINARY: &str = env!("CARGO_BIN_EXE_mesh-registry");

const HBA: &str = "\
hostssl   all postgres   127.0.0.1/32 trust
hostnossl all postgres   127.0.0.1/32 trust
hostssl   all tls_only   127.0.0.1/32 trust
hostnossl all plain_only 127.0.0.1/32 trust
hostssl   all cert_user  127.0.0.1/32 cert";

struct TlsServer {
    _cluster: ThrowawayCluster,
    port: u16,
    /// The CA that signed the server's and the client's certificates.
    ca: PathBuf,
    /// A CA that signed nothing the server knows.
    wrong_ca: PathBuf,
    /// `cert_user`'s certificate from the right CA, and one from the wrong CA.
    client: Issued,
    stranger: Issued,
}

/// The TLS cluster, started once per test process; `None` without PostgreSQL binaries.
async fn tls_server() -> Option<&'static TlsServer> {
    static SERVER: OnceCell<Option<TlsServer>> = OnceCell::const_new();
    SERVER
        .get_or_init(|| async {
            let cluster = ThrowawayCluster::start().expect("start a cluster")?;
            let directory = std::env::temp_dir().join(format!(
                "mesh-registry-pg-tls-{}",
                uuid::Uuid::new_v4().simple()
            ));
            let ca = TestCa::new(&directory, "ca");
            let wrong_ca = TestCa::new(&directory, "wrong-ca");
            let server = ca.server("server", &["db.mesh.test"]);
            cluster
                .serve_tls(&server.certificate, &server.key, &ca.certificate, HBA)
                .expect("serve TLS");
            let port = cluster.url().rsplit(':').next().unwrap().parse().unwrap();
            let (client, connection) = tokio_postgres::connect(
                &format!("{}/postgres", cluster.url()),
                tokio_postgres::NoTls,
            )
            .await
            .expect("connect as postgres");
            let driver = tokio::spawn(connection);
            client
                .batch_execute(
                    "CREATE ROLE tls_only LOGIN SUPERUSER; CREATE ROLE plain_only LOGIN SUPERUSER;
                     CREATE ROLE cert_user LOGIN SUPERUSER;",
                )
                .await
                .expect("create the roles");
            client
                .batch_execute("CREATE DATABASE mesh")
                .await
                .expect("create the database");
            drop(client);
            let _ = driver.await;
            Some(TlsServer {
                _cluster: cluster,
                port,
                client: ca.client("client", "cert_user"),
                stranger: wrong_ca.client("stranger", "cert_user"),
                ca: ca.certificate,
                wrong_ca: wrong_ca.certificate,
            })
        })
        .await
        .as_ref()
}

impl TlsServer {
    /// `postgres://<user>@<host>:<port>/mesh?<query>`.
    fn url(&self, user: &str, host: &str, query: &str) -> String {
        format!("postgres://{user}@{host}:{}/mesh?{query}", self.port)
    }
}

fn path(file: &std::path::Path) -> String {
    file.display().to_string()
}

/// `mesh-registry migrate <args>` on `url`: its stdout, or its stderr when it fails.
fn migrate(url: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(BINARY)
        .arg("migrate")
        .args(args)
        .env("DATABASE_URL", url)
        .env_remove("MCP_MESH_DB_SCHEMA")
        .output()
        .expect("run the binary");
    match output.status.success() {
        true => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
    }
}

macro_rules! skip_without_postgres {
    ($server:expr) => {
        match $server {
            Some(server) => server,
            None => {
                eprintln!("skipped: no PostgreSQL binaries to start a TLS cluster with");
                return;
            }
        }
    };
}

#[tokio::test]
async fn every_sslmode_means_what_libpq_means() {
    let server = skip_without_postgres!(tls_server().await);
    let (ca, wrong_ca) = (path(&server.ca), path(&server.wrong_ca));
    let client = format!(
        "sslcert={}&sslkey={}",
        path(&server.client.certificate),
        path(&server.client.key)
    );
    let stranger = format!(
        "sslcert={}&sslkey={}",
        path(&server.stranger.certificate),
        path(&server.stranger.key)
    );
    let named = "hostaddr=127.0.0.1";
    // (user, host, query, None when it connects / Some(part of the refusal))
    let cases: Vec<(&str, &str, String, Option<&str>)> = vec![
        ("plain_only", "127.0.0.1", "sslmode=disable".into(), None),
        (
            "tls_only",
            "127.0.0.1",
            "sslmode=disable".into(),
            Some("no encryption"),
        ),
        ("tls_only", "127.0.0.1", "sslmode=prefer".into(), None),
        // Absent, the mode is prefer: TLS, since the server offers it.
        ("tls_only", "127.0.0.1", String::new(), None),
        // require encrypts without asking who the server is…
        ("tls_only", "127.0.0.1", "sslmode=require".into(), None),
        // …unless given a CA, when it is verify-ca (libpq).
        (
            "tls_only",
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={ca}"),
            None,
        ),
        (
            "tls_only",
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={wrong_ca}"),
            Some("UnknownIssuer"),
        ),
        (
            "tls_only",
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
            None,
        ),
        (
            "tls_only",
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={wrong_ca}"),
            Some("UnknownIssuer"),
        ),
        (
            "tls_only",
            "db.mesh.test",
            format!("sslmode=verify-full&sslrootcert={ca}&{named}"),
            None,
        ),
        (
            "tls_only",
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            Some("certificate not valid for name"),
        ),
        (
            "tls_only",
            "db.mesh.test",
            format!("sslmode=verify-full&sslrootcert={wrong_ca}&{named}"),
            Some("UnknownIssuer"),
        ),
        (
            "cert_user",
            "db.mesh.test",
            format!("sslmode=verify-full&sslrootcert={ca}&{named}&{client}"),
            None,
        ),
        (
            "cert_user",
            "db.mesh.test",
            format!("sslmode=verify-full&sslrootcert={ca}&{named}"),
            Some("requires a valid client certificate"),
        ),
        (
            "cert_user",
            "db.mesh.test",
            format!("sslmode=verify-full&sslrootcert={ca}&{named}&{stranger}"),
            Some("UnknownCA"),
        ),
    ];
    let mut wrong = Vec::new();
    for (user, host, query, refusal) in &cases {
        let url = server.url(user, host, query);
        match (migrate(&url, &["up"]), refusal) {
            (Ok(_), None) => {}
            (Err(stderr), Some(expected)) if stderr.contains(expected) => {}
            (outcome, _) => wrong.push(format!("{user} {query}: {outcome:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn a_missing_or_wrong_certificate_file_is_named_before_connecting() {
    let server = skip_without_postgres!(tls_server().await);
    let missing = server.url(
        "tls_only",
        "127.0.0.1",
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
    );
    let stderr = migrate(&missing, &["status"]).unwrap_err();
    assert!(
        stderr.contains("sslrootcert") && stderr.contains("/nonexistent/ca.crt"),
        "{stderr}"
    );
    let not_a_key = server.url(
        "cert_user",
        "127.0.0.1",
        &format!(
            "sslmode=require&sslcert={}&sslkey={}",
            path(&server.client.certificate),
            path(&server.ca)
        ),
    );
    let stderr = migrate(&not_a_key, &["status"]).unwrap_err();
    assert!(stderr.contains("sslkey"), "{stderr}");
}

#[tokio::test]
async fn require_refuses_a_server_without_tls() {
    let Some(plain) = ThrowawayCluster::start().expect("start a cluster") else {
        eprintln!("skipped: no PostgreSQL binaries");
        return;
    };
    let url = format!("{}/postgres?sslmode=require", plain.url());
    let stderr = migrate(&url, &["status"]).unwrap_err();
    assert!(stderr.contains("TLS"), "{stderr}");
    // prefer falls back to plain text there.
    let url = format!("{}/postgres?sslmode=prefer", plain.url());
    migrate(&url, &["status"]).expect("prefer connects without TLS");
}

/// The server's pool, its schema session and its notification session all verify the server,
/// and the switching import connects the same way.
#[tokio::test]
async fn the_registry_serves_from_a_verified_server_with_a_client_certificate() {
    let server = skip_without_postgres!(tls_server().await);
    let url = server.url(
        "cert_user",
        "db.mesh.test",
        &format!(
            "sslmode=verify-full&sslrootcert={}&hostaddr=127.0.0.1&sslcert={}&sslkey={}",
            path(&server.ca),
            path(&server.client.certificate),
            path(&server.client.key)
        ),
    );
    let registry = RegistryProcess::start(
        &std::env::temp_dir(),
        &[("DATABASE_URL", &url), ("MCP_MESH_DB_SCHEMA", "tls_served")],
    );
    let (status, created) = registry
        .send(
            "POST",
            "/jobs",
            Some(json!({"capability": "tls_probe", "submitted_by": "tester", "submitted_payload": {}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("job id");
    let (status, job) = registry.send("GET", &format!("/jobs/{id}"), None).await;
    assert_eq!((status, job["id"].as_str()), (200, Some(id)), "{job}");
    drop(registry);
    let import = Command::new(BINARY)
        .args(["migrate", "import-reference", "--db-schema", "tls_served"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&import.stderr).into_owned()
        + &String::from_utf8_lossy(&import.stdout);
    assert!(!said.contains("cannot reach PostgreSQL"), "{said}");
}
