//! Test databases: a PostgreSQL database cloned from a migrated template, or an embedded file
//! in a directory of its own; each removed when the test is done.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use mesh_registry::store::{Backend, DbSchema, Store, DEFAULT_DB_SCHEMA};
use tokio_postgres::{Client, NoTls};

use super::postgres_server::server_url;

/// The URL of a database on the tests' PostgreSQL server (see `postgres_server`). Only tests of
/// the PostgreSQL backend call this: they do not run when there is no server.
pub fn database_url(name: &str) -> String {
    let server = server_url().expect("a PostgreSQL test on a machine without PostgreSQL");
    format!("{server}/{name}?sslmode=disable")
}

/// A connection to a test database whose names resolve in the registry's schema, as the
/// registry's own do.
pub async fn connect(database: &str) -> Client {
    let url = format!(
        "{}&options=-c%20search_path%3D{DEFAULT_DB_SCHEMA}",
        database_url(database)
    );
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL ({database}): {e}"));
    actix_web::rt::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A fresh database of one backend that is removed when this goes away: a PostgreSQL database
/// (dropped with its connections), or an embedded file in a directory of its own (deleted).
pub enum TestDatabase {
    Postgres { name: String },
    Embedded { directory: PathBuf },
}

impl TestDatabase {
    /// A migrated PostgreSQL database, or the path of an embedded file that does not exist yet
    /// (the registry creates and migrates it at start).
    pub async fn create(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Postgres => {
                let admin = connect("postgres").await;
                let template = ensure_template(&admin).await;
                let name = format!("mesh_registry_test_{}", uuid::Uuid::new_v4().simple());
                admin
                    .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                    .await
                    .expect("create the test database from the template");
                TestDatabase::Postgres { name }
            }
            Backend::Embedded => TestDatabase::embedded(),
        }
    }

    /// A database with no schema at all.
    pub async fn create_empty(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Postgres => {
                let name = format!("mesh_registry_test_{}", uuid::Uuid::new_v4().simple());
                connect("postgres")
                    .await
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create an empty test database");
                TestDatabase::Postgres { name }
            }
            Backend::Embedded => TestDatabase::embedded(),
        }
    }

    fn embedded() -> TestDatabase {
        let directory = std::env::temp_dir().join(format!(
            "mesh-registry-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&directory)
            .unwrap_or_else(|e| panic!("create {}: {e}", directory.display()));
        TestDatabase::Embedded { directory }
    }

    /// The `DATABASE_URL`: a `postgres://` URL, or the embedded file's plain path.
    pub fn url(&self) -> String {
        match self {
            TestDatabase::Postgres { name } => database_url(name),
            TestDatabase::Embedded { .. } => self.file().display().to_string(),
        }
    }

    /// The embedded file as a `sqlite:///abs/path.db` URL (the other spelling the registry takes).
    pub fn sqlite_url(&self) -> String {
        let file = self.file();
        assert!(file.is_absolute(), "{}", file.display());
        format!("sqlite://{}", file.display())
    }

    /// The embedded database file.
    pub fn file(&self) -> PathBuf {
        match self {
            TestDatabase::Embedded { directory } => directory.join("registry.db"),
            TestDatabase::Postgres { .. } => panic!("a PostgreSQL test database has no file"),
        }
    }

    /// The PostgreSQL database's name.
    pub fn pg_name(&self) -> &str {
        match self {
            TestDatabase::Postgres { name } => name,
            TestDatabase::Embedded { .. } => panic!("an embedded test database has no name"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = match self {
            TestDatabase::Embedded { directory } => {
                let _ = std::fs::remove_dir_all(directory);
                return;
            }
            TestDatabase::Postgres { name } => name.clone(),
        };
        // Drop may run outside any runtime (or inside one that is shutting down).
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&database_url("postgres"), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Name of the template for the current migrations; built once (under an advisory lock, so
/// concurrent test processes agree) by running the registry's own migrations.
async fn ensure_template(admin: &Client) -> String {
    let mut hasher = DefaultHasher::new();
    let mut files: Vec<_> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .expect("migrations directory")
            .map(|entry| entry.expect("migration entry").path())
            .collect();
    files.sort();
    for file in files {
        file.file_name().hash(&mut hasher);
        std::fs::read(&file)
            .expect("migration file")
            .hash(&mut hasher);
    }
    // Where the tables live is part of the template too.
    DEFAULT_DB_SCHEMA.hash(&mut hasher);
    let template = format!("mesh_registry_template_{:016x}", hasher.finish());
    if database_exists(admin, &template).await {
        return template;
    }
    const TEMPLATE_LOCK: i64 = 0x6d65_7368_7465_7374;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("template lock");
    if !database_exists(admin, &template).await {
        let building = format!("{template}_building");
        for statement in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            admin
                .batch_execute(&statement)
                .await
                .expect("create the template database");
        }
        let store = Store::connect(&database_url(&building), &DbSchema::default(), 1)
            .await
            .expect("migrate the template database");
        drop(store);
        // The migration connection may still be closing: cut it, then publish under the
        // template's name in one rename.
        for statement in [
            format!("ALTER DATABASE {building} WITH ALLOW_CONNECTIONS false"),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{building}'"
            ),
            format!("ALTER DATABASE {building} RENAME TO {template}"),
        ] {
            admin
                .batch_execute(&statement)
                .await
                .expect("publish the template database");
        }
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("template unlock");
    template
}

async fn database_exists(admin: &Client, name: &str) -> bool {
    admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("look up a database")
        .is_some()
}
