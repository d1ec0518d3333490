//! The compact time series of a connection: [`Sample`]s, bounded in number
//! by [`Series`], which thins itself as it fills.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Snapshot;

/// One point of a connection's time series: the few figures charted over
/// time, named alike for both transports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// ns after the record's `origin_mono_ns`.
    pub t_ns: u64,
    /// Congestion window, bytes (TCP: `snd_cwnd × snd_mss`).
    pub cwnd: u64,
    /// TCP's slow-start threshold, bytes, once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssthresh: Option<u64>,
    pub srtt_us: u64,
    /// Bytes put on the wire (TCP: `bytes_sent`, retransmissions included;
    /// QUIC: UDP payload bytes).
    pub sent_bytes: u64,
    /// TCP: bytes retransmitted; QUIC: bytes in packets declared lost (their
    /// data goes again in new packets).
    pub retrans_bytes: u64,
    /// TCP: segments retransmitted (`total_retrans`); QUIC: packets lost.
    pub retrans_packets: u64,
    /// QUIC's congestion events (TCP_INFO has no such count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub congestion_events: Option<u64>,
    /// Bytes acknowledged by the peer (TCP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_bytes: Option<u64>,
    /// Bytes/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacing_rate: Option<u64>,
    /// Bytes/s (TCP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_rate: Option<u64>,
}

impl Sample {
    /// The charted figures of a snapshot, at `t_ns`.
    pub fn of(snap: &Snapshot, t_ns: u64) -> Sample {
        match snap {
            Snapshot::Tcp(i) => Sample {
                t_ns,
                cwnd: i.cwnd_bytes,
                ssthresh: i.snd_ssthresh.map(|s| u64::from(s) * u64::from(i.snd_mss)),
                srtt_us: u64::from(i.srtt_us),
                sent_bytes: i.bytes_sent.unwrap_or(0),
                retrans_bytes: i.bytes_retrans.unwrap_or(0),
                retrans_packets: u64::from(i.total_retrans),
                congestion_events: None,
                acked_bytes: i.bytes_acked,
                pacing_rate: i.pacing_rate,
                delivery_rate: i.delivery_rate,
            },
            Snapshot::Quic(q) => Sample {
                t_ns,
                cwnd: q.cwnd,
                ssthresh: None,
                srtt_us: q.srtt_us,
                sent_bytes: q.udp_tx_bytes,
                retrans_bytes: q.lost_bytes,
                retrans_packets: q.lost_packets,
                congestion_events: Some(q.congestion_events),
                acked_bytes: None,
                pacing_rate: None,
                delivery_rate: None,
            },
        }
    }
}

/// Default sampling period: fine enough to see a window halve on a 10 ms RTT.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(10);
/// Most samples kept per connection; beyond, the series thins itself.
pub const MAX_SAMPLES: usize = 400;

/// A time series bounded in length: when full, every other sample is dropped
/// and the period doubles, so a long transfer keeps an even, coarser series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    period_ns: u64,
    max: usize,
    samples: Vec<Sample>,
}

impl Series {
    /// A series sampled every `period` (at least 1 ms), at most `max` long (at least 2).
    pub fn new(period: Duration, max: usize) -> Series {
        Series {
            period_ns: u64::try_from(period.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1_000_000),
            max: max.max(2),
            samples: Vec::new(),
        }
    }

    /// The current period (it doubles each time the series is thinned).
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns)
    }

    /// Add a sample, unless it comes before the next point due at the current
    /// period (the sampler ticks late or early; thinning coarsens the grid).
    /// Samples must come in time order; an earlier one is dropped.
    pub fn push(&mut self, s: Sample) {
        if let Some(last) = self.samples.last() {
            // Half a period of slack: a timer that fires a little early still counts.
            if s.t_ns < last.t_ns.saturating_add(self.period_ns / 2) {
                return;
            }
        }
        if self.samples.len() >= self.max {
            self.thin();
        }
        self.samples.push(s);
    }

    /// Keep every other sample (the first, the third...), double the period.
    fn thin(&mut self) {
        let mut i = 0;
        self.samples.retain(|_| {
            i += 1;
            i % 2 == 1
        });
        self.period_ns = self.period_ns.saturating_mul(2);
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sockinfo::test_sample as s;

    #[test]
    fn series_keeps_the_period_and_order() {
        let mut sr = Series::new(Duration::from_millis(10), 100);
        sr.push(s(0));
        sr.push(s(2_000_000)); // too soon
        sr.push(s(9_000_000)); // a little early: kept
        sr.push(s(5_000_000)); // out of order
        let t: Vec<u64> = sr.samples().iter().map(|x| x.t_ns).collect();
        assert_eq!(t, vec![0, 9_000_000]);
    }

    #[test]
    fn series_thins_when_full() {
        let mut sr = Series::new(Duration::from_millis(1), 8);
        for i in 0..100u64 {
            sr.push(s(i * 1_000_000));
        }
        assert!(sr.len() <= 8);
        assert!(sr.period() >= Duration::from_millis(8));
        let t: Vec<u64> = sr.samples().iter().map(|x| x.t_ns).collect();
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(t[0], 0);
        // Even spacing after thinning.
        let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g >= 8_000_000 / 2), "{gaps:?}");
        // The latest point is within one (final) period of the last push.
        let period = sr.period().as_nanos() as u64;
        assert!(*t.last().unwrap_or(&0) + period >= 99_000_000, "{t:?}");
    }
}
