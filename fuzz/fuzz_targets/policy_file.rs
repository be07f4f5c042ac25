//! Policy files (TOML lists of rules). The loader reads files only, so each input is
//! written to a scratch file and loaded from there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zonegate_core::config::{load_policy_files, validate_name, ConfigErrors};
use zonegate_core::policy::PathPattern;

fuzz_target!(|data: &[u8]| {
    // Not UTF-8 is refused before parsing; no need to go through the file for it.
    if std::str::from_utf8(data).is_err() {
        return;
    }
    let file = zonegate_fuzz::scratch_dir("policy_file").join("policy.toml");
    if let Err(e) = std::fs::write(&file, data) {
        panic!("cannot write {}: {e}", file.display());
    }
    let mut errors = ConfigErrors::default();
    let (rules, files) = load_policy_files(std::slice::from_ref(&file), &mut errors);
    assert_eq!(files, [file]);
    if !errors.is_empty() {
        // Every error is reported: a file with errors contributes no rule that broke one.
        assert!(errors.to_string().contains("policy.toml"));
    }
    let mut ids = std::collections::HashSet::new();
    for rule in &rules {
        assert_eq!(validate_name(&rule.id), Ok(()));
        assert!(ids.insert(rule.id.clone()) || !errors.is_empty());
        for pattern in &rule.paths {
            assert_eq!(PathPattern::parse(pattern.as_str()).as_ref(), Ok(pattern));
        }
        for method in &rule.methods {
            assert!(!method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()));
        }
    }
});
