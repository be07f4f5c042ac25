//! `zonegate policy report`: what identity event files say about the identities in them, and
//! which identities are shared: seen from many peer hosts or with many certificates at once. A
//! shared service account blurs attribution (whose request was it?) and widens the blast
//! radius of one leaked credential. Replicas of one workload legitimately share an identity,
//! hence a configurable threshold; and an identity legitimately changes certificates (SVID
//! rotation) and addresses (pod churn) over time, hence counting within a time window: what
//! is flagged is many peers or certificates in use together, not one after another.
//!
//! Files are streamed; per identity and window, distinct addresses and serials are counted
//! exactly up to a bound and reported as "at least" beyond it, and only the latest windows
//! are kept, so memory stays bounded.
//!
//! With `--html FILE` and the zones' gateway configs, the report is a page instead: the
//! identity graph of those zones, who may reach what and who did (`picture`, drawn by `html`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::events::{peer_ip, EventReader, ReadStats, RequestEvent};
use super::{blast, load};
use super::{json_out, print_out, usage_error, EXIT_IO};

mod html;
mod picture;

/// Most identities tracked; more are counted, not tracked.
pub const MAX_IDENTITIES: usize = 10_000;
/// Most distinct addresses (and serials) counted per identity.
pub const MAX_DISTINCT: usize = 256;
/// Most time windows kept per identity: the oldest are folded into the peaks when more come.
pub const MAX_WINDOWS: usize = 1024;

/// `--window`: `30s`, `10m`, `1h`, `1d`, or `0` (the whole files as one window), in seconds.
pub fn parse_window(text: &str) -> Result<u64, String> {
    if text == "0" {
        return Ok(0);
    }
    let split = text.len().saturating_sub(1);
    let (count, unit) = text.split_at(split);
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{text}`: a duration like 30s, 10m, 1h, 1d, or 0")),
    };
    match count.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n * unit),
        _ => Err(format!("`{text}`: a duration like 30s, 10m, 1h, 1d, or 0")),
    }
}

/// `2026-11-23T10:00:15.000Z` (the events' `time`) as Unix seconds.
fn unix_seconds(time: &str) -> Option<i64> {
    let b = time.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| time.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm), proleptic Gregorian.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// A window as the report names it: `10m`, `1h`, `the whole files`.
pub fn window_text(seconds: u64) -> String {
    match seconds {
        0 => "the whole files".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `zonegate policy report`
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Identity event files (JSON lines, docs/events.md); `-` reads standard input.
    #[arg(long, required = true)]
    pub events: Vec<PathBuf>,
    /// Flag identities seen from at least this many peer IPs or certificate serials within
    /// one --window.
    #[arg(long, default_value_t = 5)]
    pub shared_threshold: usize,
    /// The time window peers and certificates are counted in: `30s`, `10m`, `1h`, `1d`, or `0`
    /// for the whole files. SVID rotation and pod churn spread over windows; sharing does not.
    #[arg(long, default_value = "10m", value_parser = parse_window)]
    pub window: u64,
    /// How many identities to list (by requests).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Machine-readable output.
    #[arg(long, conflicts_with = "html")]
    pub json: bool,
    /// Write a self-contained HTML page with the identity graph of the zones of --config:
    /// who may reach what, who did, blast radius, stale grants, shared identities.
    #[arg(long, value_name = "FILE", requires = "config")]
    pub html: Option<PathBuf>,
    /// With --html: the zones' gateway configs, or directories of them (as blast-radius).
    #[arg(long, short, requires = "html")]
    pub config: Vec<PathBuf>,
}

/// Per identity: requests, outcomes, and the distinct peers and certificates behind them, in
/// all and within each time window.
pub struct Sharing {
    /// Window length in seconds; 0: one window.
    window_s: u64,
    identities: HashMap<Box<str>, Seen>,
    /// Requests of identities beyond [`MAX_IDENTITIES`].
    pub untracked_requests: u64,
}

#[derive(Default)]
struct Seen {
    requests: u64,
    allowed: u64,
    denied: u64,
    ips: HashSet<u64>,
    serials: HashSet<u64>,
    zones: Vec<Box<str>>,
    /// Distinct peers and certificates per window start (Unix seconds / window).
    windows: BTreeMap<i64, Together>,
    /// The most seen within one window.
    peak_ips: usize,
    peak_serials: usize,
    /// Two certificates from two addresses within one window: two holders at once.
    concurrent: bool,
}

/// What one identity was seen with within one window.
#[derive(Default)]
struct Together {
    ips: HashSet<u64>,
    serials: HashSet<u64>,
}

/// One identity's line in a report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IdentitySummary {
    pub identity: String,
    pub requests: u64,
    pub allowed: u64,
    pub denied: u64,
    pub peer_ips: usize,
    pub cert_serials: usize,
    /// True when a count reached [`MAX_DISTINCT`]: the real number is at least that.
    pub capped: bool,
    pub source_zones: Vec<String>,
    /// The most peer IPs, and certificate serials, seen within one window.
    pub peak_peer_ips: usize,
    pub peak_cert_serials: usize,
    /// Two certificates used from two addresses within one window.
    pub concurrent: bool,
    /// At or over the threshold within one window.
    pub shared: bool,
}

fn fingerprint(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

impl Sharing {
    /// Counts peers and certificates within windows of `window_s` seconds (0: one window).
    pub fn new(window_s: u64) -> Sharing {
        Sharing {
            window_s,
            identities: HashMap::new(),
            untracked_requests: 0,
        }
    }

    /// Counts one request event (events without an identity are not about anyone).
    pub fn observe(&mut self, event: &RequestEvent<'_>) {
        let Some(id) = event.source_spiffe_id.as_deref() else {
            return;
        };
        if !self.identities.contains_key(id) {
            if self.identities.len() >= MAX_IDENTITIES {
                self.untracked_requests += 1;
                return;
            }
            self.identities.insert(id.into(), Seen::default());
        }
        let Some(seen) = self.identities.get_mut(id) else {
            return;
        };
        seen.requests += 1;
        if event.decision == "allow" {
            seen.allowed += 1;
        } else {
            seen.denied += 1;
        }
        // Addresses and serials are kept as 64-bit fingerprints: equality is all that counts.
        let ip = event.peer_addr.as_deref().map(|a| fingerprint(peer_ip(a)));
        let serial = event.cert_serial.as_deref().map(fingerprint);
        let window = match (self.window_s, event.time.as_deref().and_then(unix_seconds)) {
            (0, _) | (_, None) => 0,
            (w, Some(t)) => t.div_euclid(w as i64),
        };
        let together = seen.windows.entry(window).or_default();
        for (value, set, all) in [
            (ip, &mut together.ips, &mut seen.ips),
            (serial, &mut together.serials, &mut seen.serials),
        ] {
            if let Some(value) = value {
                if set.len() < MAX_DISTINCT {
                    set.insert(value);
                }
                if all.len() < MAX_DISTINCT {
                    all.insert(value);
                }
            }
        }
        seen.peak_ips = seen.peak_ips.max(together.ips.len());
        seen.peak_serials = seen.peak_serials.max(together.serials.len());
        seen.concurrent |= together.ips.len() >= 2 && together.serials.len() >= 2;
        if seen.windows.len() > MAX_WINDOWS {
            // Its counts are in the peaks already; a later event of that window (from a file
            // read out of order) starts it afresh.
            seen.windows.pop_first();
        }
        if let Some(zone) = event.source_zone.as_deref() {
            if seen.zones.len() < 8 && !seen.zones.iter().any(|z| &**z == zone) {
                seen.zones.push(zone.into());
            }
        }
    }

    /// Every tracked identity, most requests first.
    pub fn summaries(&self, threshold: usize) -> Vec<IdentitySummary> {
        let mut out: Vec<IdentitySummary> = self
            .identities
            .iter()
            .map(|(id, s)| {
                let mut zones: Vec<String> = s.zones.iter().map(|z| z.to_string()).collect();
                zones.sort();
                IdentitySummary {
                    identity: id.to_string(),
                    requests: s.requests,
                    allowed: s.allowed,
                    denied: s.denied,
                    peer_ips: s.ips.len(),
                    cert_serials: s.serials.len(),
                    capped: s.ips.len() >= MAX_DISTINCT || s.serials.len() >= MAX_DISTINCT,
                    source_zones: zones,
                    peak_peer_ips: s.peak_ips,
                    peak_cert_serials: s.peak_serials,
                    concurrent: s.concurrent,
                    shared: threshold > 0
                        && (s.peak_ips >= threshold || s.peak_serials >= threshold),
                }
            })
            .collect();
        out.sort_by(|a, b| (b.requests, &a.identity).cmp(&(a.requests, &b.identity)));
        out
    }
}

/// The report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub files: Vec<String>,
    pub stats: ReadStats,
    /// Request events by `reason`.
    pub reasons: BTreeMap<String, u64>,
    pub identities: usize,
    pub shared_threshold: usize,
    /// The window peers and certificates are counted in (seconds; 0: the whole files).
    pub window_s: u64,
    /// Identities at or above the threshold, most peers first.
    pub shared: Vec<IdentitySummary>,
    /// The busiest identities.
    pub top: Vec<IdentitySummary>,
    pub untracked_requests: u64,
}

pub fn run(args: &ReportArgs) -> i32 {
    if let Some(out) = &args.html {
        return run_html(args, out);
    }
    let mut sharing = Sharing::new(args.window);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let stats = match each_request(&args.events, |event| {
        sharing.observe(&event);
        // Reasons are a small documented set; anything else is counted under its name up to
        // a bound.
        if reasons.len() < 64 || reasons.contains_key(event.reason.as_ref()) {
            *reasons.entry(event.reason.into_owned()).or_default() += 1;
        }
    }) {
        Ok(stats) => stats,
        Err(code) => return code,
    };
    let report = build(args, stats, reasons, &sharing);
    if args.json {
        json_out(&report)
    } else {
        print_out(&render(&report))
    }
}

/// Streams every request event of `files` to `visit`, in order; a file that cannot be opened
/// is a usage error (its exit code).
fn each_request(
    files: &[PathBuf],
    mut visit: impl FnMut(RequestEvent<'_>),
) -> Result<ReadStats, i32> {
    let mut stats = ReadStats::default();
    for file in files {
        let mut reader = EventReader::open(file)
            .map_err(|e| usage_error(&format!("{}: {e}", file.display())))?;
        reader.for_each_request(&mut visit);
        reader.report_skipped();
        stats.add(&reader.stats);
    }
    Ok(stats)
}

/// `--html`: the events read once, into the sharing analysis and the observations; grants
/// and blast radius from the ranking over the configs.
fn run_html(args: &ReportArgs, out: &Path) -> i32 {
    let sides = match load::open_many(&args.config) {
        Ok(s) => s,
        Err(errors) => return load::report_errors(&errors),
    };
    let mut sharing = Sharing::new(args.window);
    let mut observed = picture::Observations::default();
    if let Err(code) = each_request(&args.events, |event| {
        sharing.observe(&event);
        observed.observe(&event, &sides);
    }) {
        return code;
    }
    let ranking = blast::rank(&sides, &observed.identities());
    let picture = picture::picture(
        &sides,
        &ranking,
        &observed,
        &sharing.summaries(args.shared_threshold),
        args.shared_threshold,
        args.window,
    );
    let page = match html::render(&picture) {
        Ok(page) => page,
        Err(e) => {
            eprintln!("zonegate policy: cannot serialise the page's data: {e}");
            return EXIT_IO;
        }
    };
    if let Err(e) = std::fs::write(out, page) {
        eprintln!("{}: cannot write the page: {e}", out.display());
        return EXIT_IO;
    }
    print_out(&format!(
        "wrote {}: {} identities, {} routes, {} edges\n",
        out.display(),
        picture.identities.len(),
        picture.routes.len(),
        picture.edges.len()
    ))
}

fn build(
    args: &ReportArgs,
    stats: ReadStats,
    reasons: BTreeMap<String, u64>,
    sharing: &Sharing,
) -> Report {
    let all = sharing.summaries(args.shared_threshold);
    let mut shared: Vec<IdentitySummary> = all.iter().filter(|s| s.shared).cloned().collect();
    shared.sort_by(|a, b| {
        (b.peak_peer_ips.max(b.peak_cert_serials), &a.identity)
            .cmp(&(a.peak_peer_ips.max(a.peak_cert_serials), &b.identity))
    });
    Report {
        files: args
            .events
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        stats,
        reasons,
        identities: all.len(),
        shared_threshold: args.shared_threshold,
        window_s: args.window,
        shared,
        top: all.into_iter().take(args.top).collect(),
        untracked_requests: sharing.untracked_requests,
    }
}

/// `N`, or `N+` when the count stopped at its bound.
pub fn count_text(n: usize) -> String {
    if n >= MAX_DISTINCT {
        format!("{n}+")
    } else {
        n.to_string()
    }
}

/// The shared-identity lines, for `report` and `suggest`.
pub fn shared_text(shared: &[IdentitySummary], threshold: usize, window_s: u64) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let within = match window_s {
        0 => String::new(),
        w => format!(" within {}", window_text(w)),
    };
    let _ = writeln!(
        s,
        "shared identities (seen from >= {threshold} peer IPs or certificate serials{within}):"
    );
    if shared.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for i in shared {
        let _ = writeln!(
            s,
            "  {}: {} peer IP(s) and {} certificate serial(s) at once{}; {} and {} in all, {} request(s)",
            i.identity,
            count_text(i.peak_peer_ips),
            count_text(i.peak_cert_serials),
            if i.concurrent { ", concurrent use" } else { "" },
            count_text(i.peer_ips),
            count_text(i.cert_serials),
            i.requests
        );
    }
    s
}

fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "events: {} line(s), {} request event(s), {} other record(s), {} skipped, {} dropped by the gateway",
        r.stats.lines, r.stats.requests, r.stats.other_records, r.stats.malformed, r.stats.dropped_by_gateway
    );
    let reasons: Vec<String> = r.reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "reasons: {}", reasons.join(", "));
    let _ = writeln!(s, "identities: {}", r.identities);
    if r.untracked_requests > 0 {
        let _ = writeln!(
            s,
            "note: more than {MAX_IDENTITIES} identities; {} request(s) of the others are not tracked",
            r.untracked_requests
        );
    }
    s.push('\n');
    s.push_str(&shared_text(&r.shared, r.shared_threshold, r.window_s));
    let _ = writeln!(s, "\nbusiest identities:");
    let width = r.top.iter().map(|i| i.identity.len()).max().unwrap_or(8);
    let _ = writeln!(
        s,
        "  {:<width$}  {:>8}  {:>7}  {:>6}  {:>8}  {:>7}  zones",
        "identity", "requests", "allowed", "denied", "peer IPs", "serials"
    );
    for i in &r.top {
        let _ = writeln!(
            s,
            "  {:<width$}  {:>8}  {:>7}  {:>6}  {:>8}  {:>7}  {}",
            i.identity,
            i.requests,
            i.allowed,
            i.denied,
            count_text(i.peer_ips),
            count_text(i.cert_serials),
            i.source_zones.join(",")
        );
    }
    s
}

#[cfg(test)]
mod tests;
