//! Policy files: TOML lists of rules, read from files or directories (`*.toml`, in name order).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::ConfigErrors;
use super::raw::{RawLimit, RawPolicyFile, RawRule};
use super::{parse_id_patterns, validate_name};
use crate::policy::limit::parse_rate;
use crate::policy::{
    ClaimMatcher, Credentials, Effect, Limit, LimitScope, Mode, PathPattern, Rate, Rule,
    SubjectPattern,
};

/// Reads every policy file under `paths`, returning the rules in order and the files read.
/// Rule ids are unique across all files.
pub fn load_policy_files(
    paths: &[PathBuf],
    errors: &mut ConfigErrors,
) -> (Vec<Rule>, Vec<PathBuf>) {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match super::sources::toml_files_listed(path) {
                Ok(found) => files.extend(found),
                Err(e) => errors.push(path, "", format!("cannot read policy directory: {e}")),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut rules = Vec::new();
    let mut ids = HashSet::new();
    for file in &files {
        let source = match super::sources::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                errors.push(file, "", format!("cannot read policy file: {e}"));
                continue;
            }
        };
        let parsed: RawPolicyFile = match toml::from_str(&source) {
            Ok(p) => p,
            Err(e) => {
                errors.push_toml(file, &source, &e);
                continue;
            }
        };
        for (i, raw) in parsed.rule.iter().enumerate() {
            let key = format!("rule[{i}]");
            if !ids.insert(raw.id.clone()) {
                errors.push(
                    file,
                    format!("{key}.id"),
                    format!("duplicate rule id `{}`", raw.id),
                );
            }
            if let Some(rule) = convert_rule(file, &key, raw, errors) {
                rules.push(rule);
            }
        }
    }
    (rules, files)
}

fn convert_rule(file: &Path, key: &str, raw: &RawRule, errors: &mut ConfigErrors) -> Option<Rule> {
    let before = errors.len();
    if let Err(reason) = validate_name(&raw.id) {
        errors.push(file, format!("{key}.id"), reason);
    }
    let effect = match raw.effect.as_str() {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        other => {
            errors.push(
                file,
                format!("{key}.effect"),
                format!("`{other}` is not \"allow\" or \"deny\""),
            );
            Effect::Deny
        }
    };
    let mode = match raw.mode.as_deref().unwrap_or("enforce") {
        "enforce" => Mode::Enforce,
        "audit" => Mode::Audit,
        other => {
            errors.push(
                file,
                format!("{key}.mode"),
                format!("`{other}` is not \"enforce\" or \"audit\""),
            );
            Mode::Enforce
        }
    };
    let identities = parse_id_patterns(file, &format!("{key}.identities"), &raw.identities, errors);
    for (i, zone) in raw.zones.iter().enumerate() {
        if let Err(reason) = validate_name(zone) {
            errors.push(file, format!("{key}.zones[{i}]"), reason);
        }
    }
    for (i, route) in raw.routes.iter().enumerate() {
        if let Err(reason) = validate_name(route) {
            errors.push(file, format!("{key}.routes[{i}]"), reason);
        }
    }
    let mut methods = Vec::new();
    for (i, m) in raw.methods.iter().enumerate() {
        let ok = !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic());
        if ok {
            methods.push(m.to_ascii_uppercase());
        } else {
            errors.push(
                file,
                format!("{key}.methods[{i}]"),
                format!("`{m}` is not an HTTP method name"),
            );
        }
    }
    let mut paths = Vec::new();
    for (i, p) in raw.paths.iter().enumerate() {
        match PathPattern::parse(p) {
            Ok(pattern) => paths.push(pattern),
            Err(e) => errors.push(file, format!("{key}.paths[{i}]"), format!("`{p}`: {e}")),
        }
    }
    let credentials = raw.credentials.as_deref().and_then(|c| {
        Credentials::parse(c).or_else(|| {
            errors.push(
                file,
                format!("{key}.credentials"),
                format!("`{c}` is not one of \"mtls\", \"token\", \"either\", \"both\""),
            );
            None
        })
    });
    for (i, issuer) in raw.issuers.iter().enumerate() {
        if let Err(reason) = validate_name(issuer) {
            errors.push(file, format!("{key}.issuers[{i}]"), reason);
        }
    }
    let mut subjects = Vec::new();
    for (i, s) in raw.subjects.iter().enumerate() {
        match SubjectPattern::parse(s) {
            Ok(pattern) => subjects.push(pattern),
            Err(reason) => errors.push(
                file,
                format!("{key}.subjects[{i}]"),
                format!("`{s}`: {reason}"),
            ),
        }
    }
    if (!raw.subjects.is_empty() || !raw.claims.is_empty()) && raw.issuers.is_empty() {
        // Subjects and claims mean something only within one issuer's namespace.
        errors.push(
            file,
            format!("{key}.issuers"),
            "required with `subjects` or `claims`: name the issuers whose tokens they describe",
        );
    }
    let mut claims = Vec::new();
    for (name, values) in &raw.claims {
        let values = values.to_vec();
        if name.is_empty() || values.is_empty() || values.iter().any(String::is_empty) {
            errors.push(
                file,
                format!("{key}.claims.{name}"),
                "a claim matcher needs a name and at least one non-empty value",
            );
        }
        claims.push(ClaimMatcher {
            name: name.clone(),
            values,
        });
    }
    let limit = raw
        .limit
        .as_ref()
        .and_then(|l| convert_limit(file, &format!("{key}.limit"), l, errors));
    if limit.is_some() && (effect != Effect::Allow || mode != Mode::Enforce) {
        // A deny limits everything already; an audit rule decides nothing to limit.
        errors.push(
            file,
            format!("{key}.limit"),
            "only an enforced allow rule can carry a limit",
        );
    }
    (errors.len() == before).then(|| Rule {
        id: Arc::from(raw.id.as_str()),
        description: raw.description.clone(),
        effect,
        mode,
        identities,
        zones: raw.zones.clone(),
        routes: raw.routes.iter().map(|r| Arc::from(r.as_str())).collect(),
        methods,
        paths,
        credentials,
        issuers: raw.issuers.iter().map(|i| Arc::from(i.as_str())).collect(),
        subjects,
        claims,
        limit,
    })
}

/// A limit as written on a rule or a route (`key` names where), validated.
pub(super) fn convert_limit(
    file: &Path,
    key: &str,
    raw: &RawLimit,
    errors: &mut ConfigErrors,
) -> Option<Limit> {
    let before = errors.len();
    let per_second = raw.rate.as_deref().and_then(|r| {
        parse_rate(r)
            .map_err(|e| errors.push(file, format!("{key}.rate"), e))
            .ok()
    });
    if raw.burst.is_some() && raw.rate.is_none() {
        errors.push(file, format!("{key}.burst"), "a burst needs a `rate`");
    }
    if raw.burst == Some(0) {
        errors.push(file, format!("{key}.burst"), "must be at least 1");
    }
    if raw.in_flight == Some(0) {
        errors.push(file, format!("{key}.in_flight"), "must be at least 1");
    }
    if raw.rate.is_none() && raw.in_flight.is_none() {
        errors.push(file, key, "a limit needs a `rate`, an `in_flight`, or both");
    }
    let per = match raw.per.as_deref() {
        None => LimitScope::Identity,
        Some(text) => LimitScope::parse(text).unwrap_or_else(|| {
            errors.push(
                file,
                format!("{key}.per"),
                format!("`{text}` is not \"identity\" or \"identity_route\""),
            );
            LimitScope::Identity
        }),
    };
    (errors.len() == before).then(|| Limit {
        // A second's worth by default, and never less than one request.
        rate: per_second.map(|per_second| Rate {
            per_second,
            burst: raw
                .burst
                .unwrap_or_else(|| (per_second.ceil() as u32).max(1)),
        }),
        in_flight: raw.in_flight,
        per,
    })
}
