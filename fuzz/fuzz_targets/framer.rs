//! The request framer on arbitrary bytes, cut into arbitrary slices.
//!
//! Input: byte 0 picks the limits, byte 1 the slicing; the rest is the
//! stream. Checks: no panic, the budget always equals what the framer holds
//! and never exceeds the limits' worth, every delivered request has a head
//! that httparse accepts and a body within the limit, and finishing releases
//! everything.
#![no_main]

use std::net::{Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use mirror_agent::capture::FlowKey;
use mirror_agent::flow::FlowId;
use mirror_agent::http::{
    Budget, DropReason, FramerCtx, HttpConfig, HttpStats, Request, RequestFramer,
};

fuzz_target!(|input: &[u8]| {
    let [limits, slicing, stream @ ..] = input else {
        return;
    };
    let config = HttpConfig {
        max_head_bytes: 32 + usize::from(limits & 0x0f) * 16,
        max_headers: 1 + usize::from(limits >> 4),
        max_body_bytes: u64::from(limits & 0x3f) * 4,
    };
    let flow = FlowId {
        key: FlowKey {
            client: SocketAddr::from((Ipv4Addr::LOCALHOST, 1)),
            server: SocketAddr::from((Ipv4Addr::LOCALHOST, 2)),
        },
        generation: 0,
    };
    let mut framer = if slicing & 0x80 != 0 {
        RequestFramer::new_midstream(flow)
    } else {
        RequestFramer::new(flow)
    };
    let mut requests: Vec<Request> = Vec::new();
    let mut stats = HttpStats::default();
    // A small shared budget some inputs will exhaust.
    let mut budget = Budget::new(if slicing & 0x40 != 0 { 64 } else { 1 << 20 });
    let step = 1 + usize::from(slicing & 0x3f);
    let mut cx = FramerCtx {
        config: &config,
        stats: &mut stats,
        budget: &mut budget,
        sink: &mut requests,
    };
    for (i, slice) in stream.chunks(step).enumerate() {
        framer.feed(slice, i as u64, &mut cx);
        assert_eq!(cx.budget.used(), framer.buffered());
        assert!(framer.buffered() <= 2 * config.max_head_bytes + config.max_body_bytes as usize);
    }
    framer.finish(DropReason::Incomplete, &mut cx);
    assert_eq!(cx.budget.used(), 0);
    for r in &requests {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(&r.head);
        assert!(
            matches!(parsed, Ok(httparse::Status::Complete(n)) if n == r.head.len()),
            "delivered head does not parse: {:?}",
            r.head
        );
        assert!(r.body.len() as u64 <= config.max_body_bytes);
        assert!(r.method.end <= r.head.len() as u32 && r.target.end <= r.head.len() as u32);
    }
    assert_eq!(stats.requests, requests.len() as u64);
});
