//! HTTP-level tests of the registry: the real application against a real PostgreSQL, one fresh
//! database per test. Case numbers refer to `jobs-contract.md` §9 and `decisions.md` rows.

mod agents;
mod batch;
mod claim;
mod drain;
mod embedded;
mod events;
mod helpers;
mod hostile;
mod https;
mod import;
mod jobs;
mod leases;
mod lifecycle;
mod llm;
mod mesh_events;
mod metrics;
mod namespace;
mod ownership;
mod plans;
mod postgres_tls;
mod proxy;
mod replicas;
mod resolution_audit;
mod rules;
mod schema;
mod schemas;
mod server;
mod trace_pipeline;
mod tracing;
mod ui;
