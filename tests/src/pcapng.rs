//! A pcap file (as `tcpdump -w` writes it) rewritten as pcapng, for the
//! tests of pcapng input on a machine without tshark, dumpcap or editcap:
//! one section header, one interface with nanosecond timestamps
//! (`if_tsresol` = 9, so the reader's resolution option is exercised), and
//! an enhanced packet block per packet, in this machine's byte order.

use anyhow::{Context as _, Result, bail, ensure};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const IF_TSRESOL: u16 = 9;

/// pcap → pcapng with the same packets and timestamps (to the nanosecond).
pub fn from_pcap(pcap: &[u8]) -> Result<Vec<u8>> {
    ensure!(pcap.len() >= 24, "a pcap file of {} bytes", pcap.len());
    let magic_le = u32::from_le_bytes(pcap[..4].try_into()?);
    let (swapped, nanos) = match magic_le {
        0xa1b2_c3d4 => (false, false),
        0xa1b2_3c4d => (false, true),
        0xd4c3_b2a1 => (true, false),
        0x4d3c_b2a1 => (true, true),
        other => bail!("not a pcap file (magic {other:#010x})"),
    };
    let u32_at = |at: usize| -> Result<u32> {
        let bytes: [u8; 4] = pcap
            .get(at..at + 4)
            .context("pcap cut")?
            .try_into()
            .context("pcap cut")?;
        Ok(if swapped {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    };
    let snaplen = u32_at(16)?;
    let link = u32_at(20)?;

    let mut out = Vec::new();
    block(&mut out, SHB, |body| {
        body.extend(BYTE_ORDER_MAGIC.to_ne_bytes());
        body.extend(1u16.to_ne_bytes());
        body.extend(0u16.to_ne_bytes());
        body.extend((-1i64).to_ne_bytes());
    });
    block(&mut out, IDB, |body| {
        body.extend((link as u16).to_ne_bytes());
        body.extend(0u16.to_ne_bytes());
        body.extend(snaplen.to_ne_bytes());
        body.extend(IF_TSRESOL.to_ne_bytes());
        body.extend(1u16.to_ne_bytes());
        body.extend([9, 0, 0, 0]);
        body.extend(OPT_END.to_ne_bytes());
        body.extend(0u16.to_ne_bytes());
    });
    let mut at = 24;
    while at < pcap.len() {
        let (sec, frac, incl, orig) = (
            u64::from(u32_at(at)?),
            u64::from(u32_at(at + 4)?),
            u32_at(at + 8)? as usize,
            u32_at(at + 12)?,
        );
        let data = pcap
            .get(at + 16..at + 16 + incl)
            .with_context(|| format!("pcap packet at byte {at} cut"))?;
        let ns = sec * 1_000_000_000 + if nanos { frac } else { frac * 1000 };
        block(&mut out, EPB, |body| {
            body.extend(0u32.to_ne_bytes());
            body.extend(((ns >> 32) as u32).to_ne_bytes());
            body.extend((ns as u32).to_ne_bytes());
            body.extend((incl as u32).to_ne_bytes());
            body.extend(orig.to_ne_bytes());
            body.extend_from_slice(data);
            body.resize(body.len().next_multiple_of(4), 0);
        });
        at += 16 + incl;
    }
    Ok(out)
}

/// Appends a block: type, total length, `fill`'s body, total length.
fn block(out: &mut Vec<u8>, kind: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    fill(&mut body);
    let total = (body.len() + 12) as u32;
    out.extend(kind.to_ne_bytes());
    out.extend(total.to_ne_bytes());
    out.extend(body);
    out.extend(total.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_and_timestamps_carry_over() {
        let mut pcap = Vec::new();
        pcap.extend(0xa1b2_c3d4u32.to_le_bytes());
        pcap.extend(2u16.to_le_bytes());
        pcap.extend(4u16.to_le_bytes());
        pcap.extend([0u8; 8]);
        pcap.extend(65535u32.to_le_bytes());
        pcap.extend(1u32.to_le_bytes());
        for v in [7u32, 5, 3, 3] {
            pcap.extend(v.to_le_bytes());
        }
        pcap.extend(b"abc");
        let ng = from_pcap(&pcap).unwrap();
        // SHB 28 + IDB 32 + EPB (32 + 4).
        assert_eq!(ng.len(), 28 + 32 + 36);
        let epb = &ng[60..];
        assert_eq!(u32::from_ne_bytes(epb[..4].try_into().unwrap()), EPB);
        let ts = (u64::from(u32::from_ne_bytes(epb[12..16].try_into().unwrap())) << 32)
            | u64::from(u32::from_ne_bytes(epb[16..20].try_into().unwrap()));
        assert_eq!(ts, 7_000_005_000);
        assert_eq!(&epb[28..31], b"abc");
        assert!(from_pcap(b"nope").is_err());
    }
}
