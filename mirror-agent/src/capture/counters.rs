//! The kernel program's per-CPU counters, summed into one snapshot.

use std::fmt;

use aya::maps::{MapData, MapError, PerCpuArray};
use mirror_common::{Counter, Counters, TO_CLIENT, TO_SERVER};

/// Reads the counter map; shareable between threads (each read is a
/// syscall on the map's fd).
pub struct CounterReader {
    map: PerCpuArray<MapData, Counters>,
}

impl CounterReader {
    pub(super) fn new(map: PerCpuArray<MapData, Counters>) -> Self {
        Self { map }
    }

    /// Sums every CPU's counters of the requests' direction (ingress).
    pub fn read(&self) -> Result<KernelCounters, MapError> {
        self.read_direction(TO_SERVER)
    }

    /// The same for v1's responses (egress; zeros unless captured).
    pub fn read_responses(&self) -> Result<KernelCounters, MapError> {
        self.read_direction(TO_CLIENT)
    }

    fn read_direction(&self, direction: u8) -> Result<KernelCounters, MapError> {
        let per_cpu = self.map.get(&u32::from(direction), 0)?;
        let mut total = Counters::zero();
        for cpu in per_cpu.iter() {
            for (sum, value) in total.values.iter_mut().zip(cpu.values) {
                *sum += value;
            }
        }
        Ok(KernelCounters(total))
    }
}

/// A snapshot of the kernel counters over all CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelCounters(pub Counters);

impl KernelCounters {
    pub fn get(&self, counter: Counter) -> u64 {
        self.0.get(counter)
    }

    /// `records_matched = records_emitted + records_lost`. The three are
    /// bumped by one CPU in one program run, so a snapshot taken while
    /// traffic flows can be off by the records in flight; once traffic
    /// stops it must hold exactly.
    pub fn records_balance(&self) -> bool {
        self.get(Counter::RecordsMatched)
            == self.get(Counter::RecordsEmitted) + self.get(Counter::RecordsLost)
    }

    /// `seen` = the sum of every per-packet outcome.
    pub fn packets_balance(&self) -> bool {
        let outcomes = Counter::PACKET_OUTCOMES.iter();
        self.get(Counter::Seen) == outcomes.map(|c| self.get(*c)).sum::<u64>()
    }
}

impl fmt::Display for KernelCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for counter in Counter::ALL {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{}={}", counter.as_str(), self.get(counter))?;
        }
        Ok(())
    }
}
