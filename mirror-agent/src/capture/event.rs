//! Decoding of ring records into [`Event`]s: the one place where bytes from
//! the kernel become typed values, every field checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mirror_common::{
    CHUNK_SIZE, FAMILY_IPV4, FAMILY_IPV6, RECORD_HEADER_SIZE, RecordHeader, RecordKind, TCP_FIN,
    TCP_RST, TCP_SYN, TO_CLIENT, TO_SERVER,
};

/// The client → server direction of one TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.client, self.server)
    }
}

/// One connection: its 4-tuple and a generation number unique within the
/// agent's lifetime (the flow stage's counter, so a reused 4-tuple never
/// repeats an id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId {
    pub key: FlowKey,
    pub generation: u64,
}

impl std::fmt::Display for FlowId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} #{}", self.key, self.generation)
    }
}

/// What a record tells about its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind<'a> {
    /// Payload bytes starting at TCP sequence number `seq`.
    Data { seq: u32, payload: &'a [u8] },
    /// A segment with SYN, FIN or RST set. `seq` is the segment's sequence
    /// number, `payload_len` its payload length: a SYN's first data byte is
    /// `seq + 1`, a FIN sits at `seq + payload_len`.
    Control {
        seq: u32,
        payload_len: u32,
        flags: u8,
    },
    /// The kernel could not copy `[seq, seq + len)`: a known gap.
    Truncated { seq: u32, len: u32 },
}

/// Which of a connection's two byte streams a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client → server: the requests (ingress).
    ToServer,
    /// Server → client: v1's responses (egress, when comparing).
    ToClient,
}

/// One decoded ring record. `Data` borrows its payload from the ring, so the
/// next stage can parse in place and copy only what it must keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The connection, client → server, whichever way the segment went.
    pub flow: FlowKey,
    pub direction: Direction,
    /// CLOCK_MONOTONIC nanoseconds when the kernel saw the segment.
    pub timestamp_ns: u64,
    pub ifindex: u32,
    /// The segment's TCP flags byte.
    pub tcp_flags: u8,
    pub kind: EventKind<'a>,
}

impl Event<'_> {
    pub fn is_syn(&self) -> bool {
        self.tcp_flags & TCP_SYN != 0
    }
    pub fn is_fin(&self) -> bool {
        self.tcp_flags & TCP_FIN != 0
    }
    pub fn is_rst(&self) -> bool {
        self.tcp_flags & TCP_RST != 0
    }
}

/// Why a record could not be decoded. The kernel program and the agent are
/// built together, so any of these means a bug or a foreign program writing
/// into our ring; the capture stage counts them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its {RECORD_HEADER_SIZE}-byte header")]
    Short(usize),
    #[error("record kind {0} is unknown")]
    UnknownKind(u8),
    #[error("address family {0} is unknown")]
    UnknownFamily(u8),
    #[error("direction {0} is unknown")]
    UnknownDirection(u8),
    #[error("data record says {said} bytes but carries {carried}")]
    LengthMismatch { said: u32, carried: usize },
}

/// Decodes one ring record.
pub fn decode(record: &[u8]) -> Result<Event<'_>, DecodeError> {
    if record.len() < RECORD_HEADER_SIZE {
        return Err(DecodeError::Short(record.len()));
    }
    // SAFETY: the length is checked above; RecordHeader is Pod (any bit
    // pattern is valid) and read_unaligned makes no alignment assumption.
    let header: RecordHeader =
        unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<RecordHeader>()) };
    let (client_ip, server_ip) = match header.family {
        FAMILY_IPV4 => (
            IpAddr::V4(ipv4(&header.src_addr)),
            IpAddr::V4(ipv4(&header.dst_addr)),
        ),
        FAMILY_IPV6 => (
            IpAddr::V6(Ipv6Addr::from(header.src_addr)),
            IpAddr::V6(Ipv6Addr::from(header.dst_addr)),
        ),
        other => return Err(DecodeError::UnknownFamily(other)),
    };
    let body = &record[RECORD_HEADER_SIZE..];
    let kind = match RecordKind::from_u8(header.kind) {
        Some(RecordKind::Data) => {
            // Data records are reserved in size classes: the payload is the
            // first `len` bytes, the rest of the record is padding.
            let len = header.len as usize;
            if len > body.len() || len > CHUNK_SIZE {
                return Err(DecodeError::LengthMismatch {
                    said: header.len,
                    carried: body.len(),
                });
            }
            EventKind::Data {
                seq: header.seq,
                payload: &body[..len],
            }
        }
        Some(RecordKind::Control) => EventKind::Control {
            seq: header.seq,
            payload_len: header.len,
            flags: header.tcp_flags,
        },
        Some(RecordKind::Truncated) => EventKind::Truncated {
            seq: header.seq,
            len: header.len,
        },
        None => return Err(DecodeError::UnknownKind(header.kind)),
    };
    let src = SocketAddr::new(client_ip, header.src_port);
    let dst = SocketAddr::new(server_ip, header.dst_port);
    let (flow, direction) = match header.direction {
        TO_SERVER => (
            FlowKey {
                client: src,
                server: dst,
            },
            Direction::ToServer,
        ),
        TO_CLIENT => (
            FlowKey {
                client: dst,
                server: src,
            },
            Direction::ToClient,
        ),
        other => return Err(DecodeError::UnknownDirection(other)),
    };
    Ok(Event {
        flow,
        direction,
        timestamp_ns: header.timestamp_ns,
        ifindex: header.ifindex,
        tcp_flags: header.tcp_flags,
        kind,
    })
}

fn ipv4(addr: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])
}

/// Receives every decoded event, in ring order, on the capture task. The
/// flow stage implements this; tests implement it to collect what was seen.
///
/// Called synchronously from the ring drain loop: an implementation must not
/// block (hand slow work to a bounded queue instead).
pub trait EventSink {
    fn on_event(&mut self, event: &Event<'_>);

    /// Called after each batch of records drained from the ring, so a sink can
    /// flush or expire state without a timer of its own.
    fn on_batch_end(&mut self, _now_ns: u64) {}

    /// When (CLOCK_MONOTONIC ns) `on_batch_end` must run again even if no
    /// record comes (a timeout of the sink's); `None`: nothing pending. The
    /// capture sleeps until then.
    fn next_deadline(&self) -> Option<u64> {
        None
    }

    /// The capture goes to sleep (`true`: nothing runs until a record or
    /// the deadline) or wakes up (`false`).
    fn on_sleep(&mut self, _asleep: bool) {}
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use mirror_common::{CaptureConfig, Counters, TCP_ACK, TCP_PSH};

    use super::*;

    /// The kernel program and the agent must agree on every byte.
    #[test]
    fn shared_layouts_are_what_both_sides_expect() {
        assert_eq!(size_of::<RecordHeader>(), 64);
        assert_eq!(RECORD_HEADER_SIZE, 64);
        assert_eq!(offset_of!(RecordHeader, timestamp_ns), 0);
        assert_eq!(offset_of!(RecordHeader, src_addr), 8);
        assert_eq!(offset_of!(RecordHeader, dst_addr), 24);
        assert_eq!(offset_of!(RecordHeader, seq), 40);
        assert_eq!(offset_of!(RecordHeader, len), 44);
        assert_eq!(offset_of!(RecordHeader, ifindex), 48);
        assert_eq!(offset_of!(RecordHeader, src_port), 52);
        assert_eq!(offset_of!(RecordHeader, dst_port), 54);
        assert_eq!(offset_of!(RecordHeader, family), 56);
        assert_eq!(offset_of!(RecordHeader, tcp_flags), 57);
        assert_eq!(offset_of!(RecordHeader, kind), 58);
        assert_eq!(size_of::<CaptureConfig>(), 48);
        assert_eq!(size_of::<Counters>(), 8 * mirror_common::Counter::COUNT);
    }

    fn record(kind: RecordKind, family: u8, len: u32, payload: &[u8]) -> Vec<u8> {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&[10, 200, 0, 1]);
        dst[..4].copy_from_slice(&[10, 200, 0, 2]);
        let header = RecordHeader {
            timestamp_ns: 7,
            src_addr: src,
            dst_addr: dst,
            seq: 1000,
            len,
            ifindex: 3,
            src_port: 40000,
            dst_port: 80,
            family,
            tcp_flags: TCP_ACK | TCP_PSH,
            kind: kind as u8,
            direction: TO_SERVER,
            _pad: [0; 4],
        };
        // SAFETY: RecordHeader is plain old data.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&header as *const RecordHeader).cast::<u8>(),
                RECORD_HEADER_SIZE,
            )
        };
        let mut out = bytes.to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_data_record_decodes_with_its_flow_and_payload() {
        let bytes = record(RecordKind::Data, FAMILY_IPV4, 5, b"hello");
        let event = decode(&bytes).expect("valid record");
        assert_eq!(event.flow.to_string(), "10.200.0.1:40000 -> 10.200.0.2:80");
        assert_eq!(
            event.kind,
            EventKind::Data {
                seq: 1000,
                payload: b"hello"
            }
        );
        assert_eq!((event.timestamp_ns, event.ifindex), (7, 3));
    }

    #[test]
    fn size_class_padding_after_the_payload_is_ignored() {
        let mut payload = b"GET / HTTP/1.1\r\n\r\n".to_vec();
        let len = payload.len() as u32;
        payload.resize(512, 0xAA);
        let bytes = record(RecordKind::Data, FAMILY_IPV4, len, &payload);
        let event = decode(&bytes).expect("valid record");
        assert_eq!(
            event.kind,
            EventKind::Data {
                seq: 1000,
                payload: b"GET / HTTP/1.1\r\n\r\n"
            }
        );
    }

    #[test]
    fn malformed_records_are_refused_with_a_reason() {
        assert_eq!(decode(&[0u8; 10]), Err(DecodeError::Short(10)));
        let bytes = record(RecordKind::Data, FAMILY_IPV4, 9, b"short");
        assert!(matches!(
            decode(&bytes),
            Err(DecodeError::LengthMismatch {
                said: 9,
                carried: 5
            })
        ));
        let mut bytes = record(RecordKind::Control, FAMILY_IPV4, 0, b"");
        bytes[58] = 99;
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownKind(99)));
        let bytes = record(RecordKind::Control, 5, 0, b"");
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownFamily(5)));
    }

    #[test]
    fn control_and_truncation_records_carry_sequence_and_length() {
        let bytes = record(RecordKind::Control, FAMILY_IPV6, 12, b"");
        let event = decode(&bytes).expect("valid record");
        assert!(event.flow.client.is_ipv6());
        assert_eq!(
            event.kind,
            EventKind::Control {
                seq: 1000,
                payload_len: 12,
                flags: TCP_ACK | TCP_PSH
            }
        );
        let bytes = record(RecordKind::Truncated, FAMILY_IPV4, 4096, b"");
        assert_eq!(
            decode(&bytes).expect("valid record").kind,
            EventKind::Truncated {
                seq: 1000,
                len: 4096
            }
        );
    }
}
