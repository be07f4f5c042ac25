//! The gateway config file. The loader reads files only, and resolves the certificates,
//! bundles, key sets, policy and revocation files a config names relative to it, so each
//! input is written as `config/gw.toml` in a scratch directory that holds those fixtures.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zonegate_core::config::{load, validate_name};
use zonegate_core::policy::PathPattern;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The fuzzer tests parsing, not the host: a config naming a device or a kernel file
    // (`/dev/zero`, `/proc/...`) would have the loader read it; TOML's `\u` escapes could
    // spell one too.
    if ["/dev", "/proc", "/sys", "\\u", "\\U"]
        .iter()
        .any(|p| text.contains(p))
    {
        return;
    }
    let path = config_path();
    if let Err(e) = std::fs::write(path, data) {
        panic!("cannot write {}: {e}", path.display());
    }
    let Ok(config) = load(path) else { return };
    assert!(!config.listeners.is_empty());
    assert!(!config.trust_domains.is_empty());
    assert_eq!(validate_name(&config.zone), Ok(()));
    for route in &config.routes {
        assert!(route.path_prefix.starts_with('/'));
        assert!(config.upstreams.contains_key(&route.upstream));
    }
    for rule in &config.rules {
        for pattern in &rule.paths {
            assert_eq!(PathPattern::parse(pattern.as_str()).as_ref(), Ok(pattern));
        }
    }
    // A config is fingerprinted from the bytes read: loading it again changes nothing.
    match load(path) {
        Ok(again) => assert_eq!(again.content_hash, config.content_hash),
        Err(e) => panic!("a config that loaded once was refused the second time: {e}"),
    }
});

fn config_path() -> &'static std::path::Path {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = zonegate_fuzz::scratch_dir("config");
        if let Err(e) = zonegate_fuzz::write_config_fixture(dir) {
            panic!("cannot write the config fixture: {e}");
        }
        dir.join("config/gw.toml")
    })
}
