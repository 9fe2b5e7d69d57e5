//! `mirror-agent`: attach the capture program to an interface and mirror the
//! HTTP requests it sees to shadow targets.

use std::process::ExitCode;

use clap::Parser;
use mirror_agent::{
    capture::{
        Capture, CaptureOptions, DEFAULT_RING_BYTES, DRAIN_INTERVAL, Event, EventKind, EventSink,
    },
    config::Cli,
    logging,
};
use tracing::{debug, error, info};

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            error!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One clear line for the operator; the chain of causes follows.
            error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut options = CaptureOptions::new(cli.iface.clone(), cli.port.clone());
    options.sample_bp = cli.sample_basis_points();
    options.ring_bytes = cli.ring_size.unwrap_or(DEFAULT_RING_BYTES);
    options.attach = cli.attach;
    let mut capture = Capture::start(&options)?;

    let mut sink = ConnectionLog::default();
    capture
        .run(&mut sink, shutdown_signal(), DRAIN_INTERVAL)
        .await?;
    let counters = capture.kernel_counters()?;
    info!(
        connections_opened = sink.opened,
        connections_closed = sink.closed,
        payload_bytes = sink.payload_bytes,
        "capture stopped"
    );
    println!("kernel counters: {counters}");
    drop(capture);
    Ok(())
}

/// Until the flow stage lands: one debug line per connection opened or
/// closed, and byte totals.
#[derive(Default)]
struct ConnectionLog {
    opened: u64,
    closed: u64,
    payload_bytes: u64,
}

impl EventSink for ConnectionLog {
    fn on_event(&mut self, event: &Event<'_>) {
        match event.kind {
            EventKind::Data { payload, .. } => self.payload_bytes += payload.len() as u64,
            EventKind::Control { .. } if event.is_syn() => {
                self.opened += 1;
                debug!(flow = %event.flow, "connection opened");
            }
            EventKind::Control { .. } => {
                self.closed += 1;
                let how = if event.is_rst() { "reset" } else { "fin" };
                debug!(flow = %event.flow, how, "connection closed");
            }
            EventKind::Truncated { len, .. } => {
                debug!(flow = %event.flow, len, "segment truncated")
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            error!("cannot listen for SIGTERM: {err}");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received, detaching"),
        _ = term.recv() => info!("SIGTERM received, detaching"),
    }
}
