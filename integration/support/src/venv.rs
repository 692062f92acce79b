//! The test virtualenv `scripts/setup-python.sh` makes in `<target>/test-venv` (the Prometheus
//! parser, moto's server): one lookup with the CI-fails/locally-skips rule for every tool in it.

use std::path::PathBuf;

/// `<target>/test-venv/bin/<name>`. Missing: under `CI=true` this panics (CI must not skip);
/// otherwise it prints a loud notice saying what the tool was `for` and returns `None`.
pub(crate) fn program(name: &str, purpose: &str) -> Option<PathBuf> {
    let target = crate::profile_dir().parent()?.to_path_buf();
    let path = target.join("test-venv/bin").join(name);
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{} is missing but CI=true: run scripts/setup-python.sh",
            path.display()
        );
    }
    eprintln!(
        "\n*** SKIPPED: {} is missing; run scripts/setup-python.sh {purpose} ***\n",
        path.display()
    );
    None
}
