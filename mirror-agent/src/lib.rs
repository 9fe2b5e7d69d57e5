//! mirror-agent: turns the TCP payload copied by the kernel program back into
//! HTTP requests and replays them to shadow targets.
//!
//! The modules follow the data: `capture` (load, attach, drain the ring) →
//! `flow` (TCP reassembly) → `http` (request framing) → `route` → `shadow`;
//! `config` and `logging` set the agent up; `clock` is the one periodic
//! wakeup the capture and the shadow connections share.

pub mod capture;
pub mod clock;
pub mod config;
pub mod flow;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod route;
pub mod shadow;
pub mod summary;
