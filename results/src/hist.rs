//! HdrHistogram in JSON: the V2 + deflate serialization (the format every
//! HdrHistogram implementation reads), base64-encoded (standard alphabet,
//! padded).
//!
//! Units: a histogram records integers; the recorder picks the unit and writes
//! it in [`HistogramData::unit`]. Latencies are recorded in microseconds
//! (`"us"`) by convention: 3 significant digits then resolve 1 µs up to ~1 s
//! and stay within 0.1% above.

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::error::ResultsError;

/// The only encoding written today (kept in the file so another can be added).
pub const ENCODING: &str = "hdr-v2-deflate-base64";

/// A serialized histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramData {
    /// Unit of the recorded integers, e.g. `"us"` or `"ns"`.
    pub unit: String,
    /// Always [`ENCODING`] in schema version 1.
    pub encoding: String,
    /// Total count of recorded values (informative: the data is authoritative).
    pub count: u64,
    /// base64 of the V2-deflate bytes.
    pub data: String,
}

/// A recorder with 3 significant digits that grows as needed: what the
/// workloads should record into before [`HistogramData::encode`].
pub fn new_recorder() -> Result<Histogram<u64>, ResultsError> {
    Histogram::new(3).map_err(|e| ResultsError::Histogram {
        what: "recorder".into(),
        reason: format!("{e:?}"),
    })
}

impl HistogramData {
    /// Serializes `h` recorded in `unit`.
    pub fn encode(h: &Histogram<u64>, unit: &str) -> Result<Self, ResultsError> {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(h, &mut bytes)
            .map_err(|e| ResultsError::Histogram {
                what: format!("in {unit}"),
                reason: format!("serialize: {e:?}"),
            })?;
        Ok(HistogramData {
            unit: unit.to_string(),
            encoding: ENCODING.to_string(),
            count: h.len(),
            data: base64::engine::general_purpose::STANDARD.encode(&bytes),
        })
    }

    /// Builds a histogram of `values` (in `unit`) and serializes it.
    pub fn from_values(values: &[u64], unit: &str) -> Result<Self, ResultsError> {
        let mut h = new_recorder()?;
        for &v in values {
            h.record(v).map_err(|e| ResultsError::Histogram {
                what: format!("in {unit}"),
                reason: format!("record {v}: {e:?}"),
            })?;
        }
        Self::encode(&h, unit)
    }

    /// The histogram back.
    pub fn decode(&self) -> Result<Histogram<u64>, ResultsError> {
        let err = |reason: String| ResultsError::Histogram {
            what: format!("in {}", self.unit),
            reason,
        };
        if self.encoding != ENCODING {
            return Err(err(format!(
                "unknown encoding {:?} (expected {ENCODING:?})",
                self.encoding
            )));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.data.as_bytes())
            .map_err(|e| err(format!("base64: {e}")))?;
        Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| err(format!("deserialize: {e:?}")))
    }

    /// Adds `other`'s counts into `self`; units must match.
    pub fn merge(&mut self, other: &HistogramData) -> Result<(), ResultsError> {
        *self = merge_all([&*self, other])?;
        Ok(())
    }
}

/// One histogram holding the counts of all `parts` (same unit required).
pub fn merge_all<'a, I>(parts: I) -> Result<HistogramData, ResultsError>
where
    I: IntoIterator<Item = &'a HistogramData>,
{
    let mut acc: Option<(Histogram<u64>, String)> = None;
    for p in parts {
        let h = p.decode()?;
        match &mut acc {
            None => acc = Some((h, p.unit.clone())),
            Some((a, unit)) => {
                if *unit != p.unit {
                    return Err(ResultsError::Histogram {
                        what: "merge".into(),
                        reason: format!("units differ: {unit:?} vs {:?}", p.unit),
                    });
                }
                a.add(&h).map_err(|e| ResultsError::Histogram {
                    what: format!("merge in {unit}"),
                    reason: format!("{e:?}"),
                })?;
            }
        }
    }
    match acc {
        Some((h, unit)) => HistogramData::encode(&h, &unit),
        None => Err(ResultsError::Histogram {
            what: "merge".into(),
            reason: "nothing to merge".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_merge() {
        let a = HistogramData::from_values(&[100, 200, 300, 1_000_000], "us").unwrap();
        let b = HistogramData::from_values(&[150, 250], "us").unwrap();
        let ha = a.decode().unwrap();
        assert_eq!(ha.len(), 4);
        assert_eq!(ha.max(), ha.highest_equivalent(1_000_000));
        let json = serde_json::to_string(&a).unwrap();
        let back: HistogramData = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        let mut m = a.clone();
        m.merge(&b).unwrap();
        let hm = m.decode().unwrap();
        assert_eq!(hm.len(), 6);
        assert_eq!(m.count, 6);
        assert_eq!(hm.value_at_quantile(0.0), 100);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut a = HistogramData::from_values(&[1], "us").unwrap();
        let b = HistogramData::from_values(&[1], "ns").unwrap();
        assert!(a
            .merge(&b)
            .unwrap_err()
            .to_string()
            .contains("units differ"));
        let mut bad = a.clone();
        bad.data = "!!!not base64".into();
        assert!(bad.decode().unwrap_err().to_string().contains("base64"));
        let mut bad = a.clone();
        bad.data = base64::engine::general_purpose::STANDARD.encode(b"garbage bytes");
        assert!(bad.decode().is_err());
        let mut bad = a.clone();
        bad.encoding = "v3".into();
        assert!(bad
            .decode()
            .unwrap_err()
            .to_string()
            .contains("unknown encoding"));
        assert!(merge_all([]).is_err());
    }
}
