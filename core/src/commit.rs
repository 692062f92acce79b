//! Group commit: a pass renders all its changed resources, then writes and fsyncs their stage
//! files together, renames them one by one in resource order and syncs each destination
//! directory once. Each file keeps the guarantee of a single sync (its stage file is complete
//! and durable before the rename makes it the destination), while a thousand files cost a
//! thousand overlapping fsyncs and one directory sync instead of two thousand syncs in a row.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::engine::Store;
use crate::metrics;
use crate::options::RunOptions;
use crate::resource::Resource;
use crate::run::{Stops, Summary};
use crate::sync::{self, Outcome, Staged, SyncError};

/// Stage files written and fsynced at once: fsync waits on the disk, not the CPU, and
/// concurrent ones share journal commits.
const STAGE_THREADS: usize = 8;

/// One resource of a group commit and the values it renders with.
pub(crate) struct Job<'a> {
    pub(crate) resource: &'a Resource,
    pub(crate) store: &'a Store,
    pub(crate) backend: &'a str,
}

/// Renders, stages, checks, installs and reloads `jobs` (in resource order) as one group
/// commit, logging and counting each in that order. Once `stop` says so (shutdown, or
/// fail-fast after a failure) no further resource is installed; those already renamed still
/// get their directory sync and reload.
pub(crate) async fn render_and_commit(
    jobs: &[Job<'_>],
    opts: &RunOptions,
    stop: &Stops,
) -> Summary {
    let started = Instant::now();
    let mut local = Summary::default();
    if jobs.is_empty() {
        return local;
    }
    let stop_now = || stop.any() || opts.shutdown.is_set();
    // Without a check_cmd in the batch nothing between staging and the directory syncs needs
    // to wait for a command: one trip off the async threads does it all (a watch event's path
    // to the new file).
    let checks = !opts.sync_only && jobs.iter().any(|j| j.resource.check_cmd().is_some());
    let (mut results, dirs) = if checks {
        let staged = offload(|| stage_all(jobs, opts, &stop_now)).await;
        let mut results = Vec::with_capacity(jobs.len());
        for (job, staged) in jobs.iter().zip(staged) {
            let outcome = match settle(job, staged, opts, &stop_now) {
                Settled::Skipped => {
                    results.push(None);
                    continue;
                }
                Settled::Done(outcome) => outcome,
                Settled::Ready {
                    stage,
                    content,
                    wanted,
                } => install(job.resource, stage, content, wanted, opts).await,
            };
            results.push(record(job, outcome, opts, stop, started, &mut local));
        }
        let dirs = offload(|| sync_dirs(jobs, &results)).await;
        (results, dirs)
    } else {
        offload(|| {
            let staged = stage_all(jobs, opts, &stop_now);
            let mut results = Vec::with_capacity(jobs.len());
            for (job, staged) in jobs.iter().zip(staged) {
                let outcome = match settle(job, staged, opts, &stop_now) {
                    Settled::Skipped => {
                        results.push(None);
                        continue;
                    }
                    Settled::Done(outcome) => outcome,
                    Settled::Ready {
                        stage,
                        content,
                        wanted,
                    } => sync::install_unsynced(
                        stage,
                        job.resource.dest(),
                        &content,
                        wanted,
                        opts.keep_stage_file,
                    )
                    .map(|()| Outcome::Updated),
                };
                results.push(record(job, outcome, opts, stop, started, &mut local));
            }
            let dirs = sync_dirs(jobs, &results);
            (results, dirs)
        })
        .await
    };

    // Then reloads, in resource order.
    for (i, job) in jobs.iter().enumerate() {
        let Some(outcome) = results[i].take() else {
            continue;
        };
        let dest = job.resource.dest();
        let outcome = match outcome {
            Ok(Outcome::Updated) => match dirs.get(sync::dest_dir(dest)).cloned().flatten() {
                Some(message) => Err(SyncError::Io {
                    op: "fsync directory",
                    path: sync::dest_dir(dest).to_path_buf(),
                    source: io::Error::other(message),
                }),
                None => {
                    metrics::record_file_sync(dest);
                    sync::reload(job.resource, opts).await.map(|()| {
                        tracing::info!(
                            resource = %job.resource.source_file().display(),
                            dest = %dest.display(),
                            "Target config {} has been updated",
                            dest.display()
                        );
                        Outcome::Updated
                    })
                }
            },
            other => other,
        };
        match &outcome {
            Err(err) => {
                fail(job, err, opts, stop, started);
                local.failed += 1;
            }
            Ok(o) => {
                metrics::record_template_process(dest, true, started.elapsed());
                match o {
                    Outcome::Updated => local.updated += 1,
                    Outcome::Unchanged => local.unchanged += 1,
                    Outcome::Pending => local.pending += 1,
                }
            }
        }
    }
    local
}

/// A resource and what its render gave, waiting for a stage thread to take it.
type Rendered<'a> = (&'a Resource, Result<Vec<u8>, SyncError>);

/// Renders on the cores, then stages on more threads: rendering is CPU, staging is disk.
fn stage_all(
    jobs: &[Job<'_>],
    opts: &RunOptions,
    stop_now: &(dyn Fn() -> bool + Sync),
) -> Vec<Result<Staged, SyncError>> {
    let rendered = par_map(jobs, cores(), |job| render(job.resource, job.store));
    let work: Vec<Mutex<Option<Rendered<'_>>>> = jobs
        .iter()
        .map(|j| j.resource)
        .zip(rendered)
        .map(|w| Mutex::new(Some(w)))
        .collect();
    par_map(&work, STAGE_THREADS, |slot| {
        let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        match taken {
            Some((resource, Ok(content))) => {
                if stop_now() {
                    return Err(SyncError::ShuttingDown {
                        dest: resource.dest().to_path_buf(),
                    });
                }
                sync::stage_content(resource, content, opts)
            }
            Some((_, Err(e))) => Err(e),
            None => Err(SyncError::Io {
                op: "stage",
                path: Default::default(),
                source: io::Error::other("staged twice"),
            }),
        }
    })
}

/// What the ordered step makes of one staged resource.
enum Settled {
    /// Stopped before its turn (shutdown, fail-fast): not started, not counted.
    Skipped,
    Done(Result<Outcome, SyncError>),
    /// Staged and differing: to be checked and renamed.
    Ready {
        stage: crate::stage::Stage,
        content: Vec<u8>,
        wanted: sync::Wanted,
    },
}

/// Logs one staged resource in its turn.
fn settle(
    job: &Job<'_>,
    staged: Result<Staged, SyncError>,
    opts: &RunOptions,
    stop_now: &dyn Fn() -> bool,
) -> Settled {
    let dest = job.resource.dest();
    if stop_now() {
        // Not started: dropping the stage removes it.
        if let Ok(Staged::Ready { stage, .. }) = staged {
            sync::discard(stage, opts.keep_stage_file);
        }
        return Settled::Skipped;
    }
    match staged {
        Err(e) => Settled::Done(Err(e)),
        Ok(Staged::Unchanged) => {
            tracing::debug!("Target config {} in sync", dest.display());
            Settled::Done(Ok(Outcome::Unchanged))
        }
        Ok(Staged::Pending { content, old }) => {
            tracing::info!("Target config {} out of sync", dest.display());
            tracing::warn!("Noop mode enabled. {} will not be modified", dest.display());
            if opts.diff {
                let text = sync::unified_diff(dest, old.as_deref().unwrap_or_default(), &content);
                let mut out = io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            Settled::Done(Ok(Outcome::Pending))
        }
        Ok(Staged::Ready {
            stage,
            content,
            wanted,
            differences,
        }) => {
            tracing::info!(
                "Target config {} out of sync ({})",
                dest.display(),
                differences.join(", ")
            );
            if opts.shutdown.is_set() {
                // No new command at shutdown, and no install without its check.
                sync::discard(stage, opts.keep_stage_file);
                return Settled::Done(Err(SyncError::ShuttingDown {
                    dest: dest.to_path_buf(),
                }));
            }
            Settled::Ready {
                stage,
                content,
                wanted,
            }
        }
    }
}

/// Counts a failure at once (fail-fast stops the next resource); what succeeded waits for its
/// directory sync and reload.
fn record(
    job: &Job<'_>,
    outcome: Result<Outcome, SyncError>,
    opts: &RunOptions,
    stop: &Stops,
    started: Instant,
    local: &mut Summary,
) -> Option<Result<Outcome, SyncError>> {
    match outcome {
        Err(err) => {
            fail(job, &err, opts, stop, started);
            local.failed += 1;
            None
        }
        ok => Some(ok),
    }
}

/// Syncs once each directory that got a rename; the error of each that failed.
fn sync_dirs<'a>(
    jobs: &[Job<'a>],
    results: &[Option<Result<Outcome, SyncError>>],
) -> BTreeMap<&'a Path, Option<String>> {
    let mut dirs: BTreeMap<&Path, Option<String>> = jobs
        .iter()
        .zip(results)
        .filter(|(_, r)| matches!(r, Some(Ok(Outcome::Updated))))
        .map(|(j, _)| (sync::dest_dir(j.resource.dest()), None))
        .collect();
    let list: Vec<&Path> = dirs.keys().copied().collect();
    let synced = par_map(&list, STAGE_THREADS, |dir| sync::sync_dir(dir));
    for (dir, result) in list.iter().zip(synced) {
        if let Err(e) = result {
            dirs.insert(dir, Some(e.to_string()));
        }
    }
    dirs
}

fn fail(job: &Job<'_>, err: &SyncError, opts: &RunOptions, stop: &Stops, started: Instant) {
    stop.failed(opts);
    metrics::record_template_process(job.resource.dest(), false, started.elapsed());
    tracing::error!(
        resource = %job.resource.source_file().display(),
        dest = %job.resource.dest().display(),
        backend = job.backend,
        error = %err,
        "resource failed"
    );
}

fn render(resource: &Resource, store: &Store) -> Result<Vec<u8>, SyncError> {
    let content = resource
        .template()
        .render(store)
        .map_err(|e| SyncError::Render {
            src: resource.src().to_string(),
            message: e.to_string(),
        })?;
    sync::check_format(resource, &content)?;
    Ok(content.into_bytes())
}

/// Checks the staged file, then renames it over the destination (no directory sync yet).
async fn install(
    resource: &Resource,
    stage: crate::stage::Stage,
    content: Vec<u8>,
    wanted: sync::Wanted,
    opts: &RunOptions,
) -> Result<Outcome, SyncError> {
    let keep = opts.keep_stage_file;
    let dest = resource.dest();
    if !opts.sync_only
        && let Err(e) = sync::check(resource, &stage).await
    {
        sync::discard(stage, keep);
        return Err(e);
    }
    offload(|| sync::install_unsynced(stage, dest, &content, wanted, keep)).await?;
    Ok(Outcome::Updated)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs blocking work that borrows from the caller: on a multi-thread runtime after handing
/// this worker's other tasks to another thread, on a current-thread runtime right here (its
/// one thread has nothing else to do while a pass writes).
async fn offload<T>(f: impl FnOnce() -> T) -> T {
    if matches!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::MultiThread
    ) {
        return tokio::task::block_in_place(f);
    }
    f()
}

/// `f` over `items` on up to `threads` scoped threads, results in the order of `items`. One
/// item (a watch event for one resource) runs on the calling thread: no thread to start.
fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_map_keeps_the_order_of_its_items() {
        let items: Vec<usize> = (0..1000).collect();
        let out = par_map(&items, 4, |i| i * 2);
        assert_eq!(out, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(par_map(&items[..1], 4, |i| i + 1), vec![1]);
    }
}
