//! Stage files: the new content of a destination, written beside it and renamed over it. Each
//! carries a name confd recognises, `.confd-<dest name>.<8 letters or digits>`, and an exclusive
//! `flock` while its sync uses it. A sync removes its stage file on every way out (the handle
//! removes it when dropped: errors, a failed check, a panic, a cancelled task); only a process
//! that dies without unwinding (SIGKILL, a second SIGINT) leaves one behind. Those are removed
//! when a later run loads its resources ([`remove_stale`]): the files of exactly this pattern,
//! beside the destinations that run manages, that no live process holds locked.

use std::ffi::OsStr;
use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use tempfile::NamedTempFile;

/// Length of the random part of a stage file name.
const RANDOM_LEN: usize = 8;

/// A stage file in use: removed when dropped, locked until then.
pub(crate) struct Stage {
    file: NamedTempFile,
    /// Tells a starting confd (see [`remove_stale`]) that this file is in use. Declared after
    /// `file`, so the file is removed before the lock is released.
    _lock: Flock<File>,
}

impl Stage {
    /// A new empty stage file (mode 0600, `O_EXCL`) in `dir` for the destination named `name`.
    pub(crate) fn create(dir: &Path, name: &OsStr) -> io::Result<Stage> {
        let file = tempfile::Builder::new()
            .prefix(&prefix(name))
            .rand_bytes(RANDOM_LEN)
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(dir)?;
        // A second descriptor of the same open file: the lock belongs to the open file, so it
        // holds as long as either descriptor is open.
        let lock = Flock::lock(file.as_file().try_clone()?, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| io::Error::from(errno))?;
        Ok(Stage { file, _lock: lock })
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }

    pub(crate) fn as_file(&self) -> &File {
        self.file.as_file()
    }

    /// Keeps the file (`--keep-stage-file`); it lasts until the next run's [`remove_stale`].
    pub(crate) fn keep(self) -> io::Result<PathBuf> {
        let Stage { file, _lock } = self;
        file.keep().map(|(_, path)| path).map_err(|e| e.error)
    }

    /// Renames the file over `dest`. On failure the stage file is removed.
    pub(crate) fn persist(self, dest: &Path) -> io::Result<()> {
        let Stage { file, _lock } = self;
        file.persist(dest).map(drop).map_err(|e| e.error)
    }
}

/// `.confd-<dest name>.`
fn prefix(name: &OsStr) -> String {
    format!(".confd-{}.", name.to_string_lossy())
}

/// Whether `file_name` is a stage file name of the destination named `name`.
fn is_stage_of(file_name: &OsStr, name: &OsStr) -> bool {
    let Some(file_name) = file_name.to_str() else {
        return false;
    };
    file_name
        .strip_prefix(prefix(name).as_str())
        .is_some_and(|rest| {
            rest.len() == RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Removes the stage files beside `dest` that a dead process left: regular files named
/// `.confd-<dest name>.<8 letters or digits>` that nobody holds locked. Returns how many; a
/// file that cannot be checked or removed is left and logged.
pub fn remove_stale(dest: &Path) -> usize {
    let Some(name) = dest.file_name() else {
        return 0;
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(Result::ok) {
        if !is_stage_of(&entry.file_name(), name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        match remove_if_unlocked(&path) {
            Ok(true) => {
                tracing::debug!("removed the stale stage file {}", path.display());
                removed += 1;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot remove the stale stage file {}: {e}", path.display()),
        }
    }
    removed
}

/// Removes `path` unless another process holds its lock (a sync in progress in another confd
/// writing the same destination). Returns whether it was removed.
fn remove_if_unlocked(path: &Path) -> io::Result<bool> {
    // Read or write access is enough for a lock; a stage file's mode is the destination's.
    let file = File::open(path).or_else(|_| std::fs::OpenOptions::new().write(true).open(path));
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(_held) => match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        },
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(false),
        Err((_, errno)) => Err(io::Error::from(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_one_destination() {
        let name = OsStr::new("app.conf");
        assert!(is_stage_of(OsStr::new(".confd-app.conf.Ab3dE6g8"), name));
        for other in [
            ".confd-app.conf.Ab3dE6g",
            ".confd-app.conf.Ab3dE6g89",
            ".confd-app.conf.Ab3dE6g!",
            ".confd-app.conf.bak.Ab3dE6g8",
            ".app.conf.Ab3dE6g8",
            "app.conf",
            ".confd-app.Ab3dE6g8",
        ] {
            assert!(!is_stage_of(OsStr::new(other), name), "{other}");
        }
        // The stage files of `app.conf.bak` are not those of `app.conf`, and the reverse.
        assert!(!is_stage_of(
            OsStr::new(".confd-app.conf.bak.Ab3dE6g8"),
            OsStr::new("app.conf")
        ));
        assert!(!is_stage_of(
            OsStr::new(".confd-app.conf.Ab3dE6g8"),
            OsStr::new("app.conf.bak")
        ));
    }

    #[test]
    fn stale_stage_files_go_live_and_foreign_ones_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("app.conf");
        let write = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, "x").expect("write");
            path
        };
        let stale = write(".confd-app.conf.Zz9Yy8Xx");
        let write_only = write(".confd-app.conf.Qq1Ww2Ee");
        // Write-only, as a destination's mode may be: still checked and removed.
        std::fs::set_permissions(&write_only, Permissions::from_mode(0o200)).expect("chmod");
        let other_dest = write(".confd-other.conf.Zz9Yy8Xx");
        let old_style = write(".app.conf.Zz9Yy8Xx");
        std::fs::create_dir(dir.path().join(".confd-app.conf.Dir12345")).expect("mkdir");
        let live = Stage::create(dir.path(), OsStr::new("app.conf")).expect("stage");

        assert_eq!(remove_stale(&dest), 2);
        assert!(!stale.exists() && !write_only.exists());
        assert!(
            live.path().exists(),
            "a stage file in use is locked and kept"
        );
        assert!(other_dest.exists() && old_style.exists());
        assert!(dir.path().join(".confd-app.conf.Dir12345").is_dir());

        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists(), "dropping the stage removes it");
    }
}
