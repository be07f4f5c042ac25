//! Event timestamps. Every identity event carries the current time and most carry a
//! certificate's expiry; formatting either with chrono costs more than the rest of the event,
//! so each thread keeps the last second it formatted and reuses it.

use std::cell::RefCell;

use chrono::{DateTime, SecondsFormat, Utc};

thread_local! {
    /// The last whole second `now_rfc3339` formatted, without its `Z`.
    static NOW: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    /// The last Unix time `rfc3339_seconds` formatted, and its text.
    static LAST: RefCell<(i64, Option<String>)> = const { RefCell::new((i64::MIN, None)) };
}

/// Formats a Unix timestamp (seconds) as RFC 3339 UTC.
pub fn rfc3339_seconds(unix: i64) -> Option<String> {
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != unix {
            *last = (unix, format_seconds(unix));
        }
        last.1.clone()
    })
}

fn format_seconds(unix: i64) -> Option<String> {
    DateTime::from_timestamp(unix, 0).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    at_millis(Utc::now())
}

fn at_millis(now: DateTime<Utc>) -> String {
    let seconds = now.timestamp();
    let millis = now.timestamp_subsec_millis().min(999);
    NOW.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != seconds {
            let mut text = format_seconds(seconds)
                .unwrap_or_else(|| now.to_rfc3339_opts(SecondsFormat::Secs, true));
            text.pop(); // the `Z`, put back after the milliseconds
            *cached = (seconds, text);
        }
        let mut out = String::with_capacity(cached.1.len() + 5);
        out.push_str(&cached.1);
        out.push('.');
        for digit in [millis / 100, millis / 10 % 10, millis % 10] {
            out.push(char::from(b'0' + digit as u8));
        }
        out.push('Z');
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_formatting_matches_chrono() {
        // Across second boundaries, in both directions, and at the edges of a second.
        for (secs, nanos) in [
            (1_764_410_229, 762_000_000),
            (1_764_410_229, 0),
            (1_764_410_229, 999_999_999),
            (1_764_410_230, 1_000_000),
            (1_764_410_229, 5_000_000),
            (0, 0),
            (4_102_444_799, 999_000_000),
        ] {
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            assert_eq!(at_millis(t), t.to_rfc3339_opts(SecondsFormat::Millis, true));
            assert_eq!(rfc3339_seconds(secs), format_seconds(secs));
            assert_eq!(rfc3339_seconds(secs), format_seconds(secs));
        }
    }
}
