//! Policy intelligence: the `zonegate policy` commands, which read gateway configs, policy
//! files and identity events offline (no running gateway) and answer a reviewer's questions.
//!
//! - [`explain`]: how one request would be decided, and which matchers of which rules said no;
//! - [`lint`]: problems a reviewer should see (dead, overly broad, overlapping rules...);
//! - [`diff`]: what a policy change grants and revokes;
//! - [`blast`]: how far an identity reaches, who reaches a route, who reaches most;
//! - [`suggest`]: a least-privilege policy from observed events, stale grants, denials;
//! - [`report`]: identities shared by many peers (blurred attribution); with `--html`, a page
//!   with the zones' identity graph: who may reach what, who did, stale grants.
//!
//! Nothing here matches a rule itself: requests are decided by `Rule::accepts` and
//! `Policy::evaluate`, after the gateway's own path normalisation, route selection and zone
//! map, so the tools agree with the gateway by construction. Questions about every request
//! (lint, diff, blast radius) are answered over a finite set of witness requests that stands for
//! all of them ([`space`]).

pub mod blast;
pub mod diff;
pub mod explain;
pub mod facts;
pub mod lint;
pub mod load;
pub mod report;
pub mod space;
pub mod suggest;

mod events;
mod reach;

// The core's modules, under the names this crate has always used for them.
use zonegate_core::{admission, config, identity, policy};
mod template;
#[cfg(test)]
mod testing;

use std::io::Write;

use clap::Subcommand;
use serde::Serialize;

use zonegate_core::config::EXIT_CONFIG;

/// Exit code when the output cannot be written (EX_IOERR).
pub const EXIT_IO: i32 = 74;

/// `zonegate policy ...`
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Explain how one request would be decided: the deciding rule, the audit rule, and why
    /// every other rule on the route did not match.
    Explain(explain::ExplainArgs),
    /// Find problems a reviewer should see: dead and shadowed rules, overly broad allows,
    /// unknown zones and routes, allow/deny overlaps, audit rules that would change decisions.
    Lint(lint::LintArgs),
    /// What a policy change grants and revokes, as (identity, route, methods, paths).
    Diff(diff::DiffArgs),
    /// Everything an identity can reach across zones; who can reach a route; ranking by reach.
    BlastRadius(blast::BlastArgs),
    /// Suggest a least-privilege policy (mode = "audit") from identity event files.
    Suggest(suggest::SuggestArgs),
    /// Summarise identity event files: identities shared by many peers or certificates.
    Report(report::ReportArgs),
}

/// Runs a `zonegate policy` command; returns the process exit code.
pub fn run(command: &PolicyCommand) -> i32 {
    match command {
        PolicyCommand::Explain(args) => explain::run(args),
        PolicyCommand::Lint(args) => lint::run(args),
        PolicyCommand::Diff(args) => diff::run(args),
        PolicyCommand::BlastRadius(args) => blast::run(args),
        PolicyCommand::Suggest(args) => suggest::run(args),
        PolicyCommand::Report(args) => report::run(args),
    }
}

/// Prints `value` as pretty JSON on stdout.
fn json_out<T: Serialize>(value: &T) -> i32 {
    match serde_json::to_string_pretty(value) {
        Ok(text) => print_out(&format!("{text}\n")),
        Err(e) => {
            eprintln!("zonegate policy: cannot serialise the result: {e}");
            EXIT_IO
        }
    }
}

/// Writes `text` to stdout; a closed pipe is not worth a panic.
fn print_out(text: &str) -> i32 {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("zonegate policy: cannot write the output: {e}");
            EXIT_IO
        }
    }
}

/// Reports a command-line mistake and returns EX_USAGE, as `check` does for config errors.
fn usage_error(message: &str) -> i32 {
    eprintln!("zonegate policy: {message}");
    EXIT_CONFIG
}

/// A policy override naming undefined routes is a config the gateway would refuse; every
/// command but `lint` (which reports it as a finding) stops there.
fn refuse_unknown_routes(loaded: &load::Loaded) -> Option<i32> {
    if loaded.unknown_routes.is_empty() {
        return None;
    }
    for (index, route) in &loaded.unknown_routes {
        eprintln!(
            "{}: rule `{}` names route `{route}`, which this gateway does not define",
            loaded.origin(*index).display(),
            loaded.rules()[*index].id
        );
    }
    Some(EXIT_CONFIG)
}
