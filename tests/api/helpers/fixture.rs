//! The test's own connection to the app's database, for states the API cannot reach: one set
//! of methods on `TestApp` for both backends, never SQL in the tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio_postgres::Client;

use super::app::{now, spawn_app, TestApp};
use super::database::{connect, TestDatabase};
use super::{on_both_backends, Backend};

/// A value the fixture writes into a column.
#[derive(Debug, Clone, Copy)]
pub enum Set {
    /// An integer column to this value.
    Int(i64),
    /// An integer column to its current value plus this.
    Add(i64),
    /// A timestamp column to now plus this many seconds (negative: in the past).
    SecondsFromNow(i64),
    /// A timestamp column to this instant, UTC to the second: `"2026-01-01T00:00:00Z"`.
    At(&'static str),
    /// A nullable column to NULL (as a row written before the column existed).
    Null,
}

/// What the rows to change are identified by.
enum Key<'a> {
    /// A job id as the API shows it.
    Uuid(&'a str),
    Text(&'a str),
}

/// A job row as stored, for counting rows in a given state.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub job_id: String,
    pub owner_instance_id: Option<String>,
    pub attempt_count: i64,
    pub claim_epoch: i64,
}

/// The test's own connection to the app's database. Both backends store the same tables and
/// columns; the embedded file keeps uuids as lowercase hyphenated TEXT, timestamps as INTEGER
/// microseconds since the Unix epoch (UTC), JSON as TEXT and booleans as INTEGER 0/1.
pub(super) enum Fixture {
    Postgres(Client),
    /// Calls block (on SQLite's busy timeout at worst), so they run on the blocking pool.
    Embedded(Arc<Mutex<rusqlite::Connection>>),
}

/// Table and column names are formatted into the statements: only test-code constants that look
/// like identifiers get there. Values are always parameters.
fn identifier(name: &str) -> &str {
    assert!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "not an identifier the fixture accepts: {name:?}"
    );
    name
}

fn uuid_of(job_id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(job_id).unwrap_or_else(|e| panic!("job id {job_id:?}: {e}"))
}

impl Fixture {
    pub(super) async fn open(database: &TestDatabase) -> Fixture {
        match database {
            TestDatabase::Postgres { name } => Fixture::Postgres(connect(name).await),
            TestDatabase::Embedded { .. } => {
                let file = database.file();
                // Read-write but never create: the registry must have made this very file.
                let connection = rusqlite::Connection::open_with_flags(
                    &file,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .unwrap_or_else(|e| panic!("open the embedded database {}: {e}", file.display()));
                connection
                    .busy_timeout(Duration::from_secs(5))
                    .expect("busy timeout");
                Fixture::Embedded(Arc::new(Mutex::new(connection)))
            }
        }
    }

    /// Runs `call` on the embedded connection, off the test's runtime thread.
    async fn sqlite<T: Send + 'static>(
        connection: &Arc<Mutex<rusqlite::Connection>>,
        call: impl FnOnce(&rusqlite::Connection) -> T + Send + 'static,
    ) -> T {
        let connection = connection.clone();
        actix_web::rt::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(|e| e.into_inner());
            call(&connection)
        })
        .await
        .expect("the fixture's SQLite call")
    }

    async fn update(&self, table: &str, key_column: &str, key: Key<'_>, columns: &[(&str, Set)]) {
        let (table, key_column) = (identifier(table), identifier(key_column));
        assert!(!columns.is_empty(), "nothing to set");
        let updated = match self {
            Fixture::Postgres(client) => {
                type Param = Box<dyn tokio_postgres::types::ToSql + Sync + Send>;
                let mut params: Vec<Param> = vec![match key {
                    Key::Uuid(id) => Box::new(uuid_of(id)),
                    Key::Text(text) => Box::new(text.to_owned()),
                }];
                let mut sets = Vec::new();
                for &(column, value) in columns {
                    let (column, n) = (identifier(column), params.len() + 1);
                    let (set, param): (String, Param) = match value {
                        Set::Null => {
                            sets.push(format!("{column} = NULL"));
                            continue;
                        }
                        Set::Int(v) => (format!("{column} = ${n}"), Box::new(v)),
                        Set::Add(v) => (format!("{column} = {column} + ${n}"), Box::new(v)),
                        Set::SecondsFromNow(s) => (
                            format!("{column} = now() + make_interval(secs => ${n}::float8)"),
                            Box::new(s as f64),
                        ),
                        Set::At(at) => (
                            format!("{column} = ${n}::text::timestamptz"),
                            Box::new(at.to_owned()),
                        ),
                    };
                    sets.push(set);
                    params.push(param);
                }
                let statement = format!(
                    "UPDATE {table} SET {} WHERE {key_column} = $1",
                    sets.join(", ")
                );
                let params: Vec<_> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                    .collect();
                client
                    .execute(&statement, &params)
                    .await
                    .unwrap_or_else(|e| panic!("{statement}: {e}"))
            }
            Fixture::Embedded(connection) => {
                use rusqlite::types::Value as Sql;
                let mut params = vec![match key {
                    Key::Uuid(id) => Sql::Text(uuid_of(id).hyphenated().to_string()),
                    Key::Text(text) => Sql::Text(text.to_owned()),
                }];
                let mut sets = Vec::new();
                for &(column, value) in columns {
                    let (column, n) = (identifier(column), params.len() + 1);
                    let (set, param) = match value {
                        Set::Null => {
                            sets.push(format!("{column} = NULL"));
                            continue;
                        }
                        Set::Int(v) => (format!("{column} = ?{n}"), v),
                        Set::Add(v) => (format!("{column} = {column} + ?{n}"), v),
                        Set::SecondsFromNow(s) => {
                            (format!("{column} = ?{n}"), now_micros() + s * 1_000_000)
                        }
                        Set::At(at) => (format!("{column} = ?{n}"), unix_micros_of(at)),
                    };
                    sets.push(set);
                    params.push(Sql::Integer(param));
                }
                let statement = format!(
                    "UPDATE {table} SET {} WHERE {key_column} = ?1",
                    sets.join(", ")
                );
                Fixture::sqlite(connection, move |db| {
                    db.execute(&statement, rusqlite::params_from_iter(params))
                        .unwrap_or_else(|e| panic!("{statement}: {e}")) as u64
                })
                .await
            }
        };
        assert!(updated > 0, "no {table} row has {key_column} = {key}");
    }

    async fn job_rows(&self) -> Vec<JobRow> {
        match self {
            Fixture::Postgres(client) => client
                .query(
                    "SELECT job_id::text, owner_instance_id, attempt_count, claim_epoch FROM jobs",
                    &[],
                )
                .await
                .expect("read the job rows")
                .iter()
                .map(|row| JobRow {
                    job_id: row.get(0),
                    owner_instance_id: row.get(1),
                    attempt_count: row.get(2),
                    claim_epoch: row.get(3),
                })
                .collect(),
            Fixture::Embedded(connection) => {
                Fixture::sqlite(connection, |db| {
                    let mut statement = db
                    .prepare(
                        "SELECT job_id, owner_instance_id, attempt_count, claim_epoch FROM jobs",
                    )
                    .expect("read the job rows");
                    let rows = statement
                        .query_map([], |row| {
                            Ok(JobRow {
                                job_id: row.get(0)?,
                                owner_instance_id: row.get(1)?,
                                attempt_count: row.get(2)?,
                                claim_epoch: row.get(3)?,
                            })
                        })
                        .expect("read the job rows");
                    rows.collect::<Result<Vec<_>, _>>()
                        .expect("read the job rows")
                })
                .await
            }
        }
    }

    async fn event_count(&self, job_id: &str) -> i64 {
        let id = uuid_of(job_id);
        match self {
            Fixture::Postgres(client) => client
                .query_one("SELECT count(*) FROM job_events WHERE job_id = $1", &[&id])
                .await
                .expect("count the events")
                .get(0),
            Fixture::Embedded(connection) => {
                let id = id.hyphenated().to_string();
                Fixture::sqlite(connection, move |db| {
                    db.query_row(
                        "SELECT count(*) FROM job_events WHERE job_id = ?1",
                        [id],
                        |row| row.get(0),
                    )
                    .expect("count the events")
                })
                .await
            }
        }
    }

    /// Copies the agent's oldest event `copies` times, as a flood of registrations would add
    /// them.
    async fn flood_mesh_events(&self, agent_id: &str, copies: i64) {
        let agent_id = agent_id.to_owned();
        match self {
            Fixture::Postgres(client) => {
                client
                    .execute(
                        "INSERT INTO mesh_events (event_type, agent_id, data, recorded_at) \
                         SELECT e.event_type, e.agent_id, e.data, e.recorded_at \
                         FROM (SELECT * FROM mesh_events WHERE agent_id = $1 \
                               ORDER BY event_id LIMIT 1) e, generate_series(1, $2::bigint)",
                        &[&agent_id, &copies],
                    )
                    .await
                    .expect("flood the event log");
            }
            Fixture::Embedded(connection) => {
                Fixture::sqlite(connection, move |db| {
                    db.execute(
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
                         INSERT INTO mesh_events (event_type, agent_id, data, recorded_at) \
                         SELECT e.event_type, e.agent_id, e.data, e.recorded_at \
                         FROM (SELECT * FROM mesh_events WHERE agent_id = ?1 \
                               ORDER BY event_id LIMIT 1) e, n",
                        rusqlite::params![agent_id, copies],
                    )
                    .expect("flood the event log");
                })
                .await;
            }
        }
    }

    async fn mesh_event_count(&self) -> i64 {
        let count = "SELECT count(*) FROM mesh_events";
        match self {
            Fixture::Postgres(client) => client
                .query_one(count, &[])
                .await
                .expect("count the events")
                .get(0),
            Fixture::Embedded(connection) => {
                Fixture::sqlite(connection, move |db| {
                    db.query_row(count, [], |row| row.get(0))
                        .expect("count the events")
                })
                .await
            }
        }
    }

    async fn rename_table(&self, from: &str, to: &str) {
        let statement = format!(
            "ALTER TABLE {} RENAME TO {}",
            identifier(from),
            identifier(to)
        );
        match self {
            Fixture::Postgres(client) => client
                .batch_execute(&statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}")),
            Fixture::Embedded(connection) => {
                Fixture::sqlite(connection, move |db| {
                    db.execute_batch(&statement)
                        .unwrap_or_else(|e| panic!("{statement}: {e}"))
                })
                .await
            }
        }
    }
}

/// The fixture as the tests use it.
impl TestApp {
    /// The PostgreSQL connection of a PostgreSQL-only test (schema, version skew, query plans).
    pub fn pg(&self) -> &Client {
        match &self.fixture {
            Fixture::Postgres(client) => client,
            Fixture::Embedded(_) => panic!("pg() in a test that runs on the embedded backend"),
        }
    }

    /// Sets one column of a job (test setup only): `set_job(&id, "attempt_count", Set::Int(3))`.
    pub async fn set_job(&self, job_id: &str, column: &str, value: Set) {
        self.set_job_columns(job_id, &[(column, value)]).await;
    }

    /// Sets several columns of a job in one statement, so that no sweep or lease check can see
    /// the row half-changed.
    pub async fn set_job_columns(&self, job_id: &str, columns: &[(&str, Set)]) {
        self.fixture
            .update("jobs", "job_id", Key::Uuid(job_id), columns)
            .await;
    }

    /// Sets one column of every event of a job.
    pub async fn set_events(&self, job_id: &str, column: &str, value: Set) {
        self.fixture
            .update(
                "job_events",
                "job_id",
                Key::Uuid(job_id),
                &[(column, value)],
            )
            .await;
    }

    /// Sets one column of an agent.
    pub async fn set_agent(&self, agent_id: &str, column: &str, value: Set) {
        self.fixture
            .update(
                "agents",
                "agent_id",
                Key::Text(agent_id),
                &[(column, value)],
            )
            .await;
    }

    /// Sets one column of every event the registry's log holds about an agent.
    pub async fn set_mesh_events(&self, agent_id: &str, column: &str, value: Set) {
        self.fixture
            .update(
                "mesh_events",
                "agent_id",
                Key::Text(agent_id),
                &[(column, value)],
            )
            .await;
    }

    /// Adds `copies` of the agent's first event to the registry's log.
    pub async fn flood_mesh_events(&self, agent_id: &str, copies: i64) {
        self.fixture.flood_mesh_events(agent_id, copies).await;
    }

    /// How many events the registry's log holds.
    pub async fn mesh_event_count(&self) -> i64 {
        self.fixture.mesh_event_count().await
    }

    /// Every job row, read in one statement (one consistent snapshot).
    pub async fn job_rows(&self) -> Vec<JobRow> {
        self.fixture.job_rows().await
    }

    /// How many events of this job are stored.
    pub async fn event_count(&self, job_id: &str) -> i64 {
        self.fixture.event_count(job_id).await
    }

    /// `ALTER TABLE <from> RENAME TO <to>`, to make the registry's statements fail.
    pub async fn rename_table(&self, from: &str, to: &str) {
        self.fixture.rename_table(from, to).await;
    }
}

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Uuid(text) | Key::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// Microseconds since the Unix epoch now: the embedded backend's clock and timestamp unit.
fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64
}

/// `"2026-01-01T00:00:00Z"` as microseconds since the Unix epoch (only this exact shape).
fn unix_micros_of(at: &str) -> i64 {
    let b = at.as_bytes();
    let shape_ok = b.len() == 20
        && [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'Z'),
        ]
        .iter()
        .all(|&(i, c)| b[i] == c);
    assert!(shape_ok, "expected YYYY-MM-DDTHH:MM:SSZ, got {at:?}");
    let field = |from: usize, to: usize| -> i64 {
        at[from..to]
            .parse()
            .unwrap_or_else(|_| panic!("expected YYYY-MM-DDTHH:MM:SSZ, got {at:?}"))
    };
    let (year, month, day) = (field(0, 4), field(5, 7), field(8, 10));
    assert!(
        (1..=12).contains(&month) && (1..=31).contains(&day),
        "{at:?}"
    );
    // Days from the civil date (H. Hinnant's algorithm), in the proleptic Gregorian calendar.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + field(11, 13) * 3_600 + field(14, 16) * 60 + field(17, 19);
    seconds * 1_000_000
}

#[test]
fn fixture_instants_are_unix_microseconds() {
    assert_eq!(unix_micros_of("1970-01-01T00:00:00Z"), 0);
    assert_eq!(
        unix_micros_of("2026-01-01T00:00:00Z"),
        1_767_225_600_000_000
    );
    assert_eq!(
        unix_micros_of("2024-02-29T12:34:56Z"),
        1_709_210_096_000_000
    );
    assert_eq!(unix_micros_of("1969-12-31T23:59:59Z"), -1_000_000);
}

#[test]
fn the_fixture_takes_only_identifiers() {
    assert_eq!(identifier("lease_expires_at"), "lease_expires_at");
    for bad in ["", "jobs; DROP TABLE jobs", "Jobs", "a1", "x y"] {
        assert!(
            std::panic::catch_unwind(|| identifier(bad)).is_err(),
            "{bad:?}"
        );
    }
}

on_both_backends!(the_fixture_writes_what_the_api_reads);
async fn the_fixture_writes_what_the_api_reads(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.submit("c").await;
    app.set_job_columns(
        &id,
        &[
            ("submitted_at", Set::At("2026-01-01T00:00:00Z")),
            ("attempt_count", Set::Int(3)),
            ("claim_epoch", Set::Add(2)),
            ("lease_expires_at", Set::SecondsFromNow(-300)),
        ],
    )
    .await;
    let job = app.job(&id).await;
    assert_eq!(job["submitted_at"], 1_767_225_600);
    assert_eq!(job["attempt_count"], 3);
    assert_eq!(job["claim_epoch"], 2);
    let lease = job["lease_expires_at"].as_i64().unwrap();
    assert!((now() - 302..=now() - 298).contains(&lease), "{lease}");
    let rows = app.job_rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].job_id, id);
    assert_eq!((rows[0].attempt_count, rows[0].claim_epoch), (3, 2));
    app.post(&format!("/jobs/{id}/events"), &json!({"type": "t"}))
        .await;
    assert_eq!(app.event_count(&id).await, 1);
}
