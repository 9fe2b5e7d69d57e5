//! TC ingress classifier: copies the TCP payload of the service ports into
//! a ring buffer, and never touches the packet.
//!
//! Whatever happens below, the program returns `TC_ACT_UNSPEC` (-1): "continue
//! with the next program / normal processing" in both attach modes. Under
//! TCX that is `TCX_NEXT`, the only value that runs the programs attached
//! after ours (a CNI's, another agent's); any other value ends the chain
//! there, `TC_ACT_PIPE` (3) included. For a netlink (clsact, direct-action)
//! filter a negative value is "no verdict": the next filter runs, and with
//! none the packet goes on. A tail-called program's value is the run's, so
//! the copier returns it too. It never drops, delays or rewrites.
#![no_std]
#![no_main]
// Inline BPF assembly for the checked helper call (copy.rs); the eBPF crate
// builds with nightly only.
#![feature(asm_experimental_arch)]

mod capture;
mod copy;
mod parse;
mod words;

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use mirror_common::{TO_CLIENT, TO_SERVER};

/// Requests: attached at ingress.
#[classifier]
pub fn mirror_ingress(ctx: TcContext) -> i32 {
    capture::on_packet(&ctx, TO_SERVER);
    TC_ACT_UNSPEC
}

/// v1's responses: attached at egress when a target compares answers.
#[classifier]
pub fn mirror_egress(ctx: TcContext) -> i32 {
    capture::on_packet(&ctx, TO_CLIENT);
    TC_ACT_UNSPEC
}

/// Tail-called by `mirror_ingress` with a copy job; never attached itself.
#[classifier]
pub fn mirror_copy(ctx: TcContext) -> i32 {
    copy::copy_payload(&ctx);
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never run.
    loop {}
}
