//! Differential: the framer must return the same requests whether one
//! client write arrives in one slice or cut into slices of any size
//! (desync, probation, garbage and limit handling included).
//!
//! Input: byte 0 picks the slice size (low 7 bits) and a midstream start
//! (high bit); the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_agent::http::testing::Harness;
use mirror_agent::http::{HttpConfig, HttpStats, Request};

fn frame(stream: &[u8], step: usize, midstream: bool) -> (Vec<Request>, HttpStats) {
    let config = HttpConfig {
        max_head_bytes: 200,
        max_headers: 8,
        max_body_bytes: 100,
        stream: None,
    };
    let mut harness = if midstream {
        Harness::midstream(config)
    } else {
        Harness::new(config)
    };
    let slices: Vec<&[u8]> = stream.chunks(step).collect();
    harness.feed_all(&slices);
    (harness.requests, harness.stats)
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
