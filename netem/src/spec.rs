//! The tc-netem option language. (API skeleton: to be implemented.)

use std::fmt;
use std::str::FromStr;

/// One direction's impairments, as tc-netem would take them.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct LinkSpec {
    // fields: delay, loss, duplicate, corrupt, reorder, rate, slot, limit ...
}

/// A spec that does not parse: names the offending token and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad netem spec at token {token:?} (position {position}): expected {expected}")]
pub struct SpecError {
    pub token: String,
    pub position: usize,
    pub expected: String,
}

impl FromStr for LinkSpec {
    type Err = SpecError;
    fn from_str(_s: &str) -> Result<Self, Self::Err> {
        Ok(LinkSpec::default())
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

impl LinkSpec {
    /// Configured one-way base delay in ns (0 if none): used for RTT theory.
    pub fn base_delay_ns(&self) -> u64 {
        0
    }
    /// Configured rate in bits/s, if any.
    pub fn rate_bps(&self) -> Option<u64> {
        None
    }
}
