//! The environment a plugin process starts with: the host's own plus the go-plugin variables,
//! handed over without copying it. `std::process::Command::env` makes std copy the whole
//! environment into a map and then into C strings at every spawn; with the env backend's
//! thousands of variables that copy was the host's largest allocation of a one-shot run.
//!
//! What it buys, measured (`make bench`, one-shot 200 x 50 on env, so 10,000 variables): the
//! host's PSS at the pair's peak is 0.9-1.4 MiB lower (8.2 → 7.3 MiB with the symbol order), the
//! pair's 1.6-2.3 MiB with the env backend's own index of `environ` counted in (12.6 → 11.0).
//! With a few dozen variables it buys nothing. To check that it still pays: build confd with `Command::env`/`env_remove` in
//! `process::build_command` instead (commit 5c82121 has that version) and run the oneshot bench
//! with `CONFD_BENCH_BASELINE=std=<that confd>`; see docs/performance.md.
//!
//! Unsafe by nature (it reads and, in the child, replaces the C `environ` array); every block
//! says why it holds.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt as _;

/// `NAME=value` entries for the child: pointers into the host's `environ` for the variables
/// kept, and owned strings for those set here. Built before the fork, installed in the child.
pub(crate) struct ChildEnv {
    /// Owned `NAME=value` strings; `pointers` points into them (moving a CString keeps its heap
    /// buffer where it is).
    _owned: Vec<CString>,
    /// The envp array, null-terminated.
    pointers: Vec<*const libc::c_char>,
}

// SAFETY: the pointers refer either to `_owned` (moved along with them) or to the process
// environment, which the host does not modify after start (see `ChildEnv::new`); the array is
// only read, in the forked child.
unsafe impl Send for ChildEnv {}
unsafe impl Sync for ChildEnv {}

impl ChildEnv {
    /// The current environment without `remove` and without the names in `set`, followed by
    /// `set` (the last value of a name set twice). Names with `=` or NUL bytes are an error (they cannot be passed).
    pub(crate) fn new(set: &[(OsString, OsString)], remove: &[&str]) -> io::Result<ChildEnv> {
        let mut owned = Vec::with_capacity(set.len());
        for (i, (name, value)) in set.iter().enumerate() {
            // A name set again later is left to the later value, as `Command::env` would.
            if set[i + 1..].iter().any(|(later, _)| later == name) {
                continue;
            }
            let name = name.as_bytes();
            if name.is_empty() || name.contains(&b'=') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "environment variable name {:?} is empty or contains '='",
                        OsStr::from_bytes(name)
                    ),
                ));
            }
            let mut entry = Vec::with_capacity(name.len() + value.len() + 1);
            entry.extend_from_slice(name);
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            owned.push(CString::new(entry).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "environment variable {:?} contains a NUL byte",
                        OsStr::from_bytes(name)
                    ),
                )
            })?);
        }
        let replaced = |entry: &[u8]| {
            let name = entry.split(|b| *b == b'=').next().unwrap_or(entry);
            remove.iter().any(|r| r.as_bytes() == name)
                || set.iter().any(|(n, _)| n.as_bytes() == name)
        };
        let mut pointers = Vec::new();
        // SAFETY: `environ` is a null-terminated array of NUL-terminated strings. The host
        // never calls setenv/unsetenv once running (Rust makes `set_var` unsafe for exactly this
        // reason, and confd does not use it), so the array and its strings stay valid and
        // unchanged while the child is spawned.
        unsafe {
            let mut cursor = environ;
            while !cursor.is_null() && !(*cursor).is_null() {
                if !replaced(CStr::from_ptr(*cursor).to_bytes()) {
                    pointers.push(*cursor);
                }
                cursor = cursor.add(1);
            }
        }
        pointers.extend(owned.iter().map(|c| c.as_ptr()));
        pointers.push(std::ptr::null());
        Ok(ChildEnv {
            _owned: owned,
            pointers,
        })
    }

    /// Makes this the environment that the following exec passes on.
    ///
    /// # Safety
    /// Only in a forked child before exec (a `pre_exec` hook): it replaces the process-wide
    /// `environ` pointer, which nothing else may be reading at the time.
    pub(crate) unsafe fn install(&self) {
        // SAFETY: per this function's contract; the array outlives the exec because the hook
        // that owns it lives until the child has exec'd.
        unsafe {
            environ = self.pointers.as_ptr().cast_mut().cast();
        }
    }

    /// The entries, for tests.
    #[cfg(test)]
    fn entries(&self) -> Vec<String> {
        self.pointers
            .iter()
            .take_while(|p| !p.is_null())
            // SAFETY: every non-null pointer is a NUL-terminated string (see `new`).
            .map(|p| unsafe { CStr::from_ptr(*p) }.to_string_lossy().into_owned())
            .collect()
    }
}

unsafe extern "C" {
    static mut environ: *const *const libc::c_char;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_environment_and_sets_and_removes_names() {
        let set = vec![
            (OsString::from("PATH"), OsString::from("/first")),
            (OsString::from("PATH"), OsString::from("/override")),
            (OsString::from("CONFD_TEST_NEW"), OsString::from("a=b")),
        ];
        let env = ChildEnv::new(&set, &["HOME"]).expect("builds");
        let entries = env.entries();
        assert!(
            entries.contains(&"PATH=/override".to_string()),
            "{entries:?}"
        );
        assert!(entries.contains(&"CONFD_TEST_NEW=a=b".to_string()));
        assert_eq!(entries.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert!(!entries.iter().any(|e| e.starts_with("HOME=")));
        // everything else is passed through unchanged
        let expected_others = std::env::vars_os()
            .filter(|(k, _)| k != "PATH" && k != "HOME" && k != "CONFD_TEST_NEW")
            .count();
        assert_eq!(entries.len(), expected_others + 2);
    }

    #[test]
    fn rejects_names_that_cannot_be_passed() {
        let bad = vec![(OsString::from("A=B"), OsString::from("x"))];
        assert!(ChildEnv::new(&bad, &[]).is_err());
        let nul = vec![(OsString::from("A"), OsString::from("x\0y"))];
        assert!(ChildEnv::new(&nul, &[]).is_err());
    }
}
