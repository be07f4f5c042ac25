//! Reading identity event files (docs/events.md) as a stream: one line at a time, with a
//! bounded line length, so files of any size are read in constant memory.
//!
//! Lines that are not request events of schema `zonegate.identity/v1` are counted, never
//! fatal: a log pipeline's file may hold a torn line or another record kind. The first few
//! problems are reported with file, line and reason.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use zonegate_core::events::{KIND_REQUEST, SCHEMA};

/// Longest line read; longer lines are skipped (an event is well under 8 KiB).
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// How many problem lines are reported by file and line.
const MAX_REPORTED: usize = 5;

/// The fields of a request event the tools use. Strings borrow from the line when they can.
#[derive(Debug, Deserialize)]
pub struct RequestEvent<'a> {
    #[serde(borrow, default)]
    pub schema: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub decision: Cow<'a, str>,
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    #[serde(borrow, default)]
    pub rule_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub source_spiffe_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub source_zone: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub peer_addr: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub cert_serial: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub destination_zone: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub route: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub method: Cow<'a, str>,
    #[serde(borrow, default)]
    pub host: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub path: Option<Cow<'a, str>>,
}

/// Enough of any line to know what it is.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    dropped: Option<u64>,
}

/// What reading the files found besides request events.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReadStats {
    pub lines: u64,
    pub requests: u64,
    /// Handshake refusals, reloads and other record kinds.
    pub other_records: u64,
    /// Lines that are not JSON events of this schema, or too long.
    pub malformed: u64,
    /// Events the gateway reported it dropped (`events_dropped` records): observations are
    /// missing that many requests.
    pub dropped_by_gateway: u64,
}

/// A line-by-line reader of one event file (`-`: standard input).
pub(crate) struct EventReader {
    name: PathBuf,
    input: Box<dyn BufRead>,
    line: Vec<u8>,
    line_no: u64,
    pub stats: ReadStats,
    problems: Vec<String>,
}

impl EventReader {
    pub(crate) fn open(path: &Path) -> io::Result<EventReader> {
        let input: Box<dyn BufRead> = if path == Path::new("-") {
            Box::new(BufReader::with_capacity(256 * 1024, io::stdin()))
        } else {
            let mut file = File::open(path)?;
            let mut magic = [0u8; 2];
            let n = file.read(&mut magic)?;
            if n == 2 && magic == [0x1f, 0x8b] {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "gzip-compressed; decompress it into standard input: zcat FILE | zonegate policy ... --events -",
                ));
            }
            let file = File::open(path)?;
            Box::new(BufReader::with_capacity(256 * 1024, file))
        };
        Ok(EventReader {
            name: path.to_path_buf(),
            input,
            line: Vec::with_capacity(4096),
            line_no: 0,
            stats: ReadStats::default(),
            problems: Vec::new(),
        })
    }

    /// Calls `visit` with every request event, in order, skipping (and counting) everything
    /// else. Each event borrows the line buffer, which the next line reuses.
    pub(crate) fn for_each_request(&mut self, mut visit: impl FnMut(RequestEvent<'_>)) {
        loop {
            match self.read_line() {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    self.problem(format!("read error: {e}"));
                    return;
                }
            }
            if self.line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // Request lines, nearly all of them, are parsed once; anything else a second time
            // to say what it is.
            match serde_json::from_slice::<RequestEvent<'_>>(&self.line) {
                Ok(event)
                    if event.schema.as_deref() == Some(SCHEMA)
                        && event.kind.as_deref() == Some(KIND_REQUEST) =>
                {
                    self.stats.requests += 1;
                    visit(event);
                    continue;
                }
                _ => {}
            }
            let reason = match serde_json::from_slice::<Head<'_>>(&self.line) {
                Ok(head) if head.schema.as_deref() != Some(SCHEMA) => {
                    format!("schema is {:?}, expected \"{SCHEMA}\"", head.schema)
                }
                Ok(head) if head.kind.as_deref() == Some(KIND_REQUEST) => {
                    match serde_json::from_slice::<RequestEvent<'_>>(&self.line) {
                        Err(e) => format!("not a request event: {e}"),
                        Ok(_) => "not a request event".to_string(),
                    }
                }
                Ok(head) => {
                    self.stats.other_records += 1;
                    if head.kind.as_deref() == Some("events_dropped") {
                        self.stats.dropped_by_gateway += head.dropped.unwrap_or(0);
                    }
                    continue;
                }
                Err(e) => format!("not a JSON event: {e}"),
            };
            self.malformed(reason);
        }
    }

    /// Reads one line into `self.line` (without its newline). A line longer than
    /// [`MAX_LINE`] is consumed without being kept, and reported.
    fn read_line(&mut self) -> io::Result<bool> {
        self.line.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = self.input.fill_buf()?;
            if available.is_empty() {
                break;
            }
            any = true;
            let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            if !too_long {
                if self.line.len() + chunk.len() > MAX_LINE {
                    too_long = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let consumed = done.unwrap_or(available.len());
            self.input.consume(consumed);
            if done.is_some() {
                break;
            }
        }
        if !any {
            return Ok(false);
        }
        self.line_no += 1;
        self.stats.lines += 1;
        if too_long {
            self.malformed(format!("line longer than {MAX_LINE} bytes"));
            self.line.clear();
        }
        Ok(true)
    }

    fn malformed(&mut self, reason: String) {
        self.stats.malformed += 1;
        self.problem(reason);
    }

    fn problem(&mut self, reason: String) {
        if self.problems.len() < MAX_REPORTED {
            self.problems.push(format!(
                "{}:{}: {reason}",
                self.name.display(),
                self.line_no
            ));
        }
    }

    /// Prints the problems found on stderr (the first few by line, then a count).
    pub(crate) fn report_skipped(&self) {
        for p in &self.problems {
            eprintln!("{p}: skipped");
        }
        let more = self
            .stats
            .malformed
            .saturating_sub(self.problems.len() as u64);
        if more > 0 {
            eprintln!("{}: {more} more line(s) skipped", self.name.display());
        }
    }
}

impl ReadStats {
    pub fn add(&mut self, other: &ReadStats) {
        self.lines += other.lines;
        self.requests += other.requests;
        self.other_records += other.other_records;
        self.malformed += other.malformed;
        self.dropped_by_gateway += other.dropped_by_gateway;
    }
}

/// The IP of a `peer_addr` (`IP:port` or `[IPv6]:port`): one host, whatever its port.
pub(crate) fn peer_ip(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map_or(addr, |(ip, _)| ip);
    }
    match addr.rsplit_once(':') {
        // One colon: IPv4 with a port. More: a bare IPv6 address.
        Some((ip, _)) if !ip.contains(':') => ip,
        _ => addr,
    }
}

#[cfg(test)]
mod tests;
