//! The request framer on arbitrary bytes, cut into arbitrary slices.
//!
//! Input: byte 0 picks the limits (its high bit: bodies over 16 bytes
//! stream, delivered at their head), byte 1 the slicing; the rest is the
//! stream. Checks: no panic, the budget always equals what the framer holds
//! and never exceeds the limits' worth, every delivered request has a head
//! that httparse accepts and a body within the limit, and finishing releases
//! everything.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirror_agent::http::testing::Harness;
use mirror_agent::http::{HttpConfig, SkipReason, StreamBudget, StreamLimits};

fuzz_target!(|input: &[u8]| {
    let [limits, slicing, stream @ ..] = input else {
        return;
    };
    let config = HttpConfig {
        max_head_bytes: 32 + usize::from(limits & 0x0f) * 16,
        max_headers: 1 + usize::from(limits >> 4),
        max_body_bytes: u64::from(limits & 0x3f) * 4,
        stream: (limits & 0x80 != 0).then(|| StreamLimits {
            after: 16,
            lag: 64,
            budget: StreamBudget::new(256),
        }),
    };
    let limit = 2 * config.max_head_bytes + config.max_body_bytes as usize;
    let max_body = config.max_body_bytes;
    let harness = if slicing & 0x80 != 0 {
        Harness::midstream(config)
    } else {
        Harness::new(config)
    };
    // A small shared budget some inputs will exhaust.
    let mut h = harness.with_budget(if slicing & 0x40 != 0 { 64 } else { 1 << 20 });
    let step = 1 + usize::from(slicing & 0x3f);
    for (i, slice) in stream.chunks(step).enumerate() {
        h.feed(slice, i as u64);
        assert_eq!(h.budget.used(), h.framer.buffered());
        assert!(h.framer.buffered() <= limit);
    }
    h.finish(SkipReason::Incomplete);
    assert_eq!(h.budget.used(), 0);
    let requests = &h.requests;
    for r in requests {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(&r.head);
        assert!(
            matches!(parsed, Ok(httparse::Status::Complete(n)) if n == r.head.len()),
            "delivered head does not parse: {:?}",
            r.head
        );
        assert!(r.body.len() as u64 <= max_body);
        assert!(r.method.end <= r.head.len() as u32 && r.target.end <= r.head.len() as u32);
    }
    assert_eq!(h.stats.requests, requests.len() as u64);
});
