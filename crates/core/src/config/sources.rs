//! Every file a config load reads, fingerprinted from the very bytes that were parsed.
//!
//! Hashing the files again after loading would race with a deploy replacing them: the
//! snapshot would hold one version and its fingerprint another, and the next reload would
//! wrongly find "nothing changed". So every read during [`super::load`] goes through
//! [`read`], which records what it returned.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Each file read, with the SHA-256 of what the read returned.
pub(super) type Reads = Vec<(PathBuf, Vec<u8>)>;

/// What a load read, byte for byte: a later load can read the same again (see [`replay`]).
#[derive(Debug, Default)]
pub struct Captured {
    files: HashMap<PathBuf, Result<Vec<u8>, String>>,
    dirs: HashMap<PathBuf, Result<Vec<PathBuf>, String>>,
}

#[derive(Default)]
struct Recording {
    reads: Reads,
    captured: Captured,
    replaying: Option<Arc<Captured>>,
}

thread_local! {
    static RECORDING: RefCell<Option<Recording>> = const { RefCell::new(None) };
}

/// Reads `path`, recording its bytes (or its error) when a load is recording; when a load
/// replays an earlier one, the bytes come from that load rather than the disk.
pub(super) fn read(path: &Path) -> io::Result<Vec<u8>> {
    let replayed = RECORDING.with(|r| {
        r.borrow().as_ref().and_then(|rec| {
            rec.replaying.as_ref().map(|earlier| {
                earlier.files.get(path).cloned().unwrap_or_else(|| {
                    Err("not read by the configuration being replayed".to_string())
                })
            })
        })
    });
    let result = match replayed {
        Some(found) => found.map_err(io::Error::other),
        None => std::fs::read(path),
    };
    RECORDING.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            let fingerprint = match &result {
                Ok(bytes) => digest(bytes),
                Err(e) => digest(e.to_string().as_bytes()),
            };
            rec.reads.push((path.to_path_buf(), fingerprint));
            let kept = match &result {
                Ok(bytes) => Ok(bytes.clone()),
                Err(e) => Err(e.to_string()),
            };
            rec.captured.files.insert(path.to_path_buf(), kept);
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

/// [`toml_files_in`] for a config load: recorded, and replayed like [`read`].
pub(super) fn toml_files_listed(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let replayed = RECORDING.with(|r| {
        r.borrow().as_ref().and_then(|rec| {
            rec.replaying.as_ref().map(|earlier| {
                earlier.dirs.get(dir).cloned().unwrap_or_else(|| {
                    Err("not listed by the configuration being replayed".to_string())
                })
            })
        })
    });
    let result = match replayed {
        Some(found) => found.map_err(io::Error::other),
        None => toml_files_in(dir),
    };
    RECORDING.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            let kept = match &result {
                Ok(list) => Ok(list.clone()),
                Err(e) => Err(e.to_string()),
            };
            rec.captured.dirs.insert(dir.to_path_buf(), kept);
        }
    });
    result
}

/// Runs `load` recording every [`read`]; returns its result, the (path, SHA-256) list and
/// the bytes read. With `replaying`, reads are answered from that earlier load's bytes.
pub(super) fn record<T>(
    replaying: Option<Arc<Captured>>,
    load: impl FnOnce() -> T,
) -> (T, Reads, Captured) {
    RECORDING.with(|r| {
        *r.borrow_mut() = Some(Recording {
            replaying,
            ..Recording::default()
        })
    });
    let value = load();
    let recording = RECORDING
        .with(|r| r.borrow_mut().take())
        .unwrap_or_default();
    (value, recording.reads, recording.captured)
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
