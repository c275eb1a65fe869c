//! Locating the shared real-data files for tests (test threads): `../shared/data` beside the
//! repository. Where a file is absent the test is skipped with a message, except under `CI=true`,
//! where a missing data file is a failure.

use std::path::{Path, PathBuf};

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
