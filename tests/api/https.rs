//! HTTPS and registration trust on the public port (issue 18), as the reference has them
//! (`MCP_MESH_TLS_MODE`, `MCP_MESH_TLS_CERT`/`KEY`, the filestore trust backend): the registry
//! asks every client for a certificate; `strict` refuses requests without a trusted one, `auto`
//! admits clients without one and refuses untrusted ones. Certificates are made here.
//!
//! The registry calls an agent that registered with a trusted certificate over HTTPS, presenting
//! its own certificate (the cancel forward); only that entity may update the agent; and
//! `POST /admin/rotate` asks agents to register again.
//!
//! Transport alone runs on the embedded backend only; what is stored (the entity, ownership,
//! rotation) runs on both.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use mesh_registry::config::Config;
use mesh_registry::tls::TlsMode;
use serde_json::{json, Value};

use crate::helpers::certs::{Issued, TestCa};
use crate::helpers::{embedded_only, on_both_backends, spawn_app_with, within, Backend, TestApp};

/// A mesh's certificates: the CA of the registry's certificate, an entity CA the registry
/// trusts (its file `acme.pem` in the trust directory; it also issues agents' serving
/// certificates, and is the CA the registry checks them against), and one it does not.
struct Mesh {
    directory: PathBuf,
    registry_ca: TestCa,
    registry: Issued,
    trust_dir: PathBuf,
    acme: TestCa,
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
        let registry = registry_ca.peer("registry", &["127.0.0.1", "localhost"]);
        let acme = TestCa::new(&directory, "acme-ca");
        let stranger_ca = TestCa::new(&directory, "stranger-ca");
        let trust_dir = directory.join("trust");
        std::fs::create_dir_all(&trust_dir).unwrap();
        std::fs::copy(&acme.certificate, trust_dir.join("acme.pem")).unwrap();
        Mesh {
            agent: acme.client("agent", "agent-1"),
            stranger: stranger_ca.client("stranger", "agent-2"),
            acme,
            registry,
            registry_ca,
            trust_dir,
            stranger_ca,
            directory,
        }
    }

    async fn registry(&self, backend: Backend, mode: TlsMode) -> TestApp {
        self.registry_with(backend, mode, |_| {}).await
    }

    async fn registry_with(
        &self,
        backend: Backend,
        mode: TlsMode,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        let (cert, key) = (self.registry.certificate.clone(), self.registry.key.clone());
        let (trust_dir, ca) = (self.trust_dir.clone(), self.acme.certificate.clone());
        spawn_app_with(backend, move |config| {
            config.tls.mode = mode;
            config.tls.cert = Some(cert);
            config.tls.key = Some(key);
            config.tls.ca = Some(ca);
            config.tls.trust_backend = "filestore".into();
            config.tls.trust_dir = Some(trust_dir);
            tweak(config);
        })
        .await
    }

    /// Another entity the registry trusts (`<name>.pem` in the trust directory), and a client
    /// certificate it issued.
    fn trusted_entity(&self, name: &str) -> Issued {
        let ca = TestCa::new(&self.directory, &format!("{name}-ca"));
        std::fs::copy(&ca.certificate, self.trust_dir.join(format!("{name}.pem"))).unwrap();
        ca.client(&format!("{name}-agent"), "agent")
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

/// The calls an agent's endpoint received (their paths): cancel forwards and MCP calls.
type Received = Arc<Mutex<Vec<String>>>;

/// An agent's endpoint that records cancel forwards: plain HTTP, or HTTPS as an SDK in TLS mode
/// serves it (`tls`: a certificate the mesh CA issued, and a client certificate required).
struct AgentEndpoint {
    port: u16,
    received: Received,
    _server: actix_web::dev::ServerHandle,
}

async fn agent_endpoint(tls: Option<rustls::ServerConfig>) -> AgentEndpoint {
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    let server = HttpServer::new(move || {
        let log = log.clone();
        let mcp_log = log.clone();
        App::new()
            .route(
                "/jobs/{id}/cancel",
                web::post().to(move |req: HttpRequest| {
                    log.lock().unwrap().push(req.path().to_owned());
                    async { HttpResponse::Ok().json(json!({"cancelled": true})) }
                }),
            )
            .route(
                "/mcp",
                web::post().to(move |req: HttpRequest| {
                    mcp_log.lock().unwrap().push(req.path().to_owned());
                    async {
                        HttpResponse::Ok().json(json!({"jsonrpc": "2.0", "id": 1, "result": {}}))
                    }
                }),
            )
    })
    .workers(1);
    let (_, port, handle) = crate::helpers::serve_in_test!(server, tls);
    AgentEndpoint {
        port,
        received,
        _server: handle,
    }
}

/// An agent's HTTPS endpoint: it serves `certificate` and admits only clients whose certificate
/// `client_ca` issued.
fn agent_tls(certificate: &Issued, client_ca: &Path) -> rustls::ServerConfig {
    use mesh_registry::tls;
    let provider = tls::provider();
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(tls::roots(client_ca).unwrap()),
        provider.clone(),
    )
    .build()
    .unwrap();
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(clients)
        .with_single_cert(
            tls::certificates(&certificate.certificate).unwrap(),
            tls::private_key(&certificate.key).unwrap(),
        )
        .unwrap()
}

fn task_agent(agent_id: &str, port: u16, capability: &str) -> Value {
    json!({"agent_id": agent_id, "http_host": "127.0.0.1", "http_port": port,
           "tools": [{"function_name": "run", "capability": capability,
                      "kwargs": {"task": true}}]})
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let response = client.post(url).json(body).send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

on_both_backends!(
    a_cancel_reaches_an_agent_registered_over_mtls_over_https_with_the_registry_certificate
);
async fn a_cancel_reaches_an_agent_registered_over_mtls_over_https_with_the_registry_certificate(
    backend: Backend,
) {
    let mesh = Mesh::new();
    let mut app = mesh.registry(backend, TlsMode::Auto).await;
    // The agent's serving certificate names another host than the one the registry dials: the
    // chain is checked, the name is not (as the reference).
    let serving = mesh
        .acme
        .server("agent-endpoint", &["agent-1.mesh.internal"]);
    let secure = agent_endpoint(Some(agent_tls(&serving, &mesh.registry_ca.certificate))).await;
    let plain = agent_endpoint(None).await;
    let ca = &mesh.registry_ca.certificate;
    // The secure endpoint really requires a client certificate the registry's CA issued.
    let without = client(&mesh.acme.certificate, None)
        .post(format!("https://127.0.0.1:{}/jobs/x/cancel", secure.port))
        .send()
        .await;
    assert!(without.is_err(), "{without:?}");
    assert!(secure.received.lock().unwrap().is_empty());

    let agent = client(ca, Some(&mesh.agent));
    let anonymous = client(ca, None);
    let (status, body) = post(
        &agent,
        &app.url("/heartbeat"),
        &task_agent("secure", secure.port, "sealed"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &anonymous,
        &app.url("/heartbeat"),
        &task_agent("plain", plain.port, "open"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, listed) = get(&anonymous, &app, "/agents/secure").await;
    assert_eq!(
        (&listed["endpoint"], &listed["entity_id"]),
        (
            &json!(format!("https://127.0.0.1:{}", secure.port)),
            &json!("acme")
        ),
        "{listed}"
    );
    let (_, listed) = get(&anonymous, &app, "/agents/plain").await;
    assert_eq!(
        listed["endpoint"],
        format!("http://127.0.0.1:{}", plain.port)
    );
    assert!(listed.get("entity_id").is_none(), "{listed}");

    app.http = agent;
    for (owner, capability, endpoint) in [("secure", "sealed", &secure), ("plain", "open", &plain)]
    {
        let job = app.submit(capability).await;
        app.claim(capability, owner).await.expect("claimed");
        let response = app.post(&format!("/jobs/{job}/cancel"), &json!({})).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["forwarded_to_instance_id"], owner);
        let expected = format!("/jobs/{job}/cancel");
        within(Duration::from_secs(10), "the forward to arrive", || async {
            endpoint.received.lock().unwrap().contains(&expected)
        })
        .await;
    }
    assert_eq!(secure.received.lock().unwrap().len(), 1);
    assert_eq!(plain.received.lock().unwrap().len(), 1);

    // The MCP proxy takes the same client: over HTTPS to the agent an entity owns.
    for endpoint in [&secure, &plain] {
        let relayed = app
            .http
            .post(app.url(&format!("/proxy/127.0.0.1:{}/mcp", endpoint.port)))
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
            .send()
            .await
            .unwrap();
        assert_eq!(relayed.status(), 200);
        assert_eq!(relayed.json::<Value>().await.unwrap()["result"], json!({}));
        assert_eq!(endpoint.received.lock().unwrap().last().unwrap(), "/mcp");
    }
}

on_both_backends!(an_agent_an_entity_vouched_for_is_updated_by_that_entity_only);
async fn an_agent_an_entity_vouched_for_is_updated_by_that_entity_only(backend: Backend) {
    let mesh = Mesh::new();
    let globex = mesh.trusted_entity("globex");
    let app = mesh.registry(backend, TlsMode::Auto).await;
    let ca = &mesh.registry_ca.certificate;
    let (acme, other, anonymous) = (
        client(ca, Some(&mesh.agent)),
        client(ca, Some(&globex)),
        client(ca, None),
    );
    let heartbeat = app.url("/heartbeat");
    assert_eq!(
        post(&acme, &heartbeat, &task_agent("owned", 9001, "c"))
            .await
            .0,
        200
    );
    for (someone, body) in [
        (&anonymous, task_agent("owned", 9002, "c")),
        (&other, task_agent("owned", 9002, "c")),
    ] {
        let (status, refused) = post(someone, &heartbeat, &body).await;
        assert_eq!(
            (status, &refused["error"]),
            (
                403,
                &json!("entity_id mismatch: agent owned by another entity")
            ),
            "{refused}"
        );
        assert!(refused["timestamp"].is_string(), "{refused}");
    }
    // Nothing of the refused registrations was stored.
    let (_, listed) = get(&anonymous, &app, "/agents/owned").await;
    assert_eq!(
        (&listed["endpoint"], &listed["entity_id"]),
        (&json!("https://127.0.0.1:9001"), &json!("acme"))
    );
    let (status, body) = post(&acme, &heartbeat, &task_agent("owned", 9003, "c")).await;
    assert_eq!(
        (status, &body["message"]),
        (200, &json!("Agent updated via heartbeat"))
    );

    // An agent no entity vouched for is taken over by the first that does, and is then its.
    assert_eq!(
        post(&anonymous, &heartbeat, &task_agent("adopted", 9004, "c"))
            .await
            .0,
        200
    );
    assert_eq!(
        post(&other, &heartbeat, &task_agent("adopted", 9004, "c"))
            .await
            .0,
        200
    );
    let (_, listed) = get(&anonymous, &app, "/agents/adopted").await;
    assert_eq!(
        (&listed["endpoint"], &listed["entity_id"]),
        (&json!("https://127.0.0.1:9004"), &json!("globex"))
    );
    assert_eq!(
        post(&anonymous, &heartbeat, &task_agent("adopted", 9004, "c"))
            .await
            .0,
        403
    );
}

on_both_backends!(a_rotation_asks_the_healthy_agents_to_register_again);
async fn a_rotation_asks_the_healthy_agents_to_register_again(backend: Backend) {
    let mesh = Mesh::new();
    let app = mesh
        .registry_with(backend, TlsMode::Auto, |config| config.admin_port = Some(0))
        .await;
    let ca = &mesh.registry_ca.certificate;
    let (acme, anonymous) = (client(ca, Some(&mesh.agent)), client(ca, None));
    let heartbeat = app.url("/heartbeat");
    let agents = [("a1", &acme), ("a2", &acme), ("p", &anonymous)];
    // Everyone registered, and then saw the whole mesh once: HEAD heartbeats answer 200.
    let register_all = || async {
        for (id, who) in agents {
            assert_eq!(
                post(who, &heartbeat, &task_agent(id, 9000, "c")).await.0,
                200
            );
        }
    };
    let heads = || async {
        let mut statuses = Vec::new();
        for (id, _) in agents {
            let response = anonymous
                .head(app.url(&format!("/heartbeat/{id}")))
                .send()
                .await
                .unwrap();
            statuses.push(response.status().as_u16());
        }
        statuses
    };
    register_all().await;
    register_all().await;
    assert_eq!(heads().await, [200, 200, 200]);

    let admin = format!("http://127.0.0.1:{}", app.admin_port.unwrap());
    let plain = reqwest::Client::new();
    let rotate = |query: &'static str| {
        let url = format!("{admin}/admin/rotate{query}");
        let plain = plain.clone();
        async move { post(&plain, &url, &json!({})).await }
    };
    // An entity without agents: nothing to do, nobody is told.
    assert_eq!(
        rotate("?entity_id=initech").await,
        (
            200,
            json!({"affected_agents": 0, "entity_id": "initech",
                   "message": "Rotation triggered for entity 'initech'"})
        )
    );
    assert_eq!(heads().await, [200, 200, 200]);
    // One entity's agents: every agent is told (202), as the reference's rotate events do.
    assert_eq!(
        rotate("?entity_id=acme").await,
        (
            200,
            json!({"affected_agents": 2, "entity_id": "acme",
                   "message": "Rotation triggered for entity 'acme'"})
        )
    );
    assert_eq!(heads().await, [202, 202, 202]);
    register_all().await;
    assert_eq!(heads().await, [200, 200, 200]);
    // Every healthy agent, whatever its entity; an agent that left is not counted.
    let left = anonymous.delete(app.url("/agents/p")).send().await.unwrap();
    assert_eq!(left.status(), 204);
    for query in ["", "?entity_id="] {
        assert_eq!(
            rotate(query).await,
            (
                200,
                json!({"affected_agents": 2, "entity_id": "",
                       "message": "Rotation triggered for all agents"})
            )
        );
    }
    assert_eq!(heads().await[..2], [202, 202]);

    // Refused: a query that is not text; another method; the public port when the admin port
    // is separate.
    assert_eq!(rotate("?entity_id=%00").await.0, 400);
    let status = plain
        .get(format!("{admin}/admin/rotate"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    assert_eq!(
        post(&acme, &app.url("/admin/rotate"), &json!({})).await.0,
        404
    );
}

on_both_backends!(an_event_posted_with_a_trusted_certificate_names_its_entity);
async fn an_event_posted_with_a_trusted_certificate_names_its_entity(backend: Backend) {
    let mesh = Mesh::new();
    let mut app = mesh.registry(backend, TlsMode::Auto).await;
    let ca = &mesh.registry_ca.certificate;
    let anonymous = client(ca, None);
    app.http = client(ca, Some(&mesh.agent));
    let job = app.submit("c").await;
    let events = app.url(&format!("/jobs/{job}/events"));
    let (status, _) = post(&app.http, &events, &json!({"type": "note"})).await;
    assert_eq!(status, 200);
    let (status, _) = post(&anonymous, &events, &json!({"type": "note"})).await;
    assert_eq!(status, 200);
    let (_, page) = get(&anonymous, &app, &format!("/jobs/{job}/events")).await;
    let posted_by: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| &event["posted_by"])
        .collect();
    assert_eq!(posted_by, [&json!("acme"), &Value::Null], "{page}");
}
