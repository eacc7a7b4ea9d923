//! `--watch`: reload when a file given by flag changes, as if SIGHUP had been sent.
//!
//! The parent directory of every file is watched (and, for a symlink, the directory of its
//! target too), not the file: replacing a file by rename, and Kubernetes' update of a mounted
//! Secret (new `..2026_…` directory, then an atomic rename of the `..data` symlink that the
//! visible names point through), are new directory entries that a watch on the old inode would
//! never see. Bursts (an editor's write + rename, the Secret's several steps) are debounced
//! into one reload; a reload that finds the same bytes swaps nothing.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Cause, Control, generation};
use crate::error::Error;
use crate::sys::inotify::Inotify;
use crate::telemetry::log::Event;

/// Quiet time after the last event before reloading.
const SETTLE: Duration = Duration::from_millis(200);
/// A stream of events never delays a reload by more than this.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Watches every directory that holds a flagged file and reloads on relevant changes, from a
/// thread of its own.
pub(crate) fn spawn(control: Arc<Control>) -> Result<(), Error> {
    let mut dirs = BTreeSet::new();
    let mut names = BTreeSet::new();
    for file in generation::watched(&control.config) {
        add(file, &mut dirs, &mut names);
        if let Ok(target) = std::fs::canonicalize(file) {
            add(&target, &mut dirs, &mut names);
        }
    }
    let inotify = Inotify::new().map_err(Error::io("--watch: cannot start inotify"))?;
    for dir in &dirs {
        inotify
            .watch_dir(dir)
            .map_err(|source| Error::Unwatchable {
                dir: dir.clone(),
                source,
            })?;
    }
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Event::info("watch.start")
        .text("dirs", &shown.join(","))
        .emit();
    std::thread::Builder::new()
        .name("ringtls-watch".into())
        .spawn(move || watch(&inotify, &names, &control))
        .map(|_| ())
        .map_err(Error::io("--watch: cannot start its thread"))
}

fn add(file: &Path, dirs: &mut BTreeSet<PathBuf>, names: &mut BTreeSet<OsString>) {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // One watch per directory however it was spelt (`ca.pem` and `/etc/ringtls/ca.pem`).
    dirs.insert(std::fs::canonicalize(&dir).unwrap_or(dir));
    if let Some(name) = file.file_name() {
        names.insert(name.to_os_string());
    }
}

/// Whether a changed entry can affect a flagged file: the file itself, or a `..`-prefixed
/// entry (Kubernetes' `..data` and its timestamped directories).
fn relevant(name: &OsString, names: &BTreeSet<OsString>) -> bool {
    names.contains(name) || name.as_encoded_bytes().starts_with(b"..")
}

fn watch(inotify: &Inotify, names: &BTreeSet<OsString>, control: &Control) {
    loop {
        match inotify.read(None) {
            Ok(changed) if changed.iter().any(|n| relevant(n, names)) => {}
            Ok(_) => continue,
            Err(e) => {
                Event::error("watch.failed")
                    .text("error", &e.to_string())
                    .emit();
                return;
            }
        }
        let first = Instant::now();
        while first.elapsed() < MAX_DELAY {
            match inotify.read(Some(SETTLE)) {
                Ok(more) if more.is_empty() => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        control.reload(Cause::Watch);
    }
}
