//! Latencies in fixed memory: a histogram per target and per endpoint,
//! read as percentiles at each snapshot.

use std::time::Duration;

use super::snapshot::Percentiles;

/// A fixed-memory latency histogram: exact below 16 µs, then 8 buckets
/// per power of two (each at most 12.5 % wide, so a percentile read at a
/// bucket's middle is within ~6.25 %), up to [`LatencyHistogram::MAX_MICROS`].
#[derive(Clone)]
pub(super) struct LatencyHistogram {
    buckets: [u32; LatencyHistogram::BUCKETS],
    count: u64,
    min: u64,
    max: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: [0; Self::BUCKETS],
            count: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl LatencyHistogram {
    const SUB_BITS: u32 = 3;
    const SUB: u64 = 1 << Self::SUB_BITS;
    /// Largest exponent kept: up to 2^28 µs (about 268 s); slower is
    /// counted as that.
    const MAX_EXP: u32 = 27;
    const MAX_MICROS: u64 = (1 << (Self::MAX_EXP + 1)) - 1;
    const BUCKETS: usize = (2 * Self::SUB
        + (Self::MAX_EXP as u64 + 1 - (Self::SUB_BITS + 1) as u64) * Self::SUB)
        as usize;

    pub(super) fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .min(Self::MAX_MICROS);
        let bucket = &mut self.buckets[Self::index(micros)];
        *bucket = bucket.saturating_add(1);
        self.count += 1;
        self.min = self.min.min(micros);
        self.max = self.max.max(micros);
    }

    fn index(micros: u64) -> usize {
        if micros < 2 * Self::SUB {
            return micros as usize;
        }
        let exp = 63 - micros.leading_zeros();
        let sub = (micros >> (exp - Self::SUB_BITS)) & (Self::SUB - 1);
        (2 * Self::SUB + u64::from(exp - Self::SUB_BITS - 1) * Self::SUB + sub) as usize
    }

    /// The middle of bucket `index`, in µs.
    fn middle(index: usize) -> f64 {
        let index = index as u64;
        if index < 2 * Self::SUB {
            return index as f64;
        }
        let exp = (index - 2 * Self::SUB) / Self::SUB + u64::from(Self::SUB_BITS) + 1;
        let sub = (index - 2 * Self::SUB) % Self::SUB;
        let width = 1u64 << (exp - u64::from(Self::SUB_BITS));
        let low = (Self::SUB + sub) * width;
        low as f64 + (width as f64 - 1.0) / 2.0
    }

    /// The latency under which a share `q` of the samples fall, in ms.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (index, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= rank {
                let micros = Self::middle(index).clamp(self.min as f64, self.max as f64);
                return Some(micros.round() / 1000.0);
            }
        }
        Some(self.max as f64 / 1000.0)
    }

    pub(super) fn percentiles(&self) -> Percentiles {
        Percentiles {
            count: self.count,
            p50: self.quantile_ms(0.50),
            p99: self.quantile_ms(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_are_null_without_samples_and_exact_for_one() {
        let mut histogram = LatencyHistogram::default();
        assert_eq!(histogram.percentiles().p50, None);
        histogram.record(Duration::from_micros(350));
        assert_eq!(histogram.quantile_ms(0.5), Some(0.35));
        assert_eq!(histogram.quantile_ms(0.99), Some(0.35));
        // Beyond the range: counted at the top, not lost.
        histogram.record(Duration::from_secs(3600));
        assert_eq!(histogram.count, 2);
        assert!(histogram.quantile_ms(0.99).unwrap() > 250_000.0);
    }

    #[test]
    fn every_value_lands_in_a_bucket_whose_middle_is_close() {
        let mut micros = 0u64;
        while micros <= LatencyHistogram::MAX_MICROS {
            let index = LatencyHistogram::index(micros);
            assert!(index < LatencyHistogram::BUCKETS, "{micros} µs → {index}");
            let middle = LatencyHistogram::middle(index);
            assert!(
                (middle - micros as f64).abs() <= micros as f64 * 0.0625,
                "{micros} µs read as {middle}"
            );
            micros = micros * 9 / 8 + 1;
        }
        assert_eq!(
            LatencyHistogram::index(LatencyHistogram::MAX_MICROS),
            LatencyHistogram::BUCKETS - 1
        );
    }
}
