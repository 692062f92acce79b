//! The processing modes: one pass (onetime), passes on a timer (interval) and
//! change-driven renders (watch). Resources asking one backend for the same
//! keys under the same prefix form a group: one fetch, and in watch mode one
//! watch, serve them all.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use confd_sdk::{ErrorKind, SharedDatabase};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::commit::{Job, render_and_commit};
use crate::engine::Store;
use crate::keys;
use crate::metrics;
use crate::options::{FailureMode, RunOptions};
use crate::resource::Resource;
use crate::sync::SyncError;

/// The databases of a run, by backend name.
pub type Backends = BTreeMap<String, SharedDatabase>;

/// How many groups one pass fetches at once.
const CONCURRENCY: usize = 16;

/// Resources per group commit in a pass: enough that syncs overlap, few enough that a pass
/// over ten thousand resources never holds all their stores and rendered files at once.
const BATCH: usize = 1024;

/// What a run did, summed over all its passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Destinations written.
    pub updated: usize,
    /// Destinations already in sync (left untouched).
    pub unchanged: usize,
    /// Resources that failed (render, fetch, check, write or reload).
    pub failed: usize,
    /// `--noop`: destinations that differ but were not written.
    pub pending: usize,
}

impl Summary {
    pub(crate) fn add(&mut self, other: Summary) {
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.failed += other.failed;
        self.pending += other.pending;
    }
}

/// Why watch mode could not run.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "backend {backend:?} cannot watch for changes ({message}); use --interval or --onetime with it"
    )]
    Unsupported { backend: String, message: String },
    #[error("backend {backend:?} is not configured (known: {known})")]
    UnknownBackend { backend: String, known: String },
}

/// Why no further resource of a pass starts: shutdown (or a swap to a new configuration),
/// or `--failure-mode fail-fast` after a failure.
#[derive(Default)]
pub(crate) struct Stops {
    shutdown: AtomicBool,
    halt: AtomicBool,
}

impl Stops {
    pub(crate) fn any(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst) || self.halt.load(Ordering::SeqCst)
    }
    fn shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
    fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
    /// A resource failed: with fail-fast, start no more in this pass.
    pub(crate) fn failed(&self, opts: &RunOptions) {
        if opts.failure_mode == FailureMode::FailFast && !self.halt.swap(true, Ordering::SeqCst) {
            tracing::warn!("failure mode fail-fast: starting no further resource in this pass");
        }
    }
}

/// Resources that share one fetch and one watch.
pub(crate) struct Group<'a> {
    pub(crate) backend: &'a str,
    pub(crate) prefix: &'a str,
    pub(crate) query_keys: &'a [String],
    pub(crate) members: Vec<&'a Resource>,
    /// The members' positions in the resource list: a pass commits in that order.
    pub(crate) indices: Vec<usize>,
}

impl Group<'_> {
    fn dests(&self) -> String {
        let names: Vec<String> = self
            .members
            .iter()
            .map(|r| r.dest().display().to_string())
            .collect();
        names.join(", ")
    }
    /// The resource files of the members, for errors that concern them all.
    fn files(&self) -> String {
        let names: Vec<String> = self
            .members
            .iter()
            .map(|r| r.source_file().display().to_string())
            .collect();
        names.join(", ")
    }
}

pub(crate) fn groups(resources: &[Resource]) -> Vec<Group<'_>> {
    group_indices(resources)
        .iter()
        .map(|members| group_of(resources, members))
        .collect()
}

/// The members of each group, as indexes into `resources`, in order of
/// first appearance.
fn group_indices(resources: &[Resource]) -> Vec<Vec<usize>> {
    let mut index: BTreeMap<(&str, &str, &[String]), usize> = BTreeMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, r) in resources.iter().enumerate() {
        let key = (r.backend(), r.prefix(), r.query_keys());
        match index.get(&key) {
            Some(&g) => out[g].push(i),
            None => {
                index.insert(key, out.len());
                out.push(vec![i]);
            }
        }
    }
    out
}

/// The group made of `members` (indexes from [`group_indices`], never empty).
fn group_of<'a>(resources: &'a [Resource], members: &[usize]) -> Group<'a> {
    let first = &resources[members[0]];
    Group {
        backend: first.backend(),
        prefix: first.prefix(),
        query_keys: first.query_keys(),
        members: members.iter().map(|&i| &resources[i]).collect(),
        indices: members.to_vec(),
    }
}

pub(crate) fn known(backends: &Backends) -> String {
    if backends.is_empty() {
        "none".to_string()
    } else {
        backends.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Fetches once for the group (unless a watch answer brought the values) and
/// commits its members as one group. A fetch error fails every member and renders nothing, so
/// an outage never touches a file. Returns what the members did, or `None`
/// when the fetch failed.
async fn process_group(
    group: &Group<'_>,
    backends: &Backends,
    opts: &RunOptions,
    stop: &Stops,
    summary: &Mutex<Summary>,
    watched: Option<BTreeMap<String, String>>,
) -> Option<Summary> {
    let fetched = match watched {
        Some(values) => Ok(Store::new(keys::store_values(&values, group.prefix))),
        None => fetch(group, backends).await,
    };
    let (local, ok) = match fetched {
        Err(err) => (fetch_failed(group, &err, opts, stop), false),
        Ok(store) => {
            let jobs: Vec<Job<'_>> = group
                .members
                .iter()
                .map(|&resource| Job {
                    resource,
                    store: &store,
                    backend: group.backend,
                })
                .collect();
            (render_and_commit(&jobs, opts, stop).await, true)
        }
    };
    lock(summary).add(local);
    opts.totals.add(local);
    ok.then_some(local)
}

/// Logs a failed fetch and counts every member of the group failed.
fn fetch_failed(group: &Group<'_>, err: &SyncError, opts: &RunOptions, stop: &Stops) -> Summary {
    tracing::error!(
        resource = %group.files(),
        backend = group.backend,
        dest = %group.dests(),
        error = %err,
        "cannot read the keys; nothing rendered"
    );
    stop.failed(opts);
    for resource in &group.members {
        metrics::record_template_process(resource.dest(), false, std::time::Duration::ZERO);
    }
    Summary {
        failed: group.members.len(),
        ..Summary::default()
    }
}

fn lock(summary: &Mutex<Summary>) -> std::sync::MutexGuard<'_, Summary> {
    // A panic while holding this lock cannot leave a Summary half-updated.
    summary.lock().unwrap_or_else(|e| e.into_inner())
}

async fn fetch(group: &Group<'_>, backends: &Backends) -> Result<Store, SyncError> {
    if group.query_keys.is_empty() {
        return Ok(Store::new(BTreeMap::new()));
    }
    let db = backends
        .get(group.backend)
        .ok_or_else(|| SyncError::UnknownBackend {
            backend: group.backend.to_string(),
            known: known(backends),
        })?;
    let values = db
        .get_values(group.query_keys)
        .await
        .map_err(|source| SyncError::Fetch {
            backend: group.backend.to_string(),
            source,
        })?;
    Ok(Store::new(keys::store_values(&values, group.prefix)))
}

/// One pass: groups in batches of about [`BATCH`] resources; each batch fetches its groups
/// concurrently, then renders and commits all their members as one group commit in resource
/// order. Batches bound the memory a pass holds (stores and rendered files).
async fn pass(
    groups: &[Group<'_>],
    backends: &Backends,
    opts: &RunOptions,
    stop: &Stops,
    summary: &Mutex<Summary>,
) {
    let mut rest = groups;
    while !rest.is_empty() && !stop.any() && !opts.shutdown.is_set() {
        let mut take = 0;
        let mut members = 0;
        while take < rest.len() && (take == 0 || members + rest[take].members.len() <= BATCH) {
            members += rest[take].members.len();
            take += 1;
        }
        let (batch, later) = rest.split_at(take);
        rest = later;
        let local = pass_batch(batch, backends, opts, stop).await;
        lock(summary).add(local);
        opts.totals.add(local);
    }
}

async fn pass_batch(
    batch: &[Group<'_>],
    backends: &Backends,
    opts: &RunOptions,
    stop: &Stops,
) -> Summary {
    // A hand-rolled bounded FuturesUnordered rather than
    // `stream::iter().map(closure).buffer_unordered()`: the closure form makes
    // rustc lose the `Send` proof for the returned future.
    let mut stores: Vec<Option<Result<Store, SyncError>>> = batch.iter().map(|_| None).collect();
    let mut running = FuturesUnordered::new();
    let mut next = batch.iter().enumerate();
    loop {
        while running.len() < CONCURRENCY {
            match next.next() {
                Some((i, g)) => running.push(async move { (i, fetch(g, backends).await) }),
                None => break,
            }
        }
        match running.next().await {
            Some((i, fetched)) => stores[i] = Some(fetched),
            None => break,
        }
    }
    let mut local = Summary::default();
    let mut jobs: Vec<(usize, Job<'_>)> = Vec::new();
    for (group, fetched) in batch.iter().zip(&stores) {
        match fetched {
            Some(Ok(store)) => jobs.extend(group.indices.iter().zip(&group.members).map(
                |(&i, &resource)| {
                    (
                        i,
                        Job {
                            resource,
                            store,
                            backend: group.backend,
                        },
                    )
                },
            )),
            Some(Err(err)) => local.add(fetch_failed(group, err, opts, stop)),
            None => {}
        }
    }
    jobs.sort_by_key(|(i, _)| *i);
    let jobs: Vec<Job<'_>> = jobs.into_iter().map(|(_, j)| j).collect();
    local.add(render_and_commit(&jobs, opts, stop).await);
    local
}

/// Processes every resource once. One failing resource never stops the others.
pub async fn run_once(resources: &[Resource], backends: &Backends, opts: &RunOptions) -> Summary {
    let groups = groups(resources);
    let summary = Mutex::new(Summary::default());
    pass(&groups, backends, opts, &Stops::default(), &summary).await;
    opts.first_pass.mark();
    summary.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Processes every resource once, starting no further resource once `stop` completes (those
/// in progress finish). The host's interval loop: it re-reads conf.d between passes.
pub async fn run_pass(
    resources: &[Resource],
    backends: &Backends,
    opts: &RunOptions,
    stop: impl Future<Output = ()>,
) -> Summary {
    let groups = groups(resources);
    let summary = Mutex::new(Summary::default());
    let stops = Stops::default();
    {
        let mut current = std::pin::pin!(pass(&groups, backends, opts, &stops, &summary));
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                biased;
                () = &mut current => break,
                () = &mut stop, if !stops.shutting_down() => {
                    tracing::info!("stopping after the resources in progress");
                    stops.shut_down();
                }
            }
        }
    }
    opts.first_pass.mark();
    summary.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Processes every resource, then again every `opts.interval`, until
/// `shutdown` completes. A pass in progress at shutdown finishes the
/// resources it started and starts no more. The summary sums all passes.
pub async fn run_interval(
    resources: &[Resource],
    backends: &Backends,
    opts: &RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Summary {
    let groups = groups(resources);
    let summary = Mutex::new(Summary::default());
    let stop = Stops::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        stop.halt.store(false, Ordering::SeqCst);
        {
            let mut current = std::pin::pin!(pass(&groups, backends, opts, &stop, &summary));
            loop {
                tokio::select! {
                    biased;
                    () = &mut current => break,
                    () = &mut shutdown, if !stop.shutting_down() => {
                        tracing::info!("stopping after the resources in progress");
                        stop.shut_down();
                    }
                }
            }
        }
        opts.first_pass.mark();
        if stop.shutting_down() || opts.shutdown.is_set() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(opts.interval) => {}
            () = &mut shutdown => break,
        }
    }
    summary.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Renders everything once, then re-renders a group of resources whenever
/// its keys change, until `shutdown` completes. Groups of the backends in
/// `opts.poll_backends` are read every `opts.interval` instead, as are those of a backend that
/// answers a watch with `Unimplemented` (one that could not say so beforehand).
pub async fn run_watch(
    resources: &[Resource],
    backends: &Backends,
    opts: &RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, WatchError> {
    let groups = groups(resources);
    for g in &groups {
        if !backends.contains_key(g.backend) {
            return Err(WatchError::UnknownBackend {
                backend: g.backend.to_string(),
                known: known(backends),
            });
        }
    }
    metrics::set_watched_keys(groups.iter().map(|g| g.query_keys.len()).sum());
    if groups.is_empty() {
        opts.first_pass.mark();
        // Nothing to render or watch; keep running like a daemon with an
        // empty conf.d would, until told to stop.
        tracing::warn!("no template resources to watch; waiting for shutdown");
        shutdown.await;
        return Ok(Summary::default());
    }
    // Each group is its own task on the runtime's workers rather than one
    // branch of a future polled wherever the caller runs (the host's
    // `block_on` thread): a watch response then wakes its group on the
    // worker that read it, not across threads, and groups render in parallel.
    let shared = Arc::new(WatchShared {
        resources: resources.to_vec(),
        backends: backends.clone(),
        opts: opts.clone(),
        cancel: CancellationToken::new(),
        summary: Mutex::new(Summary::default()),
        first_pending: AtomicUsize::new(groups.len()),
        polled: Mutex::new(BTreeSet::new()),
    });
    // Dropping the set (the caller gave up on this future) aborts every group.
    let mut tasks = tokio::task::JoinSet::new();
    for members in group_indices(resources) {
        let shared = Arc::clone(&shared);
        tasks.spawn(async move {
            let group = group_of(&shared.resources, &members);
            watch_group(&group, &shared).await
        });
    }
    let result = {
        let all = join_groups(&mut tasks);
        let mut all = std::pin::pin!(all);
        let mut shutdown = std::pin::pin!(shutdown);
        tokio::select! {
            biased;
            r = &mut all => r,
            () = &mut shutdown => {
                tracing::info!("shutting down: stopping watches");
                shared.cancel.cancel();
                all.await
            }
        }
    };
    // An error ends every other watch too.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    result?;
    Ok(*lock(&shared.summary))
}

/// What the watch tasks of one run share.
struct WatchShared {
    resources: Vec<Resource>,
    backends: Backends,
    opts: RunOptions,
    cancel: CancellationToken,
    summary: Mutex<Summary>,
    /// Groups that have not rendered once yet; the first pass is done at zero.
    first_pending: AtomicUsize,
    /// Backends found unable to watch only when asked to (no `Info`, e.g. a Go plugin), warned
    /// about once each.
    polled: Mutex<BTreeSet<String>>,
}

impl WatchShared {
    /// A backend answered `Unimplemented` to a watch: its groups are read every `interval`
    /// from now on, with one warning per backend.
    fn polling_instead(&self, group: &Group<'_>, e: &confd_sdk::Error) {
        let first = self
            .polled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(group.backend.to_string());
        if first {
            tracing::warn!(
                backend = group.backend,
                "the {} backend cannot watch for changes ({}): its resources are read every \
                 {}s (--interval) instead",
                group.backend,
                e.message(),
                self.opts.interval.as_secs()
            );
        }
    }

    /// Called once per group after its first render (or failed fetch).
    fn group_rendered(&self, counted: &mut bool) {
        if !std::mem::replace(counted, true)
            && self.first_pending.fetch_sub(1, Ordering::SeqCst) == 1
        {
            self.opts.first_pass.mark();
        }
    }
}

/// Waits for every group; the first error is returned at once. A panic in
/// a group is re-raised here, as it would be had the group run inline.
async fn join_groups(
    tasks: &mut tokio::task::JoinSet<Result<(), WatchError>>,
) -> Result<(), WatchError> {
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    Ok(())
}

/// Capped exponential backoff with jitter: 100 ms doubling up to 2 s, each
/// wait drawn from [half, full] so many watchers do not retry in lockstep
/// and a store that comes back is seen within 2 s.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const START: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(2);

    fn new() -> Self {
        Backoff { next: Self::START }
    }
    fn reset(&mut self) {
        self.next = Self::START;
    }
    fn delay(&mut self) -> Duration {
        let full = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        let factor: f64 = rand::random_range(0.5..=1.0);
        full.mul_f64(factor)
    }
}

enum Step<T> {
    Done(T),
    Cancelled,
}

async fn cancellable<T>(cancel: &CancellationToken, fut: impl Future<Output = T>) -> Step<T> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Step::Cancelled,
        v = fut => Step::Done(v),
    }
}

async fn watch_group(group: &Group<'_>, shared: &WatchShared) -> Result<(), WatchError> {
    let WatchShared {
        backends,
        opts,
        cancel,
        summary,
        ..
    } = shared;
    // Fail-fast in watch mode: one failure stops the rest of that one render of the group.
    let stop = &Stops::default();
    let mut counted = false;
    let Some(db) = backends.get(group.backend) else {
        return Err(WatchError::UnknownBackend {
            backend: group.backend.to_string(),
            known: known(backends),
        });
    };
    if opts.poll_backends.contains(group.backend) {
        return poll_group(group, shared, &mut counted).await;
    }
    if group.query_keys.is_empty() {
        // Nothing to watch: the store is empty forever. Render once and wait.
        process_group(group, backends, opts, stop, summary, None).await;
        shared.group_rendered(&mut counted);
        cancel.cancelled().await;
        return Ok(());
    }
    let mut backoff = Backoff::new();
    let mut after_failure = false;
    'restart: loop {
        if after_failure {
            let delay = backoff.delay();
            if let Step::Cancelled = cancellable(cancel, tokio::time::sleep(delay)).await {
                return Ok(());
            }
        }
        // Every `continue 'restart` below follows a failure.
        after_failure = true;
        // Index first, read second: a change between the two is caught by
        // the next watch call instead of being lost.
        // A plugin may bring the values along (read after the index): then
        // there is no separate read.
        let Step::Done(first) = cancellable(
            cancel,
            db.watch_prefix_values(group.prefix, group.query_keys, 0),
        )
        .await
        else {
            return Ok(());
        };
        let (mut index, watched) = match first {
            Ok(answer) => answer,
            Err(e) if e.kind() == ErrorKind::Unimplemented => {
                shared.polling_instead(group, &e);
                return poll_group(group, shared, &mut counted).await;
            }
            Err(e) => {
                tracing::error!(
                    resource = %group.files(),
                    backend = group.backend,
                    dest = %group.dests(),
                    prefix = group.prefix,
                    error = %e,
                    "watch failed; retrying"
                );
                continue 'restart;
            }
        };
        let rendered = process_group(group, backends, opts, stop, summary, watched).await;
        shared.group_rendered(&mut counted);
        if rendered.is_none() {
            continue 'restart;
        }
        backoff.reset();
        let mut last_change: Option<Instant> = None;
        loop {
            let Step::Done(woke) = cancellable(
                cancel,
                db.watch_prefix_values(group.prefix, group.query_keys, index),
            )
            .await
            else {
                return Ok(());
            };
            // The values of the newest answer, if it brought them: at least as
            // new as its index, so a later change wakes the next watch call.
            let seen = Instant::now();
            let mut watched = match woke {
                Ok((i, values)) => {
                    index = i;
                    values
                }
                Err(e) if e.kind() == ErrorKind::Unimplemented => {
                    shared.polling_instead(group, &e);
                    return poll_group(group, shared, &mut counted).await;
                }
                Err(e) => {
                    tracing::error!(
                        resource = %group.files(),
                        backend = group.backend,
                        dest = %group.dests(),
                        prefix = group.prefix,
                        error = %e,
                        "watch failed; retrying"
                    );
                    continue 'restart;
                }
            };
            // Leading edge: the first change after a quiet period renders at once. A change
            // within the window of the previous one starts coalescing: the render waits for
            // quiet, or at most `debounce_max` after this change.
            let quiet =
                last_change.is_none_or(|t| seen.saturating_duration_since(t) >= opts.debounce);
            last_change = Some(seen);
            if !opts.debounce.is_zero() && !quiet {
                let deadline = seen + opts.debounce_max;
                loop {
                    let quiet_at = (last_change.unwrap_or(seen) + opts.debounce).min(deadline);
                    let quiet = tokio::time::sleep_until(quiet_at);
                    let more = db.watch_prefix_values(group.prefix, group.query_keys, index);
                    let step = cancellable(cancel, async {
                        tokio::select! {
                            () = quiet => None,
                            r = more => Some(r),
                        }
                    })
                    .await;
                    match step {
                        Step::Cancelled => return Ok(()),
                        Step::Done(None) => break,
                        Step::Done(Some(Ok((i, values)))) => {
                            (index, watched) = (i, values);
                            last_change = Some(Instant::now());
                        }
                        // Render what we have, read afresh; the next watch call
                        // reports the error.
                        Step::Done(Some(Err(_))) => {
                            watched = None;
                            break;
                        }
                    }
                }
            }
            tracing::debug!(
                "change under {} on backend {:?}: rendering {}",
                group.prefix,
                group.backend,
                group.dests()
            );
            match process_group(group, backends, opts, stop, summary, watched).await {
                None => continue 'restart,
                Some(done) if done.updated > 0 => {
                    metrics::record_watch_lag(group.backend, seen.elapsed());
                }
                Some(_) => {}
            }
        }
    }
}

/// Watch mode for a group whose backend cannot watch: read and render every `interval`, as
/// interval mode would, while the other groups watch.
async fn poll_group(
    group: &Group<'_>,
    shared: &WatchShared,
    counted: &mut bool,
) -> Result<(), WatchError> {
    let WatchShared {
        backends,
        opts,
        cancel,
        summary,
        ..
    } = shared;
    loop {
        let stop = Stops::default();
        process_group(group, backends, opts, &stop, summary, None).await;
        shared.group_rendered(counted);
        if let Step::Cancelled = cancellable(cancel, tokio::time::sleep(opts.interval)).await {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| b.delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        for d in &delays {
            assert!(*d <= Backoff::CAP);
        }
        assert!(delays[7] >= Duration::from_secs(1));
        b.reset();
        assert!(b.delay() <= Duration::from_millis(100));
    }
}
