//! The operator commands: `registry status|drain|resume` and `job status|reclaim`, with
//! meshctl's flags, output and failure messages, against a running registry's HTTP API.
//! Success exits 0; any failure prints one line to stderr and exits 1.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::cli::{ConnectionArgs, JobCommand, RegistryCommand};
use crate::wire::{rfc3339, DrainResponse, RecvCursor, Timestamp};

type Result<T> = std::result::Result<T, String>;

struct Registry {
    base_url: String,
    http: reqwest::Client,
}

/// HTTPS to the registry: `--insecure` believes any certificate; else `--ca-cert`'s CAs, or the
/// public web's; `--client-cert` is presented when the registry asks.
fn tls_config(args: &ConnectionArgs) -> Result<rustls::ClientConfig> {
    use crate::tls::{self, ServerTrust};
    let server = match (&args.ca_cert, args.insecure) {
        (_, true) => ServerTrust::Anyone,
        (Some(ca), false) => ServerTrust::Named(tls::roots(ca)?),
        (None, false) => ServerTrust::Named(tls::public_roots()),
    };
    let identity = match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => Some(tls::ReloadingIdentity::load(cert, key)?),
        _ => None,
    };
    tls::client_config(server, identity)
}

impl Registry {
    fn new(args: &ConnectionArgs) -> Result<Registry> {
        let base_url = match args.registry_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!(
                "{}://{}:{}",
                args.registry_scheme, args.registry_host, args.registry_port
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(args.timeout))
            .use_preconfigured_tls(tls_config(args)?)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Registry { base_url, http })
    }

    /// One request; the status and the body.
    async fn call(&self, method: Method, path: &str) -> Result<(StatusCode, String)> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .send()
            .await
            .map_err(|e| format!("failed to connect to registry at {}: {e}", self.base_url))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Ok((status, body))
    }

    /// `/admin/drain` with `method`: the raw body on 200, meshctl's error otherwise.
    async fn drain_call(&self, method: Method, fleet: bool) -> Result<String> {
        let path = if fleet {
            "/admin/drain?scope=fleet"
        } else {
            "/admin/drain"
        };
        match self.call(method, path).await? {
            (StatusCode::OK, body) => Ok(body),
            (StatusCode::NOT_FOUND, body) => Err(format!(
                "registry returned status 404: {} (hint: if the registry runs a separate admin \
                 port, pass --registry-url http://<host>:<admin-port>)",
                body.trim()
            )),
            (status, body) => Err(format!(
                "registry returned status {}: {}",
                status.as_u16(),
                body.trim()
            )),
        }
    }

    async fn drain_state(&self, method: Method, fleet: bool) -> Result<DrainResponse> {
        let body = self.drain_call(method, fleet).await?;
        serde_json::from_str(&body).map_err(|e| format!("failed to parse drain response: {e}"))
    }
}

/// Runs a `registry …` or `job …` command to completion.
fn run(work: impl std::future::Future<Output = Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start: {error}")),
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => fail(reason),
    }
}

fn fail(reason: String) -> ExitCode {
    eprintln!("Error: {}", reason.replace('\n', " "));
    ExitCode::FAILURE
}

pub fn registry(command: &RegistryCommand, connection: &ConnectionArgs) -> ExitCode {
    run(async move {
        let registry = Registry::new(connection)?;
        match *command {
            RegistryCommand::Status { json } => status(&registry, json).await,
            RegistryCommand::Drain {
                wait,
                wait_timeout,
                poll_interval,
                fleet,
                linger,
            } => match wait {
                true => drain(&registry, wait_timeout, poll_interval.max(1), fleet).await,
                false => drain_and_linger(&registry, fleet, linger).await,
            },
            RegistryCommand::Resume { fleet } => {
                let state = registry.drain_state(Method::DELETE, fleet).await?;
                println!("Registry resumed — job dispatch active");
                println!("  Live claims: {}", state.live_claims);
                if state.draining {
                    println!(
                        "Note: still draining ({})",
                        if state.fleet_draining {
                            "a fleet-wide drain is set; resume it with --fleet"
                        } else {
                            "this replica was drained"
                        }
                    );
                }
                Ok(())
            }
        }
    })
}

async fn status(registry: &Registry, json: bool) -> Result<()> {
    let body = registry.drain_call(Method::GET, false).await?;
    if json {
        println!("{body}");
        return Ok(());
    }
    let state: DrainResponse =
        serde_json::from_str(&body).map_err(|e| format!("failed to parse drain status: {e}"))?;
    let mode = match (state.draining, state.fleet_draining) {
        (false, _) => "active (normal dispatch)",
        (true, false) => "DRAINING (new claims paused)",
        (true, true) => "DRAINING (new claims paused; fleet-wide)",
    };
    println!("Registry:    {mode}");
    println!("Live claims: {}", state.live_claims);
    Ok(())
}

/// `registry drain` without `--wait`: set the drain, then stay `linger` seconds.
async fn drain_and_linger(registry: &Registry, fleet: bool, linger: u64) -> Result<()> {
    let state = registry.drain_state(Method::POST, fleet).await?;
    println!("Registry draining — new job claims paused");
    println!("  Live claims: {}", state.live_claims);
    if state.live_claims > 0 {
        println!(
            "Note: {} job(s) still running; poll `mesh-registry registry status` or re-run with --wait",
            state.live_claims
        );
    }
    if linger > 0 {
        println!("Lingering {linger}s before exiting");
        tokio::time::sleep(Duration::from_secs(linger)).await;
    }
    Ok(())
}

/// `registry drain --wait`: set the drain, then wait until no live claims remain.
async fn drain(
    registry: &Registry,
    wait_timeout: u64,
    poll_interval: u64,
    fleet: bool,
) -> Result<()> {
    let mut state = registry.drain_state(Method::POST, fleet).await?;
    println!("Registry draining — new job claims paused");
    println!("  Live claims: {}", state.live_claims);
    let deadline = (wait_timeout > 0).then(|| Instant::now() + Duration::from_secs(wait_timeout));
    while state.live_claims > 0 {
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(format!(
                "timed out after {wait_timeout}s with {} live claim(s) still running",
                state.live_claims
            ));
        }
        tokio::time::sleep(Duration::from_secs(poll_interval)).await;
        state = registry.drain_state(Method::GET, false).await?;
        // A resume or a restart cleared the drain: new claims flow again, so the count no
        // longer means a quiet window.
        if !state.draining {
            return Err(
                "registry is no longer draining (concurrent resume or restart?) — \
                        aborting wait; re-run `mesh-registry registry drain --wait` if you still \
                        intend to drain"
                    .into(),
            );
        }
        println!("  Live claims: {}", state.live_claims);
    }
    println!("All jobs drained — safe to upgrade/restart");
    Ok(())
}

/// The fields of a job the `job status` command prints.
#[derive(Deserialize)]
struct JobRecord {
    id: String,
    capability: String,
    status: String,
    owner_instance_id: Option<String>,
    claim_epoch: i64,
    attempt_count: i64,
    max_retries: i64,
    progress_message: Option<String>,
    lease_expires_at: Option<i64>,
    last_heartbeat_at: Option<i64>,
    recv_cursor: Option<RecvCursor>,
    submitted_at: i64,
    submitted_by: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ReclaimRecord {
    status: String,
    previous_owner_instance_id: Option<String>,
    claim_epoch: i64,
}

/// `job status|cancel|reclaim`: one arm per subcommand, each a request and its printout (long
/// only because the three printouts sit side by side).
pub fn job(command: &JobCommand, connection: &ConnectionArgs) -> ExitCode {
    run(async move {
        let registry = Registry::new(connection)?;
        match command {
            JobCommand::Status { job_id, json } => {
                let body = match registry
                    .call(Method::GET, &format!("/jobs/{job_id}"))
                    .await?
                {
                    (StatusCode::OK, body) => body,
                    (StatusCode::NOT_FOUND, _) => return Err(format!("job not found: {job_id}")),
                    (status, body) => {
                        return Err(format!(
                            "registry returned status {}: {}",
                            status.as_u16(),
                            body.trim()
                        ))
                    }
                };
                if *json {
                    println!("{body}");
                    return Ok(());
                }
                let job: JobRecord = serde_json::from_str(&body)
                    .map_err(|e| format!("failed to parse job response: {e}"))?;
                print_job(&job);
                Ok(())
            }
            JobCommand::Reclaim { job_id } => {
                let body = match registry
                    .call(Method::POST, &format!("/jobs/{job_id}/reclaim"))
                    .await?
                {
                    (StatusCode::OK, body) => body,
                    (StatusCode::NOT_FOUND, _) => return Err(format!("job not found: {job_id}")),
                    (StatusCode::CONFLICT, _) => {
                        return Err(format!(
                            "job {job_id} is already in a terminal state — nothing to reclaim"
                        ))
                    }
                    (status, body) => {
                        return Err(format!(
                            "registry returned status {}: {}",
                            status.as_u16(),
                            body.trim()
                        ))
                    }
                };
                let reclaimed: ReclaimRecord = serde_json::from_str(&body)
                    .map_err(|e| format!("failed to parse reclaim response: {e}"))?;
                println!("Job {job_id} reclaimed");
                println!(
                    "  Evicted owner: {}",
                    reclaimed
                        .previous_owner_instance_id
                        .as_deref()
                        .unwrap_or("(none — was unclaimed)")
                );
                println!("  Status:        {} (claimable)", reclaimed.status);
                println!(
                    "  Claim epoch:   {} (unchanged; next claim mints the next epoch)",
                    reclaimed.claim_epoch
                );
                Ok(())
            }
        }
    })
}

fn print_job(job: &JobRecord) {
    // Whole seconds in, so RFC 3339 without a fraction out, as meshctl prints them.
    let epoch = |at: Option<i64>| match at.and_then(Timestamp::from_unix_seconds) {
        Some(at) if at.unix_seconds() > 0 => rfc3339(at.0),
        _ => "-".to_owned(),
    };
    println!("Job:          {}", job.id);
    println!("Capability:   {}", job.capability);
    println!("Status:       {}", job.status);
    println!(
        "Owner:        {}",
        job.owner_instance_id
            .as_deref()
            .filter(|o| !o.is_empty())
            .unwrap_or("(unclaimed)")
    );
    println!("Claim epoch:  {}", job.claim_epoch);
    println!(
        "Attempts:     {} / {} (max_retries)",
        job.attempt_count, job.max_retries
    );
    if let Some(message) = job.progress_message.as_deref().filter(|m| !m.is_empty()) {
        println!("Progress:     {message}");
    }
    println!("Lease expiry: {}", epoch(job.lease_expires_at));
    println!("Last beat:    {}", epoch(job.last_heartbeat_at));
    if let Some(cursor) = job.recv_cursor.as_ref().filter(|c| !c.is_empty()) {
        let pairs: Vec<String> = cursor
            .iter()
            .map(|(key, seq)| format!("{}={seq}", if key.is_empty() { "(all)" } else { key }))
            .collect();
        println!("Recv cursor:  {}", pairs.join(", "));
    }
    println!(
        "Submitted:    {} by {}",
        epoch(Some(job.submitted_at)),
        job.submitted_by
    );
    if let Some(error) = job.error.as_deref().filter(|e| !e.is_empty()) {
        println!("Error:        {error}");
    }
}
