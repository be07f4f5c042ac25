//! Event timestamps. Every identity event carries the current time and most carry a
//! certificate's expiry; formatting either with chrono costs more than the rest of the event,
//! so the text of the last second is kept and reused.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};

use super::Plain;

thread_local! {
    /// `now_rfc3339`'s clock and `rfc3339_seconds`' last text, per thread.
    static NOW: RefCell<Clock> = const { RefCell::new(Clock::new()) };
    static LAST: RefCell<SecondsText> = const { RefCell::new(SecondsText::new()) };
}

/// Formats a Unix timestamp (seconds) as RFC 3339 UTC.
pub fn rfc3339_seconds(unix: i64) -> Option<String> {
    LAST.with_borrow_mut(|last| last.set(unix).map(str::to_owned))
}

fn format_seconds(unix: i64) -> Option<String> {
    DateTime::from_timestamp(unix, 0).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The current time as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    NOW.with_borrow_mut(|clock| clock.now().to_owned())
}

/// The current time as RFC 3339 UTC with milliseconds, in a buffer kept from one call to the
/// next: within a second only the milliseconds are written again, so a request's event
/// neither allocates nor formats a date for its time.
#[derive(Debug)]
pub struct Clock {
    /// The second `text` holds, and where its milliseconds start.
    second: i64,
    head: usize,
    text: String,
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

impl Clock {
    /// A clock that has not been read (const: a thread's clock needs no lazy set-up).
    pub const fn new() -> Clock {
        Clock {
            second: i64::MIN,
            head: 0,
            text: String::new(),
        }
    }

    /// Reads the system clock.
    pub fn now(&mut self) -> &str {
        // The system clock without chrono's calendar arithmetic, which only a new second needs.
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => self.at(since.as_secs() as i64, since.subsec_millis()),
            Err(_) => {
                let now = Utc::now();
                self.at(now.timestamp(), now.timestamp_subsec_millis())
            }
        }
    }

    /// What the last reading said.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What the last reading said, as an event writes it: an RFC 3339 time is digits, `-`,
    /// `+`, `:`, `T`, `.` and `Z`, nothing to escape.
    pub fn as_plain(&self) -> Plain<'_> {
        Plain::made(self.text.as_bytes())
    }

    /// `seconds` since the epoch and `millis` past them.
    fn at(&mut self, seconds: i64, millis: u32) -> &str {
        if seconds != self.second {
            self.text = format_seconds(seconds).unwrap_or_default();
            self.text.pop(); // the `Z`, put back after the milliseconds
            self.head = self.text.len();
            self.second = seconds;
        }
        let millis = millis.min(999);
        self.text.truncate(self.head);
        self.text.push('.');
        for digit in [millis / 100, millis / 10 % 10, millis % 10] {
            self.text.push(char::from(b'0' + digit as u8));
        }
        self.text.push('Z');
        &self.text
    }
}

/// A Unix timestamp (seconds) as RFC 3339 UTC, in a buffer kept from one call to the next: a
/// connection's requests ask for the same certificate expiry again and again.
#[derive(Debug)]
pub struct SecondsText {
    unix: i64,
    text: Option<String>,
}

impl Default for SecondsText {
    fn default() -> SecondsText {
        SecondsText::new()
    }
}

impl SecondsText {
    pub const fn new() -> SecondsText {
        SecondsText {
            unix: i64::MIN,
            text: None,
        }
    }

    pub fn set(&mut self, unix: i64) -> Option<&str> {
        if unix != self.unix {
            self.unix = unix;
            self.text = format_seconds(unix);
        }
        self.text.as_deref()
    }

    /// What the last `set` said.
    pub fn as_str(&self) -> Option<&str> {
        self.text.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_formatting_matches_chrono() {
        // Across second boundaries, in both directions, and at the edges of a second, on one
        // clock.
        let mut clock = Clock::default();
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
                clock.at(t.timestamp(), t.timestamp_subsec_millis()),
                t.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
            // Again within the second: only the milliseconds change.
            let later = DateTime::from_timestamp(secs, nanos / 2).unwrap();
            assert_eq!(
                clock.at(later.timestamp(), later.timestamp_subsec_millis()),
                later.to_rfc3339_opts(SecondsFormat::Millis, true)
            );
            assert_eq!(rfc3339_seconds(secs), format_seconds(secs));
            assert_eq!(rfc3339_seconds(secs), format_seconds(secs));
            let mut kept = SecondsText::default();
            assert_eq!(kept.set(secs).map(str::to_owned), format_seconds(secs));
            assert_eq!(kept.set(secs).map(str::to_owned), format_seconds(secs));
        }
    }
}
