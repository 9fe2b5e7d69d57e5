//! mirror-agent: turns the TCP payload copied by the kernel program back into
//! HTTP requests and replays them to shadow targets.
//!
//! The modules follow the data, each importing only from those before it:
//! `capture` (load, attach, drain the ring) → `flow` (TCP reassembly) →
//! `http` (request framing) → `route` (which target gets what, rewritten
//! how) → `shadow` (queues, workers, connections per target); `telemetry`
//! (metrics, summary, logs) reads them all, `config` turns flags and the
//! file into their settings, and `app` assembles the agent. `clock` is the
//! time source and the one periodic wakeup the capture and the shadow
//! connections share.

pub mod app;
pub mod capture;
pub mod clock;
pub mod compare;
pub mod config;
pub mod file;
pub mod flow;
pub mod http;
pub mod route;
pub mod shadow;
pub mod telemetry;
