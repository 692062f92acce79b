//! Reads the configured files and directories into one flat key map, in
//! confd's order, and caches the result so the host's many `GetValues` calls
//! (one per resource) parse the data once.
//!
//! The cache is keyed by the exact bytes of every file read, not by
//! timestamps alone, so a write within one timestamp tick is never missed
//! (the watch relies on that). Re-reading is skipped only when every file's
//! identity, size and change time are as before *and* its last change lies
//! well before the previous read: a later write would then have to carry a
//! newer change time (the same reasoning as git's "racily clean" check).
//! Without that, a large data file was read and compared once per resource.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use confd_sdk::Error;
use glob::{MatchOptions, Pattern};

use crate::NAME;
use crate::parse::{self, Format};

/// Every file read, with its bytes, in reading order.
type Contents = Vec<(PathBuf, Vec<u8>)>;

/// The merged keys of all files.
pub(crate) type Values = Arc<BTreeMap<String, String>>;

/// How long before a read a file's last change must lie for its unchanged
/// metadata to prove unchanged bytes: far beyond any file system's timestamp
/// granularity (FAT's 2 s is the coarsest in use).
const SETTLED: Duration = Duration::from_secs(3);

/// What identifies a file's bytes without reading them, when settled.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }

    /// Whether the last change happened at least [`SETTLED`] before `read_at`.
    fn settled_before(&self, read_at: SystemTime) -> bool {
        let Ok(since_epoch) = read_at.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let Some(limit) = since_epoch.checked_sub(SETTLED) else {
            return false;
        };
        let (secs, nanos) = self.ctime;
        match (u64::try_from(secs), u32::try_from(nanos)) {
            (Ok(secs), Ok(nanos)) => Duration::new(secs, nanos) < limit,
            _ => false,
        }
    }
}

/// One read of every file.
#[derive(Debug)]
struct Snapshot {
    contents: Contents,
    /// Each file's metadata taken before reading it, in `contents` order.
    stamps: Vec<Stamp>,
    /// The wall clock before the first file was read.
    read_at: SystemTime,
    values: Values,
}

/// What was read last time and what it flattened to.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    last: Mutex<Option<Snapshot>>,
}

/// The files to read, in order: each configured path in turn; a directory
/// contributes its files whose base name matches `filter`, walked
/// recursively in byte order of names with subdirectories visited in place
/// (Go's `filepath.Walk`). A file named directly is read whatever its name.
pub(crate) fn plan(paths: &[PathBuf], filter: &Pattern) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for path in paths {
        let meta = fs::metadata(path).map_err(|e| io_error(path, &e))?;
        if meta.is_dir() {
            walk(path, filter, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn walk(dir: &Path, filter: &Pattern, files: &mut Vec<PathBuf>) -> Result<(), Error> {
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(|e| io_error(dir, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| io_error(dir, &e))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    let options = MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    for entry in entries {
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| io_error(&path, &e))?;
        if file_type.is_dir() {
            walk(&path, filter, files)?;
            continue;
        }
        if !filter.matches_with(&entry.file_name().to_string_lossy(), options) {
            continue;
        }
        if file_type.is_symlink() {
            // Like filepath.Walk, a symlinked directory is not descended
            // into (Kubernetes ConfigMap volumes hold `..data` links that
            // would list every file twice); a symlinked file is read.
            match fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    tracing::debug!(path = %path.display(), "not following a directory symlink");
                    continue;
                }
                Ok(_) => {}
                Err(e) => return Err(io_error(&path, &e)),
            }
        }
        files.push(path);
    }
    Ok(())
}

impl Cache {
    /// Reads every file of the plan and returns the merged keys, reusing the
    /// last result when every file has the same bytes as then.
    pub(crate) fn load(&self, paths: &[PathBuf], filter: &Pattern) -> Result<Values, Error> {
        let files = plan(paths, filter)?;
        let read_at = SystemTime::now();
        let mut stamps = Vec::with_capacity(files.len());
        for file in &files {
            // Check the extension before reading, so a stray file is named
            // even when it cannot be read.
            Format::for_path(file).map_err(|ext| bad_extension(file, &ext))?;
            let meta = fs::metadata(file).map_err(|e| io_error(file, &e))?;
            stamps.push(Stamp::of(&meta));
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seen) = last.as_ref()
            && seen.stamps == stamps
            && seen.contents.iter().map(|(path, _)| path).eq(files.iter())
            && seen.stamps.iter().all(|s| s.settled_before(seen.read_at))
        {
            return Ok(Arc::clone(&seen.values));
        }
        let mut contents = Vec::with_capacity(files.len());
        for file in files {
            let bytes = fs::read(&file).map_err(|e| io_error(&file, &e))?;
            contents.push((file, bytes));
        }
        if let Some(seen) = last.as_mut()
            && seen.contents == contents
        {
            // Same bytes: keep the values, remember the newer metadata (a
            // file touched long ago but rewritten identically settles too).
            seen.stamps = stamps;
            seen.read_at = read_at;
            return Ok(Arc::clone(&seen.values));
        }
        let mut values = BTreeMap::new();
        for (file, bytes) in &contents {
            read_into(file, bytes, &mut values)?;
        }
        let values = Arc::new(values);
        *last = Some(Snapshot {
            contents,
            stamps,
            read_at,
            values: Arc::clone(&values),
        });
        Ok(values)
    }
}

/// Parses one file's bytes and merges its keys over `values`.
fn read_into(
    file: &Path,
    bytes: &[u8],
    values: &mut BTreeMap<String, String>,
) -> Result<(), Error> {
    let format = Format::for_path(file).map_err(|ext| bad_extension(file, &ext))?;
    let text = std::str::from_utf8(bytes).map_err(|e| not_utf8(format, file, bytes, &e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    parse::flatten_into(format, text, values).map_err(|e| {
        let at = match (e.line, e.column) {
            (Some(line), Some(column)) => format!(" line {line} column {column}"),
            (Some(line), None) => format!(" line {line}"),
            _ => String::new(),
        };
        Error::unavailable(format!("{}{at}: {}", file.display(), e.message))
    })
}

/// The one rule for bytes that are not UTF-8 (`confd_sdk::text`), for a data file: the error
/// names the backend, the file, the line and, when the file parses with the bad bytes replaced,
/// the key they belong to.
fn not_utf8(format: Format, file: &Path, bytes: &[u8], err: &std::str::Utf8Error) -> Error {
    let at = err.valid_up_to();
    let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
    let byte = bytes.get(at).copied().unwrap_or_default();
    let what = match key_of_bad_bytes(format, bytes) {
        Some((key, true)) => format!("the value of key {key:?} is"),
        Some((key, false)) => format!("key {key:?} (bad bytes shown as \u{fffd}) is"),
        None => "the file is".to_string(),
    };
    Error::invalid_data(format!(
        "{NAME}: {} line {line}: {what} not UTF-8 text (byte 0x{byte:02x} at offset {at})",
        file.display()
    ))
}

/// The key (and whether it is its value, not the key itself, that holds them) of the first bad
/// bytes, found by parsing the file with them replaced by U+FFFD. Only when the file's own text
/// holds no U+FFFD does one mark a bad byte; otherwise, or when the replaced text does not
/// parse, `None`.
fn key_of_bad_bytes(format: Format, bytes: &[u8]) -> Option<(String, bool)> {
    const MARK: char = '\u{fffd}';
    if bytes.utf8_chunks().any(|c| c.valid().contains(MARK)) {
        return None;
    }
    let text = String::from_utf8_lossy(bytes);
    let mut values = BTreeMap::new();
    parse::flatten_into(
        format,
        text.strip_prefix('\u{feff}').unwrap_or(&text),
        &mut values,
    )
    .ok()?;
    values.into_iter().find_map(|(key, value)| {
        if key.contains(MARK) {
            Some((key, false))
        } else {
            value.contains(MARK).then_some((key, true))
        }
    })
}

fn io_error(path: &Path, err: &io::Error) -> Error {
    Error::unavailable(format!("cannot read {}: {err}", path.display()))
}

fn bad_extension(path: &Path, ext: &str) -> Error {
    Error::unavailable(format!(
        "{}: unsupported file extension \".{ext}\": the file backend reads YAML (.yaml, .yml or \
         no extension) and JSON (.json); narrow the directory with --filter",
        path.display()
    ))
}

#[cfg(test)]
mod tests;
