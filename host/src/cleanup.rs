//! What dead confd runs leave behind that only a later run can remove: the private directories
//! for plugin sockets. A confd run keeps its plugins' sockets in one directory of its own,
//! `confd-<pid>-XXXXXX` (confd-supervisor's `SocketDir`), and removes it when it ends; a confd
//! killed with SIGKILL cannot, and its plugins die with it (PR_SET_PDEATHSIG), so the directory
//! stays. The pid in the name tells a later run whose it was. Plugins started by other hosts
//! (or by confd before it had its own directory) make `pluginXXXXXX` directories directly in the
//! temporary directory; those are recognised by their dead socket. (Stage files beside
//! destinations are confd-core's: see its `stage`.)

use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// The socket file inside a plugin's directory (confd-sdk's `serve`).
const SOCKET_NAME: &str = "plugin.sock";

/// Where socket directories are made: confd's own `SocketDir::base()`
/// (`PLUGIN_UNIX_SOCKET_DIR` or the temporary directory), plus `TMPDIR` and `/tmp`, where
/// confd-sdk's `serve` puts its directory when no host gave it one.
fn socket_bases() -> Vec<PathBuf> {
    let mut bases = vec![confd_supervisor::SocketDir::base()];
    let var = |name| std::env::var_os(name).filter(|d| !d.is_empty());
    for base in var("TMPDIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/tmp")])
    {
        if !bases.contains(&base) {
            bases.push(base);
        }
    }
    bases
}

/// The pid in a confd socket directory's name, `confd-<pid>-` and six random ASCII letters or
/// digits (a tempfile directory with that prefix).
fn host_dir_pid(name: &OsStr) -> Option<i32> {
    let rest = name
        .to_str()?
        .strip_prefix(confd_supervisor::SOCKET_DIR_PREFIX)?;
    let (pid, random) = rest.split_once('-')?;
    if random.len() != 6 || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|pid| *pid > 0)
}

/// Whether a process with this pid exists (any user's: EPERM means it exists).
fn pid_alive(pid: i32) -> bool {
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Whether `path` is the socket directory of a confd process that no longer runs:
///
/// * its name is `confd-<pid>-XXXXXX` and no process has that pid (a pid taken again by another
///   process keeps the directory until a later run);
/// * it is a directory (not a symlink) owned by the user running confd, with no access for group
///   or others, as confd creates it;
/// * it holds nothing but plugin socket directories ([`socket_dir_is_stale`]) and sockets.
pub fn host_dir_is_stale(path: &Path) -> bool {
    let Some(pid) = path.file_name().and_then(host_dir_pid) else {
        return false;
    };
    if pid == std::process::id() as i32 || pid_alive(pid) {
        return false;
    }
    if !private_dir(path) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    entries.filter_map(Result::ok).all(|entry| {
        let inner = entry.path();
        socket_dir_is_stale(&inner)
            || std::fs::symlink_metadata(&inner).is_ok_and(|m| m.file_type().is_socket())
    })
}

/// A directory (not a symlink) of ours that nobody else may enter.
fn private_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| {
        meta.is_dir() && meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o077 == 0
    })
}

/// Removes a stale confd socket directory: each plugin directory, each socket, then the
/// directory itself, never recursively (anything unexpected makes a step fail and stays).
fn remove_host_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let inner = entry.path();
        if entry.file_type()?.is_dir() {
            remove_socket_dir(&inner)?;
        } else {
            std::fs::remove_file(&inner)?;
        }
    }
    std::fs::remove_dir(dir)
}

/// Only the one file a plugin made, then its (now empty) directory.
fn remove_socket_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(SOCKET_NAME)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => std::fs::remove_dir(dir),
    }
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
    if !private_dir(path) {
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

/// Removes every stale socket directory ([`host_dir_is_stale`], [`socket_dir_is_stale`]) in
/// the places they are made; returns how many. Failures are logged, never fatal: this only
/// tidies up.
pub fn remove_stale_socket_dirs() -> usize {
    remove_stale_socket_dirs_in(&socket_bases())
}

fn remove_stale_socket_dirs_in(bases: &[PathBuf]) -> usize {
    let mut removed = 0;
    for base in bases {
        let Ok(entries) = std::fs::read_dir(base) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let dir = entry.path();
            let result = if host_dir_pid(&name).is_some() && host_dir_is_stale(&dir) {
                remove_host_dir(&dir)
            } else if is_socket_dir_name(&name) && socket_dir_is_stale(&dir) {
                remove_socket_dir(&dir)
            } else {
                continue;
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

    /// A pid no process has: past the kernel's pid limit (at most 2^22).
    const DEAD_PID: i32 = (1 << 22) + 1;

    #[test]
    fn host_dir_names_carry_the_pid() {
        assert_eq!(host_dir_pid(OsStr::new("confd-123-Ab12Z9")), Some(123));
        for no in [
            "confd-123",
            "confd--Ab12Z9",
            "confd-12x-Ab12Z9",
            "confd-123-Ab12Z",
            "confd-0-Ab12Z9",
            "confd-123-Ab12Z9x",
            "confdx-123-Ab12Z9",
        ] {
            assert_eq!(host_dir_pid(OsStr::new(no)), None, "{no}");
        }
    }

    #[test]
    fn the_directory_of_a_dead_confd_is_removed_a_live_ones_kept() {
        let base = tempfile::tempdir().expect("tempdir");
        // as a SIGKILLed confd leaves it: its plugin's directory with a dead socket
        let dead = private_dir(base.path(), &format!("confd-{DEAD_PID}-Dead01"));
        let plugin = private_dir(&dead, "pluginAbCdEf");
        drop(std::os::unix::net::UnixListener::bind(plugin.join(SOCKET_NAME)).expect("bind"));
        let mine = confd_supervisor::SocketDir::create_in(base.path()).expect("ours");
        let parent = private_dir(
            base.path(),
            &format!("confd-{}-Live01", nix::unistd::getppid()),
        );
        let odd = private_dir(base.path(), &format!("confd-{DEAD_PID}-Odd001"));
        std::fs::write(odd.join("notes"), "x").expect("write");
        let open = private_dir(base.path(), &format!("confd-{DEAD_PID}-Open01"));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");

        assert!(host_dir_is_stale(&dead));
        assert!(!host_dir_is_stale(mine.path()), "this process's own");
        assert!(!host_dir_is_stale(&parent), "a live process's");
        assert!(!host_dir_is_stale(&odd), "holds something else");
        assert!(!host_dir_is_stale(&open), "not private");

        assert_eq!(remove_stale_socket_dirs_in(&[base.path().to_path_buf()]), 1);
        assert!(!dead.exists());
        for kept in [mine.path(), &parent, &odd, &open] {
            assert!(kept.exists(), "{}", kept.display());
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
