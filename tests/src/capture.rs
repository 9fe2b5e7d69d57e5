//! Runs the capture stage in a namespace and keeps everything it delivers,
//! per flow, for the tests to compare with what was sent.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use mirror_agent::capture::{
    AttachMode, Capture, CaptureOptions, CounterReader, Direction, DrainStats, Event, EventKind,
    EventSink, FlowKey, KernelCounters,
};
use mirror_common::{Counter, TCP_FIN, TCP_SYN, connection_hash, fold_address, is_sampled};

use mirror_testkit::Netns;

/// How often the runner thread looks at its stop flag while the ring is idle.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// When the runner empties the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drain {
    /// As records arrive, like the agent.
    Continuous,
    /// Only after [`CaptureRunner::stop`] detached the program: the ring
    /// fills up and the kernel must count what it could not write.
    AtStop,
}

/// A [`Capture`] running on its own thread inside a namespace, handing
/// every event to a sink `S`: by default a [`Collector`] that keeps the raw
/// records ([`CaptureRunner::start`], [`CaptureRunner::stop`]), or any
/// [`EventSink`] the test passes in, such as the agent's own
/// `FlowTable` ([`CaptureRunner::start_sink`], [`CaptureRunner::finish`]).
/// Dropped without being stopped (a failed test), it tells the thread to
/// detach and end, without waiting for it.
pub struct CaptureRunner<S = Collector> {
    stop: Arc<AtomicBool>,
    counters: Arc<CounterReader>,
    attached_at: Instant,
    thread: Option<JoinHandle<Result<Finished<S>>>>,
}

impl CaptureRunner {
    /// Loads and attaches the program in `netns` and drains continuously.
    /// Returns once the program is attached.
    pub fn start(netns: &Netns, options: CaptureOptions) -> Result<Self> {
        Self::start_with(netns, options, Drain::Continuous)
    }

    pub fn start_with(netns: &Netns, options: CaptureOptions, drain: Drain) -> Result<Self> {
        CaptureRunner::start_sink(netns, options, drain, Collector::default())
    }

    /// Detaches, drains what is left and returns everything captured.
    pub fn stop(self) -> Result<Captured> {
        let finished = self.finish()?;
        Ok(Captured {
            flows: finished.sink.flows,
            responses: finished.sink.responses,
            counters: finished.counters,
            response_counters: finished.response_counters,
            drain: finished.drain,
            attach_mode: finished.attach_mode,
        })
    }
}

impl<S: EventSink + Send + 'static> CaptureRunner<S> {
    /// Loads and attaches the program in `netns`; the capture thread then
    /// hands every record to `sink` (see [`Drain`] for when). Returns once
    /// the program is attached; [`CaptureRunner::finish`] gives `sink` back.
    pub fn start_sink(
        netns: &Netns,
        options: CaptureOptions,
        drain: Drain,
        sink: S,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_stop = Arc::clone(&stop);
        let thread = netns.spawn(move || -> Result<Finished<S>> {
            let mut sink = sink;
            let mut capture = match Capture::start(&options) {
                Ok(capture) => capture,
                Err(err) => {
                    let message = format!("{:#}", anyhow::Error::from(err));
                    let _ = ready_tx.send(Err(message.clone()));
                    bail!(message);
                }
            };
            // Every packet that reaches the interface from now on is seen.
            let attached_at = Instant::now();
            let _ = ready_tx.send(Ok((capture.counter_reader(), attached_at)));
            while !thread_stop.load(Ordering::Acquire) {
                match drain {
                    Drain::Continuous => {
                        capture.poll(&mut sink, POLL_INTERVAL)?;
                    }
                    Drain::AtStop => std::thread::park_timeout(POLL_INTERVAL),
                }
            }
            // Like the agent at shutdown: stop copying, then empty the ring.
            let attach_mode = capture.attach_mode();
            capture.detach();
            capture.drain(&mut sink);
            Ok(Finished {
                sink,
                counters: capture.kernel_counters()?,
                response_counters: capture.response_counters()?,
                drain: capture.drain_stats(),
                attach_mode,
            })
        });
        match ready_rx.recv() {
            Ok(Ok((counters, attached_at))) => Ok(Self {
                stop,
                counters,
                attached_at,
                thread: Some(thread),
            }),
            Ok(Err(message)) => {
                let _ = thread.join();
                Err(anyhow!("capture did not start: {message}"))
            }
            Err(_) => match thread.join() {
                Ok(result) => Err(anyhow!("capture thread ended early: {:?}", result.err())),
                Err(panic) => std::panic::resume_unwind(panic),
            },
        }
    }

    /// Detaches, drains what is left into the sink and returns it.
    pub fn finish(mut self) -> Result<Finished<S>> {
        let thread = self.thread.take().expect("only finish() takes the thread");
        self.stop.store(true, Ordering::Release);
        thread.thread().unpark();
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<S> CaptureRunner<S> {
    /// The kernel counters now (traffic may still be in flight).
    pub fn counters(&self) -> Result<KernelCounters> {
        Ok(self.counters.read()?)
    }

    /// When `Capture::start` returned on the capture thread: the program
    /// was attached, so every packet that reached the interface after this
    /// instant went through it.
    pub fn attached_at(&self) -> Instant {
        self.attached_at
    }
}

impl<S> Drop for CaptureRunner<S> {
    fn drop(&mut self) {
        if let Some(thread) = &self.thread {
            self.stop.store(true, Ordering::Release);
            thread.thread().unpark();
        }
    }
}

/// What a capture run with a sink of the test's own ended with.
#[derive(Debug)]
pub struct Finished<S> {
    /// The sink, after the last record was drained into it.
    pub sink: S,
    /// Read after the program was detached and the ring emptied.
    pub counters: KernelCounters,
    /// The same for v1's responses (zeros unless captured).
    pub response_counters: KernelCounters,
    pub drain: DrainStats,
    pub attach_mode: AttachMode,
}

/// What one capture run delivered.
#[derive(Debug)]
pub struct Captured {
    pub flows: BTreeMap<FlowKey, FlowCapture>,
    /// Server → client streams (only when responses were captured).
    pub responses: BTreeMap<FlowKey, FlowCapture>,
    /// Read after the program was detached and the ring emptied.
    pub counters: KernelCounters,
    /// The same for v1's responses (zeros unless captured).
    pub response_counters: KernelCounters,
    pub drain: DrainStats,
    pub attach_mode: AttachMode,
}

impl Captured {
    /// The flow whose client is `client` (tests use one server address).
    pub fn flow_from(&self, client: SocketAddr) -> Option<&FlowCapture> {
        self.flows
            .iter()
            .find(|(key, _)| key.client == client)
            .map(|(_, flow)| flow)
    }

    /// Every record the program wrote, drained and decoded; every packet
    /// and every record counted once with its outcome.
    pub fn check_accounting(&self) -> Result<()> {
        for c in [&self.counters, &self.response_counters] {
            ensure!(c.packets_balance(), "packet counters do not add up: {c}");
            ensure!(c.records_balance(), "record counters do not add up: {c}");
        }
        ensure!(
            self.drain.decode_errors == 0,
            "{} records did not decode",
            self.drain.decode_errors
        );
        let emitted = self.counters.get(Counter::RecordsEmitted)
            + self.response_counters.get(Counter::RecordsEmitted);
        ensure!(
            self.drain.records == emitted,
            "drained {} records, the kernel emitted {emitted}",
            self.drain.records,
        );
        let delivered: u64 = self
            .flows
            .values()
            .chain(self.responses.values())
            .map(FlowCapture::record_count)
            .sum();
        ensure!(
            delivered == self.drain.records,
            "the sink got {delivered} records of {} drained",
            self.drain.records
        );
        Ok(())
    }

    /// Payload bytes delivered in data records, all flows.
    pub fn data_bytes(&self) -> u64 {
        self.flows.values().map(|f| f.data_bytes() as u64).sum()
    }
}

/// A data record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataChunk {
    pub seq: u32,
    pub bytes: Vec<u8>,
}

/// A control record (SYN, FIN or RST).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlRecord {
    pub seq: u32,
    pub payload_len: u32,
    pub flags: u8,
}

impl ControlRecord {
    /// Whether the segment carried `flag` (`TCP_SYN`, `TCP_FIN`, ...).
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Everything captured of one direction of a connection, in ring order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowCapture {
    pub data: Vec<DataChunk>,
    pub controls: Vec<ControlRecord>,
    /// Known gaps `(seq, len)` the kernel could not copy.
    pub truncations: Vec<(u32, u32)>,
}

impl FlowCapture {
    /// The segment that opens its direction: the client's SYN, or the
    /// server's SYN-ACK in a response stream.
    pub fn syn(&self) -> Option<&ControlRecord> {
        self.controls.iter().find(|c| c.has(TCP_SYN))
    }

    pub fn fin(&self) -> Option<&ControlRecord> {
        self.controls.iter().find(|c| c.has(TCP_FIN))
    }

    pub fn data_bytes(&self) -> usize {
        self.data.iter().map(|c| c.bytes.len()).sum()
    }

    pub fn record_count(&self) -> u64 {
        (self.data.len() + self.controls.len() + self.truncations.len()) as u64
    }

    /// The stream ([`FlowCapture::stream`]), failing unless it is exactly
    /// `sent`, ended by a FIN.
    pub fn whole_stream(&self, sent: &[u8]) -> Result<Stream> {
        let stream = self.stream()?;
        ensure!(
            stream.bytes == sent,
            "captured stream differs from the bytes sent at offset {:?} ({} captured, {} sent)",
            crate::first_difference(&stream.bytes, sent),
            stream.bytes.len(),
            sent.len()
        );
        ensure!(self.fin().is_some(), "no FIN captured");
        Ok(stream)
    }

    /// The client's byte stream rebuilt from the data chunks: offsets are
    /// relative to the first data byte (SYN seq + 1, wrapping), chunks are
    /// sorted by offset and must tile the stream with no gap. A chunk that
    /// overlaps bytes already placed is a retransmission and must repeat
    /// them exactly; such bytes are counted, not placed twice. When a FIN
    /// was seen, the stream must end exactly where it sits.
    pub fn stream(&self) -> Result<Stream> {
        let syn = self.syn().context("no SYN captured for the flow")?;
        let base = syn.seq.wrapping_add(1);
        let mut chunks: Vec<(u32, &[u8])> = self
            .data
            .iter()
            .map(|c| (c.seq.wrapping_sub(base), c.bytes.as_slice()))
            .collect();
        chunks.sort_by_key(|(offset, bytes)| (*offset, bytes.len()));
        let mut bytes: Vec<u8> = Vec::new();
        let mut retransmitted = 0u64;
        for (offset, chunk) in chunks {
            let offset = offset as usize;
            if offset > u32::MAX as usize / 2 {
                bail!(
                    "a chunk starts {} bytes before the SYN",
                    u32::MAX as usize + 1 - offset
                );
            }
            if offset > bytes.len() {
                bail!(
                    "gap: bytes {}..{offset} missing ({} bytes)",
                    bytes.len(),
                    offset - bytes.len()
                );
            }
            let overlap = (bytes.len() - offset).min(chunk.len());
            if bytes[offset..offset + overlap] != chunk[..overlap] {
                bail!("a chunk at offset {offset} contradicts bytes captured before");
            }
            retransmitted += overlap as u64;
            bytes.extend_from_slice(&chunk[overlap..]);
        }
        if let Some(fin) = self.fin() {
            let fin_offset = fin.seq.wrapping_add(fin.payload_len).wrapping_sub(base) as usize;
            ensure!(
                fin_offset == bytes.len(),
                "FIN at offset {fin_offset}, stream ends at {}",
                bytes.len()
            );
        }
        Ok(Stream {
            bytes,
            retransmitted,
        })
    }
}

/// A rebuilt byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    pub bytes: Vec<u8>,
    /// Bytes captured more than once (retransmissions), identical each time.
    pub retransmitted: u64,
}

/// The default sink of a [`CaptureRunner`]: copies every event into
/// per-flow buffers.
#[derive(Debug, Default)]
pub struct Collector {
    flows: BTreeMap<FlowKey, FlowCapture>,
    /// The server → client streams (egress), when captured.
    responses: BTreeMap<FlowKey, FlowCapture>,
}

impl Collector {
    /// Everything collected so far, per flow (client → server).
    pub fn flows(&self) -> &BTreeMap<FlowKey, FlowCapture> {
        &self.flows
    }

    /// The server → client streams, per flow.
    pub fn responses(&self) -> &BTreeMap<FlowKey, FlowCapture> {
        &self.responses
    }

    pub fn into_flows(self) -> BTreeMap<FlowKey, FlowCapture> {
        self.flows
    }
}

impl EventSink for Collector {
    fn on_event(&mut self, event: &Event<'_>) {
        let streams = match event.direction {
            Direction::ToServer => &mut self.flows,
            Direction::ToClient => &mut self.responses,
        };
        let flow = streams.entry(event.flow).or_default();
        match event.kind {
            EventKind::Data { seq, payload } => flow.data.push(DataChunk {
                seq,
                bytes: payload.to_vec(),
            }),
            EventKind::Control {
                seq,
                payload_len,
                flags,
            } => flow.controls.push(ControlRecord {
                seq,
                payload_len,
                flags,
            }),
            EventKind::Truncated { seq, len } => flow.truncations.push((seq, len)),
        }
    }
}

/// Hands every event, and every batch end, to two sinks in turn: say a
/// [`Collector`] for the raw records and the agent's flow table, to see
/// what the stage under test was given.
#[derive(Debug, Default)]
pub struct Tee<A, B>(pub A, pub B);

impl<A: EventSink, B: EventSink> EventSink for Tee<A, B> {
    fn on_event(&mut self, event: &Event<'_>) {
        self.0.on_event(event);
        self.1.on_event(event);
    }

    fn on_batch_end(&mut self, now_ns: u64) {
        self.0.on_batch_end(now_ns);
        self.1.on_batch_end(now_ns);
    }
}

/// A counter-by-counter difference of two snapshots (`after - before`).
pub fn counter_delta(
    before: &KernelCounters,
    after: &KernelCounters,
) -> BTreeMap<&'static str, u64> {
    Counter::ALL
        .iter()
        .map(|c| (c.as_str(), after.get(*c) - before.get(*c)))
        .filter(|(_, delta)| *delta != 0)
        .collect()
}

/// Whether the kernel samples the connection `client → server` at
/// `sample_bp` basis points with `seed`: the same hash on the same record
/// address layout (IPv4 in the first 4 bytes, the rest zero).
pub fn predicted_sampled(
    client: SocketAddr,
    server: SocketAddr,
    seed: u32,
    sample_bp: u32,
) -> bool {
    let word = |ip: IpAddr| {
        let mut addr = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => addr[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => addr = v6.octets(),
        }
        fold_address(&addr)
    };
    let hash = connection_hash(
        word(client.ip()),
        word(server.ip()),
        client.port(),
        server.port(),
        seed,
    );
    is_sampled(hash, sample_bp)
}

#[cfg(test)]
mod tests {
    use mirror_common::TCP_ACK;

    use super::*;

    const ISN: u32 = u32::MAX - 2; // data crosses the 2^32 wrap after 2 bytes

    fn flow(chunks: &[(u32, &[u8])], fin_at: Option<u32>) -> FlowCapture {
        let mut controls = vec![ControlRecord {
            seq: ISN,
            payload_len: 0,
            flags: TCP_SYN,
        }];
        if let Some(offset) = fin_at {
            controls.push(ControlRecord {
                seq: ISN.wrapping_add(1).wrapping_add(offset),
                payload_len: 0,
                flags: TCP_FIN | TCP_ACK,
            });
        }
        FlowCapture {
            data: chunks
                .iter()
                .map(|(offset, bytes)| DataChunk {
                    seq: ISN.wrapping_add(1).wrapping_add(*offset),
                    bytes: bytes.to_vec(),
                })
                .collect(),
            controls,
            truncations: vec![],
        }
    }

    #[test]
    fn chunks_out_of_order_across_the_wrap_make_the_stream() {
        let stream = flow(&[(4, b"efgh"), (0, b"abcd")], Some(8))
            .stream()
            .unwrap();
        assert_eq!(stream.bytes, b"abcdefgh");
        assert_eq!(stream.retransmitted, 0);
    }

    #[test]
    fn an_identical_retransmission_is_counted_not_repeated() {
        let stream = flow(&[(0, b"abcd"), (2, b"cdef"), (0, b"abcd")], None)
            .stream()
            .unwrap();
        assert_eq!(stream.bytes, b"abcdef");
        assert_eq!(stream.retransmitted, 6);
    }

    #[test]
    fn gaps_conflicts_and_a_misplaced_fin_are_errors() {
        let gap = flow(&[(0, b"ab"), (3, b"d")], None).stream().unwrap_err();
        assert!(gap.to_string().contains("gap"), "{gap}");
        let conflict = flow(&[(0, b"abcd"), (2, b"XY")], None)
            .stream()
            .unwrap_err();
        assert!(conflict.to_string().contains("contradicts"), "{conflict}");
        let fin = flow(&[(0, b"abcd")], Some(5)).stream().unwrap_err();
        assert!(fin.to_string().contains("FIN"), "{fin}");
        let no_syn = FlowCapture::default().stream().unwrap_err();
        assert!(no_syn.to_string().contains("SYN"), "{no_syn}");
    }

    #[test]
    fn prediction_uses_the_record_address_layout() {
        let client: SocketAddr = "10.200.0.1:40000".parse().unwrap();
        let server: SocketAddr = "10.200.0.2:8080".parse().unwrap();
        assert!(predicted_sampled(client, server, 0, 10_000));
        assert!(!predicted_sampled(client, server, 0, 0));
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[10, 200, 0, 1]);
        let src = fold_address(&addr);
        addr[..4].copy_from_slice(&[10, 200, 0, 2]);
        let dst = fold_address(&addr);
        let hash = connection_hash(src, dst, 40000, 8080, 7);
        assert_eq!(
            predicted_sampled(client, server, 7, 5_000),
            hash % 10_000 < 5_000
        );
    }
}
