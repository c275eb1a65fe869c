//! Fixtures of the workspace's tests (test threads): the shared real-data files in
//! `../shared/data` beside the repository, and temporary directories. Where a data file is
//! absent the test is skipped with a message, except under `CI=true`, where a missing data file
//! is a failure. Used by unit tests (`klagg`'s store) and integration tests alike, so it is not
//! behind `cfg(test)`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The repository root (the workspace holding `bench/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// `../shared/data/<relative>` if it exists. Otherwise prints why the caller skips and returns
/// `None`.
///
/// # Panics
/// When the file is missing and the environment variable `CI` is `true`.
pub fn shared_data(relative: &str) -> Option<PathBuf> {
    let path = repo_root().join("../shared/data").join(relative);
    if path.exists() {
        return Some(path.canonicalize().unwrap_or(path));
    }
    let ci = std::env::var("CI").is_ok_and(|value| value == "true");
    assert!(
        !ci,
        "CI=true and the shared data file {} is missing",
        path.display()
    );
    eprintln!(
        "SKIPPED: shared data file {} is absent (set CI=true to fail instead)",
        path.display()
    );
    None
}

/// A fresh directory under the system temp dir (`klagg-<tag>-<pid>-<n>`), removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Create it (emptied first if a previous run left it).
    ///
    /// # Panics
    /// When the directory cannot be created.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("klagg-{tag}-{}-{unique}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `klagg.db` in it.
    pub fn db(&self) -> PathBuf {
        self.0.join("klagg.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
