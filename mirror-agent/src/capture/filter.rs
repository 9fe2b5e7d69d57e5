//! Telling the kernel program which payload the agent no longer needs
//! ([`MAP_IGNORE`]): the rest of a body it skips, every byte of a
//! connection it gave up (TLS, HTTP/2, upgraded, refused). Those bytes then
//! never take room in the ring, so one client streaming at line rate cannot
//! crowd out the other clients' requests.

use std::net::SocketAddr;

use aya::maps::{HashMap, MapData};
use mirror_common::{ConnKey, FAMILY_IPV4, FAMILY_IPV6, Ignore, MAP_IGNORE};
use tracing::warn;

use super::FlowKey;

/// Where the flow stage says what payload it no longer needs.
pub trait PayloadFilter: Send {
    /// What of `flow`'s payload is not needed.
    fn ignore(&mut self, flow: &FlowKey, what: Ignore);

    /// The connection ended: whatever was said of it goes.
    fn forget(&mut self, flow: &FlowKey);
}

/// Without a kernel program (tests, benches, replays of recorded events):
/// nothing is filtered.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFilter;

impl PayloadFilter for NoFilter {
    fn ignore(&mut self, _flow: &FlowKey, _what: Ignore) {}
    fn forget(&mut self, _flow: &FlowKey) {}
}

/// The program's [`MAP_IGNORE`].
pub struct KernelFilter {
    map: HashMap<MapData, ConnKey, Ignore>,
    /// Updates the kernel refused: the bytes then still come, and the flow
    /// stage skips them itself.
    failures: u64,
}

impl KernelFilter {
    pub(super) fn new(map: HashMap<MapData, ConnKey, Ignore>) -> Self {
        Self { map, failures: 0 }
    }

    fn failed(&mut self, what: &str, err: aya::maps::MapError) {
        self.failures += 1;
        if self.failures.is_power_of_two() {
            warn!(map = MAP_IGNORE, error = %err, total = self.failures, "{what} failed: the bytes still reach the ring");
        }
    }
}

impl PayloadFilter for KernelFilter {
    fn ignore(&mut self, flow: &FlowKey, what: Ignore) {
        if let Err(err) = self.map.insert(conn_key(flow), what, 0) {
            self.failed("updating the ignore map", err);
        }
    }

    fn forget(&mut self, flow: &FlowKey) {
        // Most flows never had an entry: "not found" is the common answer.
        let _ = self.map.remove(&conn_key(flow));
    }
}

/// The program's key for a connection: client → server, an IPv4 address in
/// the first 4 bytes.
pub fn conn_key(flow: &FlowKey) -> ConnKey {
    fn bytes(addr: &SocketAddr) -> [u8; 16] {
        match addr {
            SocketAddr::V4(a) => {
                let mut out = [0; 16];
                out[..4].copy_from_slice(&a.ip().octets());
                out
            }
            SocketAddr::V6(a) => a.ip().octets(),
        }
    }
    ConnKey {
        src_addr: bytes(&flow.client),
        dst_addr: bytes(&flow.server),
        src_port: flow.client.port(),
        dst_port: flow.server.port(),
        family: if flow.client.is_ipv4() {
            FAMILY_IPV4
        } else {
            FAMILY_IPV6
        },
        _pad: [0; 3],
    }
}

#[cfg(test)]
mod tests {
    use mirror_common::{RecordHeader, RecordKind};

    use super::*;
    use crate::capture::decode;

    /// The key the agent computes is the one the program computes from the
    /// same segment's record header.
    #[test]
    fn the_agent_and_the_program_key_a_connection_alike() {
        for (src, dst, family) in [
            ([10, 200, 0, 1], [10, 200, 0, 2], FAMILY_IPV4),
            ([0xfd, 0, 2, 0], [0xfd, 0, 2, 1], FAMILY_IPV6),
        ] {
            let mut header = RecordHeader {
                timestamp_ns: 1,
                src_addr: [0; 16],
                dst_addr: [0; 16],
                seq: 7,
                len: 0,
                ifindex: 2,
                src_port: 40_000,
                dst_port: 8080,
                family,
                tcp_flags: 0x02,
                kind: RecordKind::Control as u8,
                direction: 0,
                _pad: [0; 4],
            };
            let n = if family == FAMILY_IPV4 { 4 } else { 16 };
            header.src_addr[..4].copy_from_slice(&src);
            header.dst_addr[..4].copy_from_slice(&dst);
            if n == 16 {
                header.src_addr[15] = 1;
                header.dst_addr[15] = 2;
            }
            // SAFETY: a plain repr(C) struct viewed as its bytes.
            let record = unsafe {
                std::slice::from_raw_parts(
                    (&header as *const RecordHeader).cast::<u8>(),
                    size_of::<RecordHeader>(),
                )
            };
            let event = decode(record).expect("decodes");
            assert_eq!(conn_key(&event.flow), ConnKey::of(&header));
        }
    }
}
