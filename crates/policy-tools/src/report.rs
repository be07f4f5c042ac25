//! `zonegate policy report`: what identity event files say about the identities in them, and
//! which identities are shared: seen from many peer hosts or with many certificates. A shared
//! service account blurs attribution (whose request was it?) and widens the blast radius of
//! one leaked credential. Replicas of one workload legitimately share an identity, hence a
//! configurable threshold.
//!
//! Files are streamed; per identity, distinct addresses and serials are counted exactly up to
//! a bound and reported as "at least" beyond it, so memory stays bounded.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use serde::Serialize;

use super::events::{peer_ip, EventReader, ReadStats, RequestEvent};
use super::{json_out, print_out, usage_error};

/// Most identities tracked; more are counted, not tracked.
pub const MAX_IDENTITIES: usize = 10_000;
/// Most distinct addresses (and serials) counted per identity.
pub const MAX_DISTINCT: usize = 256;

/// `zonegate policy report`
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Identity event files (JSON lines, docs/events.md); `-` reads standard input.
    #[arg(long, required = true)]
    pub events: Vec<PathBuf>,
    /// Flag identities seen from at least this many peer IPs or certificate serials.
    #[arg(long, default_value_t = 5)]
    pub shared_threshold: usize,
    /// How many identities to list (by requests).
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Per identity: requests, outcomes, and the distinct peers and certificates behind them.
#[derive(Default)]
pub struct Sharing {
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
    pub shared: bool,
}

fn fingerprint(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

impl Sharing {
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
        if let Some(addr) = event.peer_addr.as_deref() {
            if seen.ips.len() < MAX_DISTINCT {
                seen.ips.insert(fingerprint(peer_ip(addr)));
            }
        }
        if let Some(serial) = event.cert_serial.as_deref() {
            if seen.serials.len() < MAX_DISTINCT {
                seen.serials.insert(fingerprint(serial));
            }
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
                    shared: threshold > 0
                        && (s.ips.len() >= threshold || s.serials.len() >= threshold),
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
    /// Identities at or above the threshold, most peers first.
    pub shared: Vec<IdentitySummary>,
    /// The busiest identities.
    pub top: Vec<IdentitySummary>,
    pub untracked_requests: u64,
}

pub fn run(args: &ReportArgs) -> i32 {
    let mut sharing = Sharing::default();
    let mut stats = ReadStats::default();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for file in &args.events {
        let mut reader = match EventReader::open(file) {
            Ok(r) => r,
            Err(e) => return usage_error(&format!("{}: {e}", file.display())),
        };
        reader.for_each_request(|event| {
            sharing.observe(&event);
            // Reasons are a small documented set; anything else is counted under its name
            // up to a bound.
            if reasons.len() < 64 || reasons.contains_key(event.reason.as_ref()) {
                *reasons.entry(event.reason.into_owned()).or_default() += 1;
            }
        });
        reader.report_skipped();
        stats.add(&reader.stats);
    }
    let report = build(args, stats, reasons, &sharing);
    if args.json {
        json_out(&report)
    } else {
        print_out(&render(&report))
    }
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
        (b.peer_ips.max(b.cert_serials), &a.identity)
            .cmp(&(a.peer_ips.max(a.cert_serials), &b.identity))
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
pub fn shared_text(shared: &[IdentitySummary], threshold: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "shared identities (seen from >= {threshold} peer IPs or certificate serials):"
    );
    if shared.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for i in shared {
        let _ = writeln!(
            s,
            "  {}: {} peer IP(s), {} certificate serial(s), {} request(s)",
            i.identity,
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
    s.push_str(&shared_text(&r.shared, r.shared_threshold));
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
