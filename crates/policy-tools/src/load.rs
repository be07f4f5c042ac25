//! Loading what the tools analyse, through the gateway's own loader: a gateway config
//! ([`config::load`]) with its policy, or with its policy replaced by other policy files (a
//! pull request's version), compiled and indexed exactly as a snapshot would be, plus the
//! policy file and line each rule was written at.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::admission::RouteTable;
use crate::config::{self, ConfigErrors, GatewayConfig};
use crate::policy::{Policy, Rule};

/// One gateway as the tools see it.
pub struct Loaded {
    pub config: GatewayConfig,
    /// Compiled as a snapshot compiles it (decisions go through [`Policy::evaluate`]).
    pub policy: Policy,
    /// Built as a snapshot builds it, so route selection is the gateway's.
    pub routes: RouteTable,
    /// Where each rule of `config.rules` (same index) was written.
    pub origins: Vec<Origin>,
    /// Rules naming routes this gateway does not define: (rule index, route). Only a policy
    /// override can produce them; `config::load` refuses such a config.
    pub unknown_routes: Vec<(usize, String)>,
}

/// The policy file and line of a rule's `id`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: Option<usize>,
}

impl Origin {
    /// `file:line`, or `file` when the line is unknown.
    pub fn display(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }
}

impl Loaded {
    pub fn rules(&self) -> &[Rule] {
        self.policy.rules()
    }

    pub fn zone(&self) -> &str {
        &self.config.zone
    }

    pub fn origin(&self, rule: usize) -> &Origin {
        &self.origins[rule]
    }

    /// The index of the rule with this id.
    pub fn rule_index(&self, id: &str) -> Option<usize> {
        self.rules().iter().position(|r| &*r.id == id)
    }

    /// Whether an SVID of this trust domain can complete a handshake with this gateway.
    pub fn trusts(&self, trust_domain: &str) -> bool {
        self.config.trust_domains.contains_key(trust_domain)
    }
}

/// Loads the gateway config at `path`; with `policy`, its rules are replaced by those of
/// these policy files or directories (read by the gateway's policy loader).
pub fn open(path: &Path, policy: Option<&[PathBuf]>) -> Result<Loaded, ConfigErrors> {
    let mut config = config::load(path)?;
    let mut unknown_routes = Vec::new();
    if let Some(paths) = policy {
        let mut errors = ConfigErrors::default();
        let (rules, files) = config::load_policy_files(paths, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        for (index, rule) in rules.iter().enumerate() {
            for route in &rule.routes {
                if !config.routes.iter().any(|r| r.name == *route) {
                    unknown_routes.push((index, route.to_string()));
                }
            }
        }
        config.rules = rules;
        config.policy_files = files;
    }
    let origins = origins(&config.rules, &config.policy_files);
    let policy = Policy::compile(config.rules.clone(), config.decision_cache_entries);
    let routes = RouteTable::new(&config.routes);
    Ok(Loaded {
        config,
        policy,
        routes,
        origins,
        unknown_routes,
    })
}

/// Loads several gateway configs; a directory stands for its `*.toml` files, in name order.
/// Every error of every config is reported.
pub fn open_many(paths: &[PathBuf]) -> Result<Vec<Loaded>, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match crate::config::toml_files_in(path) {
                Ok(found) => {
                    if found.is_empty() {
                        errors.push(path, "", "no *.toml gateway config in this directory");
                    }
                    files.extend(found);
                }
                Err(e) => errors.push(path, "", format!("cannot read directory: {e}")),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut loaded = Vec::new();
    for file in &files {
        match open(file, None) {
            Ok(l) => loaded.push(l),
            Err(e) => errors.extend(e),
        }
    }
    errors.into_result(loaded)
}

/// Prints config errors as `zonegate check` does and returns its exit code.
pub fn report_errors(errors: &ConfigErrors) -> i32 {
    eprintln!("{errors}");
    eprintln!(
        "zonegate policy: {} error(s) in the configuration",
        errors.len()
    );
    config::EXIT_CONFIG
}

#[derive(Deserialize)]
struct SpannedFile {
    #[serde(default)]
    rule: Vec<SpannedRule>,
}

#[derive(Deserialize)]
struct SpannedRule {
    id: toml::Spanned<String>,
}

/// The file and line of each rule's `id`. Files were already validated by the policy loader;
/// one that no longer parses (changed since) just gets no line numbers.
fn origins(rules: &[Rule], files: &[PathBuf]) -> Vec<Origin> {
    let mut by_id: HashMap<String, Origin> = HashMap::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let Ok(parsed) = toml::from_str::<SpannedFile>(&text) else {
            continue;
        };
        for rule in parsed.rule {
            let start = rule.id.span().start.min(text.len());
            let line = text.as_bytes()[..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            by_id.entry(rule.id.into_inner()).or_insert(Origin {
                file: file.clone(),
                line: Some(line),
            });
        }
    }
    rules
        .iter()
        .map(|rule| {
            by_id.get(&*rule.id).cloned().unwrap_or_else(|| Origin {
                file: files.first().cloned().unwrap_or_default(),
                line: None,
            })
        })
        .collect()
}
