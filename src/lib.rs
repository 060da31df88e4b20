//! mesh-registry: a registry for an MCP Mesh, wire-compatible with the Go reference (v3.7).
//!
//! `store` owns every SQL statement, `wire` every JSON shape, `config` every knob, `http` the
//! routes and their errors; the actors (in-memory state only) live in the `actors/` crate.

pub mod cli;
pub mod config;
pub mod domain;
pub mod go_duration;
pub mod http;
pub mod metrics;
pub mod migrate;
pub mod operator;
pub mod resolve;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod trace_pipeline;
pub mod trust;
pub mod wire;
