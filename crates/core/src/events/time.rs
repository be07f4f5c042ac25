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
    Stamp::now().as_str().to_owned()
}

/// A time as RFC 3339 UTC with milliseconds, held on the stack: [`now_rfc3339`] for a time
/// that is only written out (a request's event), so making it allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    /// Long enough for any year chrono represents (`+262143-12-31T23:59:59.999Z` is 27).
    text: [u8; 32],
    len: usize,
}

impl Stamp {
    pub fn now() -> Stamp {
        at_millis(Utc::now())
    }

    /// A Unix timestamp (seconds) as RFC 3339 UTC: [`rfc3339_seconds`] on the stack.
    pub fn seconds(unix: i64) -> Option<Stamp> {
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            if last.0 != unix {
                *last = (unix, format_seconds(unix));
            }
            let text = last.1.as_deref()?.as_bytes();
            let mut stamp = Stamp {
                text: [0; 32],
                len: text.len(),
            };
            stamp.text.get_mut(..text.len())?.copy_from_slice(text);
            Some(stamp)
        })
    }

    pub fn as_str(&self) -> &str {
        // Copied from a `str` whole, and ASCII digits after it.
        std::str::from_utf8(&self.text[..self.len]).unwrap_or_default()
    }
}

fn at_millis(now: DateTime<Utc>) -> Stamp {
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
        let mut stamp = Stamp {
            text: [0; 32],
            len: 0,
        };
        let head = cached.1.as_bytes();
        let tail = [
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ];
        stamp.len = head.len() + tail.len();
        if stamp.len <= stamp.text.len() {
            stamp.text[..head.len()].copy_from_slice(head);
            stamp.text[head.len()..stamp.len].copy_from_slice(&tail);
        } else {
            // Not a time chrono makes; an empty stamp rather than a cut one.
            stamp.len = 0;
        }
        stamp
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
            // The widest years chrono makes, both signs.
            (DateTime::<Utc>::MAX_UTC.timestamp(), 999_000_000),
            (DateTime::<Utc>::MIN_UTC.timestamp(), 0),
        ] {
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            assert_eq!(
                at_millis(t).as_str(),
                t.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
            assert_eq!(rfc3339_seconds(secs), format_seconds(secs));
            assert_eq!(rfc3339_seconds(secs), format_seconds(secs));
            assert_eq!(
                Stamp::seconds(secs).map(|s| s.as_str().to_owned()),
                format_seconds(secs)
            );
        }
    }
}
