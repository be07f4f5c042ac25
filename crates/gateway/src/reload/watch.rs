//! What triggers a reload, and what a reload leaves behind: the file watcher, SIGHUP, the
//! admin endpoint, and the status, metrics and events each attempt records.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::SnapshotStore;
use crate::admin::metrics::Metrics;
use crate::config::ConfigErrors;
use crate::events::{now_rfc3339, EventSink, ReloadEvent, KIND_CONFIG_RELOAD, SCHEMA};
use crate::ids::next_id;

/// Changes on disk arriving within this window are taken in one reload: editors and
/// ConfigMap updates touch several files in a burst.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// What a successful reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied(u64),
    /// Nothing the config reads changed; the generation stays.
    Unchanged(u64),
}

/// The last reload attempt, for `/status`.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    pub time: Option<String>,
    pub trigger: Option<&'static str>,
    pub result: Option<&'static str>,
    pub errors: Vec<String>,
    /// The last refusal, kept until a reload succeeds.
    pub last_error: Option<Vec<String>>,
}

/// Runs reloads and records their outcome.
pub struct Reloader {
    store: Arc<SnapshotStore>,
    path: PathBuf,
    metrics: Arc<Metrics>,
    events: EventSink,
    status: Mutex<ReloadStatus>,
}

impl Reloader {
    pub fn new(
        store: Arc<SnapshotStore>,
        path: &Path,
        metrics: Arc<Metrics>,
        events: EventSink,
    ) -> Self {
        Reloader {
            store,
            path: path.to_path_buf(),
            metrics,
            events,
            status: Mutex::new(ReloadStatus::default()),
        }
    }

    pub fn store(&self) -> &Arc<SnapshotStore> {
        &self.store
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Reloads from disk now. Blocking: reads files and builds the snapshot.
    pub fn reload(&self, trigger: &'static str) -> Result<ReloadOutcome, ConfigErrors> {
        if trigger == "signal" {
            // SIGHUP is what log rotation tools send: the event file is opened again too.
            self.events.reopen();
        }
        let result = self.store.reload(&self.path);
        self.record(trigger, result)
    }

    /// Applies new material from the SPIFFE Workload API, recorded like a reload.
    pub fn apply_workload(
        &self,
        material: &crate::config::WorkloadMaterial,
    ) -> Result<ReloadOutcome, ConfigErrors> {
        let result = self.store.apply_workload(material);
        self.record("workload_api", result)
    }

    pub fn events(&self) -> &EventSink {
        &self.events
    }

    /// Logs, counts, events and keeps for `/status` what a reload attempt did.
    fn record(
        &self,
        trigger: &'static str,
        result: Result<ReloadOutcome, ConfigErrors>,
    ) -> Result<ReloadOutcome, ConfigErrors> {
        let current = self.store.load();
        let (label, errors) = match &result {
            Ok(ReloadOutcome::Applied(generation)) => {
                info!(generation, trigger, policy_hash = %current.config.policy_hash, "configuration reloaded");
                ("ok", Vec::new())
            }
            Ok(ReloadOutcome::Unchanged(_)) => ("unchanged", Vec::new()),
            Err(errors) => {
                let lines: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                warn!(trigger, errors = %errors, generation = current.generation, "configuration reload refused; the current configuration keeps serving");
                ("failed", lines)
            }
        };
        self.metrics.record_reload(label);
        if label != "unchanged" {
            self.events.emit(ReloadEvent {
                schema: SCHEMA,
                kind: KIND_CONFIG_RELOAD,
                time: now_rfc3339(),
                event_id: next_id(),
                result: if label == "ok" { "applied" } else { "refused" },
                trigger,
                generation: current.generation,
                policy_hash: current.config.policy_hash.clone(),
                errors: errors.clone(),
            });
        }
        if let Ok(mut status) = self.status.lock() {
            status.time = Some(now_rfc3339());
            status.trigger = Some(trigger);
            status.result = Some(label);
            // What is on disk now builds (or is what serves): the last refusal is resolved.
            status.last_error = (label == "failed").then(|| errors.clone());
            status.errors = errors;
        }
        result
    }
}

/// Watches every file the config reads and reloads on change; reloads on SIGHUP too.
pub struct ConfigWatcher {
    pub reloader: Arc<Reloader>,
    /// Told when SIGHUP is handled: until then a SIGHUP would end the process, so the gateway
    /// does not call itself ready.
    pub readiness: Arc<crate::admin::Readiness>,
}

/// The directories to watch and the paths in them that matter.
struct WatchSet {
    dirs: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
    content_dirs: HashSet<PathBuf>,
}

impl WatchSet {
    fn of(store: &SnapshotStore) -> WatchSet {
        let snapshot = store.load();
        let config = &snapshot.config;
        let files: HashSet<PathBuf> = config.files.iter().map(|f| absolute(f)).collect();
        let content_dirs: HashSet<PathBuf> = config.dirs.iter().map(|d| absolute(d)).collect();
        let mut dirs: HashSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        dirs.extend(content_dirs.iter().cloned());
        WatchSet {
            dirs,
            files,
            content_dirs,
        }
    }

    /// Whether a change at `path` can change the config: one of its files, a file in a policy
    /// directory, or a Kubernetes ConfigMap swap (`..data`, `..2024_…` entries).
    fn matters(&self, path: &Path) -> bool {
        let path = absolute(path);
        self.files.contains(&path)
            || path.parent().is_some_and(|p| self.content_dirs.contains(p))
            || path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".."))
    }
}

/// Whether an event can mean new content. Opening, reading and closing a file are events too
/// (inotify reports them): a reload reads every config file, so reacting to those would make
/// each reload trigger the next, forever.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        if let Some(feed) = self.reloader.store.workload.clone() {
            tokio::spawn(super::follow_workload_api(self.reloader.clone(), feed));
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
        let watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) if changes_content(&event.kind) => {
                    let _ = tx.send(event.paths);
                }
                _ => {}
            });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch config files; reload with SIGHUP or POST /reload");
                None
            }
        };
        let mut set = WatchSet::of(&self.reloader.store);
        let mut watched: HashSet<PathBuf> = HashSet::new();
        refresh_watches(watcher.as_mut(), &set, &mut watched);
        // Ready once SIGHUP reloads and the files are watched: an edit from now on is seen.
        self.readiness.reloads_handled();

        loop {
            #[cfg(unix)]
            let sighup = async {
                match hangup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let sighup = std::future::pending::<Option<()>>();
            let trigger = tokio::select! {
                Some(paths) = rx.recv() => {
                    if !paths.iter().any(|p| set.matters(p)) {
                        continue;
                    }
                    // Let the burst settle, then take everything that arrived.
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    "file"
                }
                _ = sighup => "signal",
                _ = shutdown.changed() => return,
            };
            let reloader = self.reloader.clone();
            let _ = tokio::task::spawn_blocking(move || reloader.reload(trigger)).await;
            set = WatchSet::of(&self.reloader.store);
            refresh_watches(watcher.as_mut(), &set, &mut watched);
        }
    }
}

fn refresh_watches(
    watcher: Option<&mut notify::RecommendedWatcher>,
    set: &WatchSet,
    watched: &mut HashSet<PathBuf>,
) {
    let Some(watcher) = watcher else { return };
    for dir in watched.difference(&set.dirs).cloned().collect::<Vec<_>>() {
        let _ = watcher.unwatch(&dir);
        watched.remove(&dir);
    }
    for dir in &set.dirs {
        if !watched.contains(dir) {
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(dir.clone());
                }
                Err(e) => warn!(dir = %dir.display(), error = %e, "cannot watch directory"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

    use super::*;

    #[test]
    fn reading_a_file_is_no_change_writing_renaming_or_removing_it_is() {
        let reads = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
        ];
        for kind in reads {
            assert!(!changes_content(&kind), "{kind:?}");
        }
        let writes = [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(RemoveKind::File),
        ];
        for kind in writes {
            assert!(changes_content(&kind), "{kind:?}");
        }
    }
}
