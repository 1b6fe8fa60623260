//! The wall clock, read in one place, and the one way its times are written.
//!
//! Pure code takes `now` as an argument (decisions, expiry, write times in
//! tests); the code at the edges reads it here. Uses nothing else of the
//! crate, so every layer may use it.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 if the system clock is set before 1970.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch; 0 before 1970.
pub fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix seconds as RFC 3339 UTC to the second (`2024-03-01T09:30:00Z`),
/// through `humantime`. A time it cannot write (before 1970 or after 9999;
/// no clock of ours gives one) is shown as its number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub i64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// 10000-01-01T00:00:00Z, the first second humantime cannot write.
        const YEAR_10000: u64 = 253_402_300_800;
        match u64::try_from(self.0) {
            Ok(secs) if secs < YEAR_10000 => {
                let t = UNIX_EPOCH + Duration::from_secs(secs);
                write!(f, "{}", humantime::format_rfc3339_seconds(t))
            }
            _ => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(Rfc3339(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Rfc3339(951_782_400).to_string(), "2000-02-29T00:00:00Z");
        assert_eq!(Rfc3339(1_709_285_400).to_string(), "2024-03-01T09:30:00Z");
        assert_eq!(Rfc3339(253_402_300_799).to_string(), "9999-12-31T23:59:59Z");
        assert_eq!(Rfc3339(-1).to_string(), "-1");
    }
}
