//! Safe file sync of one rendered resource: compare, stage, check, atomic
//! rename, reload. A destination is either left alone or replaced whole;
//! never truncated, never half-written, and an unchanged one is not touched.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::command::{self, CommandError};
use crate::engine::Store;
use crate::format::FormatError;
use crate::metrics::{self, CommandKind};
use crate::options::RunOptions;
use crate::resource::Resource;
use crate::stage::Stage;
use crate::throttle::{Decision, Deferred};

/// What a sync did to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Content, mode and owner already matched: nothing was touched.
    Unchanged,
    /// The destination was replaced (and reloaded, unless sync-only).
    Updated,
    /// `--noop`: the destination differs but was left alone.
    Pending,
}

/// Why one resource failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("backend {backend:?} is not configured (known: {known})")]
    UnknownBackend { backend: String, known: String },
    #[error("reading keys from backend {backend:?}: {source}")]
    Fetch {
        backend: String,
        #[source]
        source: confd_sdk::Error,
    },
    #[error("rendering template {src}: {message}")]
    Render { src: String, message: String },
    #[error("the directory of {} does not exist (it is not created); retried on the next pass or change", dest.display())]
    MissingDirectory { dest: PathBuf },
    #[error("{message}; {} left untouched", dest.display())]
    Owner { dest: PathBuf, message: String },
    #[error("shutting down before check_cmd ran; {} left untouched", dest.display())]
    ShuttingDown { dest: PathBuf },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("rendered {} is {source}; {} left untouched", src, dest.display())]
    Format {
        src: String,
        dest: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("config check failed, {} left untouched: {source}", dest.display())]
    Check {
        dest: PathBuf,
        #[source]
        source: CommandError,
    },
    #[error("reload failed ({} was updated): {source}", dest.display())]
    Reload {
        dest: PathBuf,
        #[source]
        source: CommandError,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SyncError + use<> {
    let path = path.to_path_buf();
    move |source| SyncError::Io { op, path, source }
}

/// Renders `resource` with `store` and brings its destination in line.
pub async fn sync_resource(
    resource: &Resource,
    store: &Store,
    opts: &RunOptions,
) -> Result<Outcome, SyncError> {
    render_and_sync(resource, store, opts, false).await
}

async fn render_and_sync(
    resource: &Resource,
    store: &Store,
    opts: &RunOptions,
    in_place: bool,
) -> Result<Outcome, SyncError> {
    let content = resource
        .template()
        .render(store)
        .map_err(|e| SyncError::Render {
            src: resource.src().to_string(),
            message: e.to_string(),
        })?;
    check_format(resource, &content)?;
    sync_content(resource, content.into_bytes(), opts, in_place).await
}

/// `output_format`: the rendered text must parse before anything is staged, so a failure
/// leaves neither a stage file nor a changed destination.
pub(crate) fn check_format(resource: &Resource, content: &str) -> Result<(), SyncError> {
    match resource.output_format() {
        Some(format) => format.check(content).map_err(|source| SyncError::Format {
            src: resource.src().to_string(),
            dest: resource.dest().to_path_buf(),
            source,
        }),
        None => Ok(()),
    }
}

/// The metadata a destination must end up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wanted {
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Brings the destination of `resource` to `content`, following the steps in
/// docs/resources.md.
pub async fn sync_content(
    resource: &Resource,
    content: Vec<u8>,
    opts: &RunOptions,
    in_place: bool,
) -> Result<Outcome, SyncError> {
    let dest = resource.dest().to_path_buf();
    let explicit_mode = resource.mode();
    let (uid, gid) = resource.owner_ids().map_err(|message| SyncError::Owner {
        dest: dest.clone(),
        message,
    })?;
    let uid = uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
    let gid = gid.unwrap_or_else(|| nix::unistd::getegid().as_raw());
    let want_old = opts.noop && opts.diff;
    let steps = Steps {
        noop: opts.noop,
        // With a check the stage must wait for it; without one the whole
        // file work is one trip to the blocking pool: each trip is a thread
        // hop on the path from a watch event to the new file.
        check: !opts.sync_only && resource.check_cmd().is_some(),
        keep: opts.keep_stage_file,
    };
    let prepare_dest = dest.clone();
    let prepared = blocking(in_place, move || {
        prepare(
            &prepare_dest,
            content,
            explicit_mode,
            uid,
            gid,
            want_old,
            steps,
        )
    })
    .await??;
    let dest = resource.dest();
    let staged = match prepared {
        Prepared::Unchanged => return Ok(Outcome::Unchanged),
        Prepared::Pending { content, old } => {
            tracing::warn!("Noop mode enabled. {} will not be modified", dest.display());
            if opts.diff {
                let text = unified_diff(dest, old.as_deref().unwrap_or_default(), &content);
                let mut out = io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            return Ok(Outcome::Pending);
        }
        Prepared::Installed => None,
        Prepared::Staged {
            stage,
            content,
            wanted,
        } => Some((stage, content, wanted)),
    };
    if let Some((stage, content, wanted)) = staged {
        let keep = steps.keep;
        if opts.shutdown.is_set() {
            // No new command at shutdown, and no install without its check.
            discard(stage, keep);
            return Err(SyncError::ShuttingDown {
                dest: dest.to_path_buf(),
            });
        }
        if let Err(e) = check(resource, &stage).await {
            discard(stage, keep);
            return Err(e);
        }
        let install_dest = dest.to_path_buf();
        blocking(in_place, move || {
            install(stage, &install_dest, &content, wanted, keep)
        })
        .await??;
    }
    // Both paths above replaced the destination.
    metrics::record_file_sync(dest);

    reload(resource, opts).await?;
    tracing::info!(
        resource = %resource.source_file().display(),
        dest = %dest.display(),
        "Target config {} has been updated",
        dest.display()
    );
    Ok(Outcome::Updated)
}

/// Runs `reload_cmd` for a destination just replaced, through its reload gate (debounce,
/// `min_reload_interval`); nothing in sync-only mode or at shutdown.
pub(crate) async fn reload(resource: &Resource, opts: &RunOptions) -> Result<(), SyncError> {
    let dest = resource.dest();
    if !opts.sync_only
        && let Some(reload) = resource.reload_cmd()
    {
        if opts.shutdown.is_set() {
            tracing::warn!(
                "{} was updated but reload_cmd is not run: shutting down",
                dest.display()
            );
            return Ok(());
        }
        let gate = resource.reload_gate();
        let cmd = substitute(reload, None, dest);
        let decision = if gate.is_limited() {
            gate.request(Deferred {
                command: cmd.clone(),
                timeout: resource.reload_cmd_timeout(),
                dest: dest.to_path_buf(),
                shutdown: opts.shutdown.clone(),
            })
        } else {
            Decision::Now
        };
        if decision == Decision::Now {
            tracing::debug!("Running reload_cmd for {}: {cmd}", dest.display());
            let started = std::time::Instant::now();
            let result = command::run(&cmd, resource.reload_cmd_timeout()).await;
            metrics::record_command(CommandKind::Reload, dest, started.elapsed(), result.is_ok());
            match result {
                Ok(output) => tracing::debug!(
                    "reload_cmd for {} done: {}",
                    dest.display(),
                    output.trim_end()
                ),
                Err(source) => {
                    return Err(SyncError::Reload {
                        dest: dest.to_path_buf(),
                        source,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Runs `check_cmd` (if any) on the stage file of `resource`.
pub(crate) async fn check(resource: &Resource, stage: &Stage) -> Result<(), SyncError> {
    let dest = resource.dest();
    let Some(check) = resource.check_cmd() else {
        return Ok(());
    };
    let stage_path = stage.path().to_path_buf();
    let cmd = substitute(check, Some(&stage_path), dest);
    tracing::debug!("Running check_cmd for {}: {cmd}", dest.display());
    let started = std::time::Instant::now();
    let result = command::run(&cmd, resource.check_cmd_timeout()).await;
    metrics::record_command(CommandKind::Check, dest, started.elapsed(), result.is_ok());
    match result {
        Ok(output) => {
            tracing::debug!(
                "check_cmd for {} passed: {}",
                dest.display(),
                output.trim_end()
            );
            Ok(())
        }
        Err(source) => Err(SyncError::Check {
            dest: dest.to_path_buf(),
            source,
        }),
    }
}

/// Which steps `prepare` takes after comparing.
#[derive(Debug, Clone, Copy)]
struct Steps {
    noop: bool,
    check: bool,
    keep: bool,
}

/// How far `prepare` got.
enum Prepared {
    /// Content, mode and owner already match.
    Unchanged,
    /// `--noop`: differs; `old` is the current content when a diff is wanted.
    Pending {
        content: Vec<u8>,
        old: Option<Vec<u8>>,
    },
    /// Staged and fsynced, waiting for `check_cmd` before `install`.
    Staged {
        stage: Stage,
        content: Vec<u8>,
        wanted: Wanted,
    },
    /// The destination was replaced.
    Installed,
}

/// Compare, and unless in sync or `--noop`: stage, and without a check
/// also install. Runs on the blocking pool.
fn prepare(
    dest: &Path,
    content: Vec<u8>,
    explicit_mode: Option<u32>,
    uid: u32,
    gid: u32,
    want_old: bool,
    steps: Steps,
) -> Result<Prepared, SyncError> {
    let plan = compare(dest, &content, explicit_mode, uid, gid, want_old)?;
    if plan.differences.is_empty() {
        tracing::debug!("Target config {} in sync", dest.display());
        return Ok(Prepared::Unchanged);
    }
    tracing::info!(
        "Target config {} out of sync ({})",
        dest.display(),
        plan.differences.join(", ")
    );
    if steps.noop {
        return Ok(Prepared::Pending {
            content,
            old: plan.old,
        });
    }
    if !dest_dir(dest).is_dir() {
        return Err(SyncError::MissingDirectory {
            dest: dest.to_path_buf(),
        });
    }
    let stage = create_stage(dest, &content, plan.wanted)?;
    if steps.check {
        return Ok(Prepared::Staged {
            stage,
            content,
            wanted: plan.wanted,
        });
    }
    install(stage, dest, &content, plan.wanted, steps.keep)?;
    Ok(Prepared::Installed)
}

/// How one rendered resource left the first step of a group commit.
pub(crate) enum Staged {
    /// Content, mode and owner already match.
    Unchanged,
    /// `--noop`: differs; `old` is the current content when a diff is wanted.
    Pending {
        content: Vec<u8>,
        old: Option<Vec<u8>>,
    },
    /// Written and fsynced beside the destination, waiting for its check and rename.
    Ready {
        stage: Stage,
        content: Vec<u8>,
        wanted: Wanted,
        differences: Vec<String>,
    },
}

/// Compares the destination of `resource` with `content` and, unless in sync or `--noop`,
/// writes and fsyncs a stage file. Blocking; logs nothing, so a group can stage in parallel
/// and still log in resource order.
pub(crate) fn stage_content(
    resource: &Resource,
    content: Vec<u8>,
    opts: &RunOptions,
) -> Result<Staged, SyncError> {
    let dest = resource.dest();
    let (uid, gid) = resource.owner_ids().map_err(|message| SyncError::Owner {
        dest: dest.to_path_buf(),
        message,
    })?;
    let uid = uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
    let gid = gid.unwrap_or_else(|| nix::unistd::getegid().as_raw());
    let plan = compare(
        dest,
        &content,
        resource.mode(),
        uid,
        gid,
        opts.noop && opts.diff,
    )?;
    if plan.differences.is_empty() {
        return Ok(Staged::Unchanged);
    }
    if opts.noop {
        return Ok(Staged::Pending {
            content,
            old: plan.old,
        });
    }
    if !dest_dir(dest).is_dir() {
        return Err(SyncError::MissingDirectory {
            dest: dest.to_path_buf(),
        });
    }
    let stage = create_stage(dest, &content, plan.wanted)?;
    Ok(Staged::Ready {
        stage,
        content,
        wanted: plan.wanted,
        differences: plan.differences,
    })
}

/// Runs blocking file work off the async threads (fsync can take
/// milliseconds on real disks and resources sync concurrently): on the
/// blocking pool, or with `in_place` on a multi-thread runtime right here
/// after handing this worker's other tasks to another thread.
async fn blocking<T: Send + 'static>(
    in_place: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SyncError> {
    if in_place
        && matches!(
            tokio::runtime::Handle::current().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::MultiThread
        )
    {
        return Ok(tokio::task::block_in_place(f));
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Io {
            op: "file task",
            path: PathBuf::new(),
            source: io::Error::other(e.to_string()),
        })
}

/// `{{.src}}` (the stage file) and `{{.dest}}` in a command. `{{.src}}` means
/// nothing in `reload_cmd` (the stage file is gone by then) and stays as written.
pub(crate) fn substitute(cmd: &str, stage: Option<&Path>, dest: &Path) -> String {
    let mut out = cmd.to_string();
    if let Some(stage) = stage {
        let s = stage.to_string_lossy();
        out = out.replace("{{.src}}", &s).replace("{{ .src }}", &s);
    }
    let d = dest.to_string_lossy();
    out.replace("{{.dest}}", &d).replace("{{ .dest }}", &d)
}

struct Plan {
    wanted: Wanted,
    differences: Vec<String>,
    old: Option<Vec<u8>>,
}

fn compare(
    dest: &Path,
    content: &[u8],
    explicit_mode: Option<u32>,
    uid: u32,
    gid: u32,
    want_old: bool,
) -> Result<Plan, SyncError> {
    let meta = match std::fs::metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Plan {
                wanted: Wanted {
                    mode: explicit_mode.unwrap_or(0o644),
                    uid,
                    gid,
                },
                differences: vec!["does not exist".to_string()],
                old: want_old.then(Vec::new),
            });
        }
        Err(e) => return Err(io_err("stat", dest)(e)),
    };
    let current_mode = meta.mode() & 0o7777;
    let wanted = Wanted {
        mode: explicit_mode.unwrap_or(current_mode),
        uid,
        gid,
    };
    let mut differences = Vec::new();
    if current_mode != wanted.mode {
        differences.push(format!(
            "mode {current_mode:04o} should be {:04o}",
            wanted.mode
        ));
    }
    if meta.uid() != uid {
        differences.push(format!("uid {} should be {uid}", meta.uid()));
    }
    if meta.gid() != gid {
        differences.push(format!("gid {} should be {gid}", meta.gid()));
    }
    let mut old = None;
    if meta.len() != content.len() as u64 {
        differences.push("content differs".to_string());
        if want_old {
            old = Some(std::fs::read(dest).map_err(io_err("read", dest))?);
        }
    } else {
        let current = read_all(dest, meta.len())?;
        if current != content {
            differences.push("content differs".to_string());
        }
        old = Some(current);
    }
    Ok(Plan {
        wanted,
        differences,
        old,
    })
}

fn read_all(path: &Path, len: u64) -> Result<Vec<u8>, SyncError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut buf).map_err(io_err("read", path))?;
    Ok(buf)
}

pub(crate) fn dest_dir(dest: &Path) -> &Path {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `content` to a new stage file `.confd-<name>.<random>` (0600,
/// O_EXCL, see `stage`) next to `dest`, gives it its final owner and mode and
/// fsyncs it. Dropping the returned handle deletes the file, so every error
/// path cleans up.
fn create_stage(dest: &Path, content: &[u8], wanted: Wanted) -> Result<Stage, SyncError> {
    let dir = dest_dir(dest);
    let name = dest.file_name().unwrap_or_default();
    let stage = Stage::create(dir, name).map_err(io_err("create stage file in", dir))?;
    let path = stage.path().to_path_buf();
    stage
        .as_file()
        .write_all(content)
        .map_err(io_err("write", &path))?;
    apply_metadata(stage.as_file(), &path, wanted)?;
    stage.as_file().sync_all().map_err(io_err("fsync", &path))?;
    Ok(stage)
}

/// Owner first, then mode: chown clears setuid/setgid bits on Linux.
fn apply_metadata(file: &File, path: &Path, wanted: Wanted) -> Result<(), SyncError> {
    let meta = file.metadata().map_err(io_err("stat", path))?;
    if meta.uid() != wanted.uid || meta.gid() != wanted.gid {
        std::os::unix::fs::fchown(file, Some(wanted.uid), Some(wanted.gid))
            .map_err(io_err("chown", path))?;
    }
    // Explicit chmod: the final mode must not depend on the umask.
    file.set_permissions(Permissions::from_mode(wanted.mode))
        .map_err(io_err("chmod", path))
}

pub(crate) fn discard(stage: Stage, keep: bool) {
    if keep {
        match stage.keep() {
            Ok(path) => tracing::info!("Keeping stage file {}", path.display()),
            Err(e) => tracing::warn!("could not keep stage file: {e}"),
        }
    }
    // Otherwise dropping the handle removes the file.
}

/// [`install`] without the directory sync: a group commit syncs each directory once after all
/// its renames.
pub(crate) fn install_unsynced(
    stage: Stage,
    dest: &Path,
    content: &[u8],
    wanted: Wanted,
    keep: bool,
) -> Result<(), SyncError> {
    if !keep {
        return rename_over(stage, dest, content, wanted);
    }
    // With keep-stage-file the stage must survive, yet the destination must
    // still be replaced atomically: rename a second copy instead. The stage
    // is kept whatever happens to the copy.
    let result = create_stage(dest, content, wanted)
        .and_then(|copy| rename_over(copy, dest, content, wanted));
    discard(stage, true);
    result
}

fn install(
    stage: Stage,
    dest: &Path,
    content: &[u8],
    wanted: Wanted,
    keep: bool,
) -> Result<(), SyncError> {
    install_unsynced(stage, dest, content, wanted, keep)?;
    sync_dir(dest_dir(dest))
}

/// Renames `stage` over `dest`, without the directory sync that makes it durable.
fn rename_over(stage: Stage, dest: &Path, content: &[u8], wanted: Wanted) -> Result<(), SyncError> {
    match stage.persist(dest) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc_errno::EBUSY) | Some(libc_errno::EXDEV)
            ) =>
        {
            // A bind-mounted file (typical in containers) cannot be renamed
            // over; writing in place is the only way left. The failed
            // persist removed the stage file.
            tracing::warn!(
                "rename over {} failed ({e}); writing it in place (not atomic)",
                dest.display(),
            );
            write_in_place(dest, content, wanted)?;
        }
        Err(e) => return Err(io_err("rename stage file to", dest)(e)),
    }
    Ok(())
}

/// Makes the renames in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SyncError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// errno values without a libc dependency.
mod libc_errno {
    pub const EBUSY: i32 = nix::errno::Errno::EBUSY as i32;
    pub const EXDEV: i32 = nix::errno::Errno::EXDEV as i32;
}

fn write_in_place(dest: &Path, content: &[u8], wanted: Wanted) -> Result<(), SyncError> {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dest)
        .map_err(io_err("open", dest))?;
    file.write_all(content).map_err(io_err("write", dest))?;
    apply_metadata(&file, dest, wanted)?;
    file.sync_all().map_err(io_err("fsync", dest))
}

/// A unified diff of the destination's current content and the rendered one,
/// as `--noop --diff` prints it.
pub fn unified_diff(dest: &Path, old: &[u8], new: &[u8]) -> String {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    let diff = similar::TextDiff::from_lines(old.as_ref(), new.as_ref());
    let mut out = diff
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{} (current)", dest.display()),
            &format!("{} (proposed)", dest.display()),
        )
        .to_string();
    if out.is_empty() {
        // Only mode or owner differ; say so instead of printing nothing.
        out = format!(
            "--- {0} (current)\n+++ {0} (proposed)\n(content unchanged; mode or owner differs)\n",
            dest.display()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_has_current_and_proposed_headers() {
        let text = unified_diff(Path::new("/etc/app.conf"), b"a\nb\nc\n", b"a\nB\nc\n");
        assert_eq!(
            text,
            "--- /etc/app.conf (current)\n+++ /etc/app.conf (proposed)\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
    }

    #[test]
    fn diff_of_metadata_only_change_says_so() {
        let text = unified_diff(Path::new("/x"), b"same\n", b"same\n");
        assert!(text.contains("mode or owner differs"), "{text}");
    }

    #[test]
    fn commands_get_stage_and_dest() {
        let cmd = substitute(
            "check {{.src}} {{ .src }} for {{.dest}}",
            Some(Path::new("/d/.a.x")),
            Path::new("/d/a"),
        );
        assert_eq!(cmd, "check /d/.a.x /d/.a.x for /d/a");
        assert_eq!(
            substitute("reload {{.src}}", None, Path::new("/d/a")),
            "reload {{.src}}"
        );
    }

    #[test]
    fn stage_file_is_hidden_next_to_dest_with_final_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("app.conf");
        let wanted = Wanted {
            mode: 0o640,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        };
        let stage = create_stage(&dest, b"x", wanted).expect("stage");
        let name = stage
            .path()
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with(".confd-app.conf."), "{name}");
        assert_eq!(stage.path().parent(), Some(dir.path()));
        let mode = std::fs::metadata(stage.path()).expect("stat").mode() & 0o7777;
        assert_eq!(mode, 0o640);
        let path = stage.path().to_path_buf();
        drop(stage);
        assert!(!path.exists(), "dropping the stage removes it");
    }
}
