//! What dead confd runs leave behind that only a later run can remove: the private directories
//! plugins create for their Unix sockets. A plugin removes its directory when it stops, but a
//! plugin killed with SIGKILL cannot, and every plugin of a confd killed with SIGKILL is killed
//! that way (PR_SET_PDEATHSIG): each such kill used to leave one directory in the temporary
//! directory forever. (Stage files beside destinations are confd-core's: see its `stage`.)

use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// The socket file inside a plugin's directory (confd-sdk's `serve`).
const SOCKET_NAME: &str = "plugin.sock";

/// Where plugins create their socket directories, as confd-sdk's `serve` picks it:
/// `PLUGIN_UNIX_SOCKET_DIR` when set, otherwise `TMPDIR` (when set) and `/tmp`. The plugins
/// inherit confd's environment, so confd sees the same bases.
fn socket_bases() -> Vec<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|d| !d.is_empty());
    if let Some(dir) = var("PLUGIN_UNIX_SOCKET_DIR") {
        return vec![PathBuf::from(dir)];
    }
    let mut bases: Vec<PathBuf> = var("TMPDIR").map(PathBuf::from).into_iter().collect();
    let tmp = PathBuf::from("/tmp");
    if !bases.contains(&tmp) {
        bases.push(tmp);
    }
    bases
}

/// The name confd-sdk gives a socket directory: `plugin` and six random ASCII letters or
/// digits (a tempfile directory with the prefix `plugin`).
fn is_socket_dir_name(name: &OsStr) -> bool {
    name.to_str()
        .and_then(|n| n.strip_prefix("plugin"))
        .is_some_and(|rest| rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `path` is the socket directory of a plugin that no longer runs, so that removing it
/// takes nothing from anybody:
///
/// * its name is confd-sdk's (`plugin` + 6 letters or digits), it is a directory (not a
///   symlink) owned by the user running confd, with no access for group or others, as the
///   plugin creates it;
/// * it holds nothing but the socket `plugin.sock`;
/// * nobody listens on that socket any more: a connection is refused (the kernel refuses it
///   as soon as the listening process is gone, and accepts it while the process lives, even
///   if it is stopped). A directory without the socket is left between the plugin's mkdir
///   and its bind (a kill in that instant); if a live plugin were in that instant, it finds
///   its directory gone, fails to bind and falls back to the next base or to TCP.
///
/// Other programs' `plugin*` entries (go-plugin's sockets are files, not directories) never
/// match all of these.
pub fn socket_dir_is_stale(path: &Path) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    if !is_socket_dir_name(name) {
        return false;
    }
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() || meta.mode() & 0o077 != 0 {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    let names: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    match names.as_slice() {
        [] => true,
        [only] if only == SOCKET_NAME => {
            let socket = path.join(SOCKET_NAME);
            std::fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket())
                && nobody_listens(&socket)
        }
        _ => false,
    }
}

/// A non-blocking connect: refused means no process holds the listening socket. Any other
/// outcome (accepted, a full backlog, a path too long) counts as someone listening.
fn nobody_listens(path: &Path) -> bool {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let Ok(address) = UnixAddr::new(path) else {
        return false;
    };
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    matches!(
        connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &address),
        Err(nix::errno::Errno::ECONNREFUSED)
    )
}

/// Removes every stale socket directory ([`socket_dir_is_stale`]) in the places plugins create
/// them; returns how many. Failures are logged, never fatal: this only tidies up.
pub fn remove_stale_socket_dirs() -> usize {
    let mut removed = 0;
    for base in socket_bases() {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if !is_socket_dir_name(&entry.file_name()) {
                continue;
            }
            let dir = entry.path();
            if !socket_dir_is_stale(&dir) {
                continue;
            }
            // Only the one file the plugin made, then the (now empty) directory: never a
            // recursive removal.
            let socket = dir.join(SOCKET_NAME);
            let result = match std::fs::remove_file(&socket) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => std::fs::remove_dir(&dir),
            };
            match result {
                Ok(()) => removed += 1,
                Err(e) => tracing::debug!(
                    "cannot remove the stale plugin socket directory {}: {e}",
                    dir.display()
                ),
            }
        }
    }
    if removed > 0 {
        tracing::debug!("removed {removed} socket directories left by killed plugins");
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn private_dir(base: &Path, name: &str) -> PathBuf {
        let dir = base.join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        dir
    }

    #[test]
    fn names_are_exactly_the_sdks() {
        for yes in ["pluginAb12Z9", "plugin000000"] {
            assert!(is_socket_dir_name(OsStr::new(yes)), "{yes}");
        }
        for no in [
            "plugin",
            "pluginAb12Z",
            "pluginAb12Z90",
            "plugin-dir12",
            "plugin123456789",
            "Plugin123456",
        ] {
            assert!(!is_socket_dir_name(OsStr::new(no)), "{no}");
        }
    }

    #[test]
    fn a_dead_socket_is_stale_a_live_one_is_not() {
        let base = tempfile::tempdir().expect("tempdir");
        let live = private_dir(base.path(), "pluginLive01");
        let listener =
            std::os::unix::net::UnixListener::bind(live.join(SOCKET_NAME)).expect("bind");
        assert!(!socket_dir_is_stale(&live), "someone listens");
        drop(listener);
        assert!(socket_dir_is_stale(&live), "the listener is gone");

        let empty = private_dir(base.path(), "pluginEmpty1");
        assert!(socket_dir_is_stale(&empty));
    }

    #[test]
    fn anything_unlike_a_plugin_directory_is_kept() {
        let base = tempfile::tempdir().expect("tempdir");
        let other_name = private_dir(base.path(), "plugin-dir12");
        assert!(!socket_dir_is_stale(&other_name), "not the sdk's name");

        let open = private_dir(base.path(), "pluginOpen01");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert!(!socket_dir_is_stale(&open), "not private");

        let more = private_dir(base.path(), "pluginMore01");
        std::fs::write(more.join("notes"), "x").expect("write");
        assert!(!socket_dir_is_stale(&more), "holds something else");

        let file = base.path().join("pluginFile01");
        std::fs::write(&file, "").expect("write");
        assert!(!socket_dir_is_stale(&file), "a file, not a directory");

        let not_socket = private_dir(base.path(), "pluginNots01");
        std::fs::write(not_socket.join(SOCKET_NAME), "").expect("write");
        assert!(!socket_dir_is_stale(&not_socket), "plugin.sock is a file");

        if nix::unistd::geteuid().is_root() {
            let foreign = private_dir(base.path(), "pluginUser01");
            std::os::unix::fs::chown(&foreign, Some(65534), None).expect("chown to nobody");
            assert!(!socket_dir_is_stale(&foreign), "owned by another user");
        } else {
            eprintln!("not root: the check of a directory owned by another user is skipped");
        }

        let target = private_dir(base.path(), "target");
        let link = base.path().join("pluginLink01");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(!socket_dir_is_stale(&link), "a symlink");
    }
}
