//! Differential: the framer must return the same requests whether the
//! stream arrives in one slice or cut into slices of any size (resync,
//! garbage and limit handling included).
//!
//! Input: byte 0 picks the slice size (low 7 bits) and a midstream start
//! (high bit); the rest is the stream.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use mirror_agent::capture::FlowKey;
use mirror_agent::flow::FlowId;
use mirror_agent::http::{Budget, FramerCtx, HttpConfig, HttpStats, Request, RequestFramer};

fn frame(stream: &[u8], step: usize, midstream: bool) -> (Vec<Request>, HttpStats) {
    let config = HttpConfig {
        max_head_bytes: 200,
        max_headers: 8,
        max_body_bytes: 100,
    };
    let flow = FlowId {
        key: FlowKey {
            client: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
            server: SocketAddr::from((Ipv4Addr::LOCALHOST, 2)),
        },
        generation: 0,
    };
    let mut framer = if midstream {
        RequestFramer::new_midstream(flow)
    } else {
        RequestFramer::new(flow)
    };
    let mut requests = Vec::new();
    let mut stats = HttpStats::default();
    let mut budget = Budget::new(usize::MAX);
    let mut cx = FramerCtx {
        config: &config,
        stats: &mut stats,
        budget: &mut budget,
        sink: &mut requests,
    };
    for slice in stream.chunks(step) {
        framer.feed(slice, 0, &mut cx);
    }
    (requests, stats)
}

fuzz_target!(|input: &[u8]| {
    let [slicing, stream @ ..] = input else {
        return;
    };
    let step = 1 + usize::from(slicing & 0x7f);
    let midstream = slicing & 0x80 != 0;
    let (whole, whole_stats) = frame(stream, stream.len().max(1), midstream);
    let (sliced, sliced_stats) = frame(stream, step, midstream);
    let view = |r: &Request| {
        (
            r.head.clone(),
            r.body.clone(),
            r.trailers.clone(),
            r.chunked,
        )
    };
    let whole: Vec<_> = whole.iter().map(view).collect();
    let sliced: Vec<_> = sliced.iter().map(view).collect();
    assert_eq!(
        whole, sliced,
        "drops whole {:?} sliced {:?}",
        whole_stats.dropped, sliced_stats.dropped
    );
});
