//! The dashboard's pages, as `maud` markup: every interpolated value is escaped by the macro, so
//! job payloads, agent names and error messages (all user input) always render as text.
//!
//! Regions marked `data-live` are re-rendered in place by `ui.js` (it fetches the same URL and
//! swaps them); without JavaScript the pages are the same, only static.

use maud::{html, Markup, DOCTYPE};
use mesh_registry_actors::DrainScope;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::Access;
use crate::http::extract::Query;
use crate::service::{DrainView, JOB_COUNT_GROUPS};
use crate::store::JobCount;
use crate::wire::{rfc3339, AgentView, DependencyStatus, Job, JobEvent, JobStatus, Timestamp};

/// How often (ms) an open page re-renders its live regions. The job counts are a scan of the
/// jobs table (about 0.3 s of database time per million jobs), so not much more often than this.
const REFRESH_EVERY_MS: u32 = 5000;

/// Most agents the mesh page lists (`GET /agents` has them all).
const SHOWN_AGENTS: usize = 500;

/// Longest JSON document (payload, result, event) a page shows whole; longer ones are cut.
const SHOWN_JSON_BYTES: usize = 16 * 1024;

/// A job action the dashboard offers: the API's `POST /jobs/{id}/cancel` and `/reclaim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Cancel,
    Reclaim,
}

impl JobAction {
    pub fn parse(raw: &str) -> Option<JobAction> {
        match raw {
            "cancel" => Some(JobAction::Cancel),
            "reclaim" => Some(JobAction::Reclaim),
            _ => None,
        }
    }

    /// Its path segment, and the `done=` keyword the job page thanks it with.
    pub fn keyword(self) -> &'static str {
        match self {
            JobAction::Cancel => "cancel",
            JobAction::Reclaim => "reclaim",
        }
    }
}

/// One page being rendered: its title and what this listener may do.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    access: Access,
    title: &'static str,
}

impl Page {
    pub fn new(access: Access, title: &'static str) -> Page {
        Page { access, title }
    }

    fn admin(self) -> bool {
        self.access == Access::Admin
    }

    /// The frame of every page; `live_every` (ms) makes `ui.js` refresh its live regions.
    fn layout(self, live_every: Option<u32>, content: Markup) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · mesh-registry" }
                    link rel="stylesheet" href="/ui/ui.css";
                    script src="/ui/ui.js" defer {}
                }
                body {
                    header {
                        strong { "mesh-registry" }
                        nav {
                            a href="/ui/mesh" { "Mesh" }
                            a href="/ui/jobs" { "Jobs" }
                            a href="/ui/operations" { "Operations" }
                        }
                        @if self.admin() {
                            span.badge.admin { "admin" }
                        } @else {
                            span.badge title="Actions are on the admin port (MCP_MESH_ADMIN_PORT)" {
                                "read-only"
                            }
                        }
                    }
                    main data-live-every=[live_every] {
                        h1 { (self.title) }
                        (content)
                    }
                }
            }
        }
    }

    pub fn error(self, message: &str) -> Markup {
        self.layout(None, html! { p.error role="alert" { (message) } })
    }

    /// Agents with health, namespace and tools, and where each dependency resolves.
    pub fn mesh(self, agents: &[AgentView]) -> Markup {
        let all = agents.len();
        let agents = &agents[..all.min(SHOWN_AGENTS)];
        self.layout(
            Some(REFRESH_EVERY_MS),
            html! {
                section #mesh-live data-live {
                    h2 { "Agents (" (all) ")" }
                    @if all > agents.len() {
                        p.muted { "The first " (agents.len()) " are shown; GET /agents lists them all." }
                    }
                    table #agents {
                        thead { tr {
                            th { "Name" } th { "Id" } th { "Health" } th { "Namespace" }
                            th { "Version" } th { "Endpoint" } th { "Last seen" }
                            th { "Capabilities (tool)" } th { "Dependencies" }
                        } }
                        tbody {
                            @for agent in agents {
                                tr id={"agent-" (agent.id)} {
                                    td { (agent.name) }
                                    td { code { (agent.id) } }
                                    td { span class={"health " (agent.status.as_str())} { (agent.status.as_str()) } }
                                    td { (agent.namespace) }
                                    td { (agent.version) }
                                    td { code { (agent.endpoint) } }
                                    td { (agent.last_seen) }
                                    td { ul.plain {
                                        @for capability in &agent.capabilities {
                                            li {
                                                (capability.name) " (" code { (capability.function_name) } ")"
                                                @if capability.task { " " span.tag { "task" } }
                                                @if let Some(reason) = &capability.unavailable_reason {
                                                    " " span.health.unhealthy title=(reason) { "unavailable" }
                                                }
                                            }
                                        }
                                    } }
                                    td { (agent.dependencies_resolved) " / " (agent.total_dependencies) }
                                }
                            }
                        }
                    }
                    h2 { "Who resolves to whom" }
                    table #resolutions {
                        thead { tr {
                            th { "Consumer" } th { "Function" } th { "Needs" } th { "Provider" } th { "Tool" }
                        } }
                        tbody {
                            @for agent in agents {
                                @for dependency in &agent.dependency_resolutions {
                                    tr {
                                        td { a href={"#agent-" (agent.id)} { (agent.name) } }
                                        td { code { (dependency.function_name) } }
                                        td { (dependency.capability) }
                                        (provider_cells(dependency.status, dependency.provider_agent_id.as_deref(), dependency.mcp_tool.as_deref()))
                                    }
                                }
                                @for llm in agent.llm_provider_resolutions.iter().flatten() {
                                    tr {
                                        td { a href={"#agent-" (agent.id)} { (agent.name) } }
                                        td { code { (llm.function_name) } }
                                        td { "LLM provider: " (llm.required_capability) }
                                        (provider_cells(llm.status, llm.provider_agent_id.as_deref(), llm.mcp_tool.as_deref()))
                                    }
                                }
                                @for llm in agent.llm_tool_resolutions.iter().flatten() {
                                    tr {
                                        td { a href={"#agent-" (agent.id)} { (agent.name) } }
                                        td { code { (llm.function_name) } }
                                        td { "LLM tools: " (llm.filter_capability) }
                                        (provider_cells(llm.status, llm.provider_agent_id.as_deref(), llm.mcp_tool.as_deref()))
                                    }
                                }
                            }
                        }
                    }
                }
            },
        )
    }

    /// Counts by status and capability, the filter form, one page of jobs and the next link.
    pub fn jobs(
        self,
        query: &Query,
        counts: &[JobCount],
        jobs: &[Job],
        next_cursor: Option<&str>,
    ) -> Markup {
        let status = query.get("status").unwrap_or_default();
        let capability = query.get("capability").unwrap_or_default();
        let owner = query.get("owner_instance_id").unwrap_or_default();
        let next = next_cursor.map(|cursor| {
            let mut url = form_urlencoded::Serializer::new(String::new());
            for name in ["status", "capability", "owner_instance_id", "limit"] {
                if let Some(value) = query.get(name).filter(|v| !v.is_empty()) {
                    url.append_pair(name, value);
                }
            }
            format!("/ui/jobs?{}", url.append_pair("cursor", cursor).finish())
        });
        self.layout(
            Some(REFRESH_EVERY_MS),
            html! {
                form.filters method="get" action="/ui/jobs" {
                    label { "Status "
                        select name="status" {
                            option value="" { "any" }
                            @for each in JobStatus::ALL {
                                option value=(each.as_str()) selected[status == each.as_str()] { (each.as_str()) }
                            }
                        }
                    }
                    label { "Capability " input type="text" name="capability" value=(capability); }
                    label { "Owner " input type="text" name="owner_instance_id" value=(owner); }
                    button type="submit" { "Filter" }
                }
                div #jobs-live data-live {
                    (count_table(counts))
                    table #jobs {
                        thead { tr {
                            th { "Job" } th { "Capability" } th { "Status" } th { "Owner" }
                            th { "Epoch" } th { "Attempts" } th { "Progress" } th { "Submitted" }
                            th { "By" }
                        } }
                        tbody {
                            @for job in jobs {
                                tr {
                                    td { a href={"/ui/jobs/" (job.id)} { code { (job.id) } } }
                                    td { (job.capability) }
                                    td { (status_badge(job.status)) }
                                    td { (job.owner_instance_id.as_deref().unwrap_or("—")) }
                                    td { (job.claim_epoch) }
                                    td { (job.attempt_count) " / " (job.max_retries + 1) }
                                    td { (progress(job.progress)) }
                                    td { (time(job.submitted_at)) }
                                    td { (job.submitted_by) }
                                }
                            }
                        }
                    }
                    @if jobs.is_empty() { p { "No jobs match." } }
                    @if let Some(next) = next { p { a #next-page href=(next) { "Next page →" } } }
                }
            },
        )
    }

    /// A job: its fields, lease, progress, payload and result, its timeline, and its actions.
    pub fn job(self, job: &Job, events: &[JobEvent], shown: i64, done: Option<&str>) -> Markup {
        let last_seq = events.last().map_or(0, |event| event.seq);
        let wait = format!("/ui/jobs/{}/wait?after={last_seq}", job.id);
        self.layout(
            Some(REFRESH_EVERY_MS),
            html! {
                @match done {
                    Some("cancel") => p.notice role="status" { "Job cancelled." },
                    Some("reclaim") => p.notice role="status" { "Job force-reclaimed." },
                    _ => {},
                }
                div #job-live data-live data-wait=(wait) {
                    table.fields #job {
                        tr { th { "Id" } td { code { (job.id) } } }
                        tr { th { "Capability" } td { (job.capability) } }
                        tr { th { "Status" } td #job-status { (status_badge(job.status)) } }
                        @if job.status == JobStatus::InputRequired {
                            tr.prompt { th { "Question" } td { (job.progress_message.as_deref().unwrap_or_default()) } }
                        }
                        tr { th { "Owner" } td { (job.owner_instance_id.as_deref().unwrap_or("—")) } }
                        tr { th { "Claim epoch" } td { (job.claim_epoch) } }
                        tr { th { "Lease expires" } td { (optional_time(job.lease_expires_at)) } }
                        tr { th { "Last heartbeat" } td { (optional_time(job.last_heartbeat_at)) } }
                        tr { th { "Attempts" } td { (job.attempt_count) " of " (job.max_retries + 1) } }
                        tr { th { "Progress" } td { (progress(job.progress)) " " (job.progress_message.as_deref().unwrap_or_default()) } }
                        tr { th { "Max duration" } td { (job.max_duration.map_or("—".into(), |s| format!("{s} s"))) } }
                        tr { th { "Total deadline" } td { (optional_time(job.total_deadline)) } }
                        tr { th { "Submitted" } td { (time(job.submitted_at)) " by " (job.submitted_by) } }
                        @if let Some(error) = &job.error { tr { th { "Error" } td.error { (error) } } }
                    }
                    h2 { "Payload" }
                    pre #payload { (json_text(&job.submitted_payload)) }
                    @if let Some(result) = &job.result {
                        h2 { "Result" }
                        pre #result { (json_text(result)) }
                    }
                    h2 { "Timeline" }
                    table #timeline {
                        thead { tr { th { "Seq" } th { "At" } th { "Type" } th { "Posted by" } th { "Payload" } } }
                        tbody {
                            @for event in events {
                                tr {
                                    td { (event.seq) }
                                    td { (time(event.created_at)) }
                                    td { code { (event.event_type) } }
                                    td { (event.posted_by.as_deref().unwrap_or("—")) }
                                    td { @if let Some(payload) = &event.payload { pre { (json_text(payload)) } } }
                                }
                            }
                        }
                    }
                    @if events.len() as i64 >= shown {
                        p { "The first " (shown) " events are shown; GET /jobs/" (job.id) "/events pages through all." }
                    }
                    @if events.is_empty() { p { "No events yet." } }
                    @if !job.status.is_terminal() {
                        @if self.admin() {
                            p.actions {
                                a.button #cancel href={"/ui/jobs/" (job.id) "/cancel"} { "Cancel job…" }
                                " "
                                a.button #reclaim href={"/ui/jobs/" (job.id) "/reclaim"} { "Force reclaim…" }
                            }
                        } @else {
                            p.muted { "Cancel and force-reclaim are on the admin port." }
                        }
                    }
                }
            },
        )
    }

    /// Drain state of this replica and of the fleet, live claims, counts, and metric charts.
    pub fn operations(self, drain: &DrainView, counts: &[JobCount]) -> Markup {
        let yes_no = |on: bool| if on { "draining" } else { "serving" };
        self.layout(
            Some(REFRESH_EVERY_MS),
            html! {
                div #operations-live data-live {
                    table.fields #drain {
                        tr { th { "This replica" } td #replica-drain { (yes_no(drain.gate.replica)) } }
                        tr { th { "Fleet" } td #fleet-drain { (yes_no(drain.gate.fleet)) } }
                        tr { th { "Claims paused here" } td { (if drain.gate.draining() { "yes" } else { "no" }) } }
                        tr { th { "Live claims (fleet)" } td #live-claims { (drain.live_claims) } }
                    }
                    @if self.admin() {
                        p.actions {
                            @for (scope, name) in [(DrainScope::Replica, "replica"), (DrainScope::Fleet, "fleet")] {
                                @let draining = match scope { DrainScope::Replica => drain.gate.replica, DrainScope::Fleet => drain.gate.fleet };
                                @let action = if draining { "resume" } else { "drain" };
                                a.button id={(action) "-" (name)} href={"/ui/drain?scope=" (name) "&action=" (action)} {
                                    (if draining { "Resume " } else { "Drain " }) "the " (name) "…"
                                }
                                " "
                            }
                        }
                    } @else {
                        p.muted { "Drain and resume are on the admin port." }
                    }
                    (count_table(counts))
                }
                h2 { "Metrics" }
                div #charts data-metrics="/metrics" {
                    noscript { p.muted { "The charts of /metrics need JavaScript." } }
                }
            },
        )
    }

    /// The confirmation of a job action: a form that posts it.
    pub fn confirm_job(self, action: JobAction, job_id: Uuid) -> Markup {
        let (question, button) = match action {
            JobAction::Cancel => (
                "Cancel this job? Its owner is told to stop.",
                "Cancel the job",
            ),
            JobAction::Reclaim => (
                "Force-reclaim this job? Its owner is evicted and the job can be claimed again; \
                 only do this when the owner is known gone.",
                "Force-reclaim the job",
            ),
        };
        self.layout(
            None,
            html! {
                p { (question) }
                p { "Job " a href={"/ui/jobs/" (job_id)} { code { (job_id) } } }
                form method="post" action={"/ui/jobs/" (job_id) "/" (action.keyword())} {
                    @if action == JobAction::Cancel {
                        label { "Reason " input type="text" name="reason" maxlength="1000"; }
                        " "
                    }
                    button #confirm type="submit" { (button) }
                    " "
                    a href={"/ui/jobs/" (job_id)} { "Back" }
                }
            },
        )
    }

    /// The confirmation of a drain or resume.
    pub fn confirm_drain(self, resume: bool, scope: DrainScope) -> Markup {
        let (name, what) = match scope {
            DrainScope::Replica => ("replica", "this replica"),
            DrainScope::Fleet => ("fleet", "every replica (the fleet)"),
        };
        let (action, question) = match resume {
            true => ("resume", "Resume claims on "),
            false => ("drain", "Pause new claims on "),
        };
        self.layout(
            None,
            html! {
                p { (question) (what) "?" }
                form method="post" action="/ui/drain" {
                    input type="hidden" name="scope" value=(name);
                    input type="hidden" name="action" value=(action);
                    button #confirm type="submit" { (if resume { "Resume" } else { "Drain" }) " the " (name) }
                    " "
                    a href="/ui/operations" { "Back" }
                }
            },
        )
    }
}

/// The provider and tool a dependency resolves to, or that it is unresolved (two cells).
fn provider_cells(status: DependencyStatus, provider: Option<&str>, tool: Option<&str>) -> Markup {
    html! {
        @match (provider, status) {
            (Some(provider), DependencyStatus::Available) => {
                td { a href={"#agent-" (provider)} { (provider) } }
                td { code { (tool.unwrap_or_default()) } }
            }
            _ => td colspan="2" { span.health.unhealthy { "unresolved" } },
        }
    }
}

/// Jobs per capability (rows) and status (columns), with a total row.
fn count_table(counts: &[JobCount]) -> Markup {
    let mut capabilities: Vec<&str> = counts.iter().map(|c| c.capability.as_str()).collect();
    capabilities.dedup();
    let count = |capability: Option<&str>, status: JobStatus| -> i64 {
        counts
            .iter()
            .filter(|c| c.status == status.as_str())
            .filter(|c| capability.is_none_or(|capability| c.capability == capability))
            .map(|c| c.jobs)
            .sum()
    };
    html! {
        table #counts {
            thead { tr {
                th { "Capability" }
                @for status in JobStatus::ALL { th { (status.as_str()) } }
            } }
            tbody {
                @for capability in &capabilities {
                    tr {
                        td { a href={"/ui/jobs?capability=" (urlencode(capability))} { (capability) } }
                        @for status in JobStatus::ALL { td { (count(Some(capability), status)) } }
                    }
                }
                tr.total {
                    th { "all" }
                    @for status in JobStatus::ALL {
                        td data-status=(status.as_str()) { (count(None, status)) }
                    }
                }
            }
        }
        @if counts.len() as i64 >= JOB_COUNT_GROUPS {
            p.muted { "Only the first " (JOB_COUNT_GROUPS) " capability/status groups are counted." }
        }
    }
}

fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn status_badge(status: JobStatus) -> Markup {
    html! { span class={"status " (status.as_str())} { (status.as_str()) } }
}

fn progress(value: Option<f64>) -> Markup {
    html! {
        @if let Some(value) = value {
            // What the owner reported, unchecked; a bar when it reads as a fraction.
            @if (0.0..=1.0).contains(&value) { progress max="1" value=(value) {} " " }
            (value)
        } @else { "—" }
    }
}

fn time(at: Timestamp) -> String {
    rfc3339(at.0)
}

fn optional_time(at: Option<Timestamp>) -> String {
    at.map_or_else(|| "—".to_owned(), time)
}

/// A JSON document indented for reading, cut at `SHOWN_JSON_BYTES`.
fn json_text(raw: &RawValue) -> String {
    let mut text = serde_json::from_str::<serde_json::Value>(raw.get())
        .and_then(|value| serde_json::to_string_pretty(&value))
        .unwrap_or_else(|_| raw.get().to_owned());
    if text.len() > SHOWN_JSON_BYTES {
        let mut end = SHOWN_JSON_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("\n… (cut; the API returns it whole)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_json_is_cut_on_a_character_boundary() {
        let long = format!("\"{}\"", "é".repeat(SHOWN_JSON_BYTES));
        let raw = RawValue::from_string(long).unwrap();
        let shown = json_text(&raw);
        assert!(shown.len() < SHOWN_JSON_BYTES + 100);
        assert!(shown.ends_with("(cut; the API returns it whole)"));
    }

    #[test]
    fn what_users_wrote_is_escaped() {
        let page = Page::new(Access::ReadOnly, "Job");
        let html = page
            .error("<script>alert(1)</script>\" onload=\"x")
            .into_string();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot; onload=&quot;x"));
        assert!(!html.contains("<script>alert"));
    }
}
