//! Every file a config load reads, fingerprinted from the very bytes that were parsed.
//!
//! Hashing the files again after loading would race with a deploy replacing them: the
//! snapshot would hold one version and its fingerprint another, and the next reload would
//! wrongly find "nothing changed". So every read during [`super::load`] goes through
//! [`read`], which records what it returned.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};

/// Each file read, with the SHA-256 of what the read returned.
pub(super) type Reads = Vec<(PathBuf, Vec<u8>)>;

thread_local! {
    static RECORDING: RefCell<Option<Reads>> = const { RefCell::new(None) };
}

/// Reads `path`, recording its bytes (or its error) when a load is recording.
pub(super) fn read(path: &Path) -> io::Result<Vec<u8>> {
    let result = std::fs::read(path);
    RECORDING.with(|r| {
        if let Some(reads) = r.borrow_mut().as_mut() {
            let fingerprint = match &result {
                Ok(bytes) => digest(bytes),
                Err(e) => digest(e.to_string().as_bytes()),
            };
            reads.push((path.to_path_buf(), fingerprint));
        }
    });
    result
}

pub(super) fn read_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The `*.toml` files directly in `dir`, in name order (policy directories, directories of
/// gateway configs).
pub fn toml_files_in(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml") && p.is_file())
        .collect();
    found.sort();
    Ok(found)
}

/// Runs `load` recording every [`read`]; returns its result and the (path, SHA-256) list.
pub(super) fn record<T>(load: impl FnOnce() -> T) -> (T, Reads) {
    RECORDING.with(|r| *r.borrow_mut() = Some(Vec::new()));
    let value = load();
    let reads = RECORDING
        .with(|r| r.borrow_mut().take())
        .unwrap_or_default();
    (value, reads)
}

/// SHA-256 (hex) over the recorded reads of `paths`' files, in record order.
pub(super) fn fingerprint(
    reads: &[(PathBuf, Vec<u8>)],
    include: impl Fn(&Path) -> bool,
    with_paths: bool,
) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (path, hash) in reads.iter().filter(|(p, _)| include(p)) {
        if with_paths {
            ctx.update(path.to_string_lossy().as_bytes());
            ctx.update(&[0]);
        }
        ctx.update(hash);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn digest(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}
