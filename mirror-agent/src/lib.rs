//! mirror-agent: turns the TCP payload copied by the kernel program back into
//! HTTP requests and replays them to shadow targets.
//!
//! The modules follow the data, each importing only from those before it:
//! `capture` (load, attach, drain the ring) → `flow` (TCP reassembly) →
//! `http` (requests and v1's responses framed, HTTP/1 in `http/h1`, and
//! paired into exchanges) → `route` (which target gets
//! what, rewritten how) → `shadow` (queues, workers, connections per target)
//! → `compare` (each target's answer against v1's: the verdict per endpoint).
//! `file` holds the recording and replay sources and sinks (`.gor`, pcap).
//! `telemetry` (metrics, summary, logs) reads them all, `config` turns flags
//! and the file into their settings, and `app` assembles the agent. `clock`
//! is the time source and the one periodic wakeup the capture and the shadow
//! connections share; `private_file` creates every file the agent writes
//! (0600, directories 0700); `redact` says which names hold credentials and
//! hides their values wherever the agent shows or writes them. How a request and a response travel through them, step
//! by step: `docs/architecture.md` in the repository.

pub mod app;
pub mod capture;
pub mod clock;
pub mod compare;
pub mod config;
pub mod file;
pub mod flow;
pub mod http;
pub mod private_file;
pub mod redact;
pub mod route;
pub mod shadow;
pub mod telemetry;
