//! The per-resource `debounce` and `min_reload_interval` keys (the maintained fork's names): they
//! limit how often one resource's `reload_cmd` runs when its file changes often. The render and
//! the file write are never skipped; a reload that comes too soon is deferred and then run once,
//! however many writes asked for it meanwhile.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::command;
use crate::metrics::{self, CommandKind};
use crate::progress::Shutdown;

/// The reload limits of one resource and the state they need across its syncs.
#[derive(Debug, Default)]
pub(crate) struct ReloadGate {
    /// After a reload request, wait until no further request came for this long (the first
    /// request after a quiet period runs at once).
    debounce: Duration,
    /// At least this long between two reloads.
    min_interval: Duration,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    last_request: Option<Instant>,
    last_run: Option<Instant>,
    /// When the deferred reload is due; `Some` while one is pending.
    due: Option<Instant>,
}

/// What a sync does with its reload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Run it now, as if there were no limits.
    Now,
    /// A single deferred reload will run at this time (possibly later, if more requests come).
    Deferred(Instant),
}

/// One deferred reload command.
pub(crate) struct Deferred {
    pub(crate) command: String,
    pub(crate) timeout: Duration,
    pub(crate) dest: std::path::PathBuf,
    pub(crate) shutdown: Shutdown,
}

impl ReloadGate {
    pub(crate) fn new(debounce: Duration, min_interval: Duration) -> ReloadGate {
        ReloadGate {
            debounce,
            min_interval,
            state: Mutex::new(GateState::default()),
        }
    }

    pub(crate) fn debounce(&self) -> Duration {
        self.debounce
    }

    pub(crate) fn min_interval(&self) -> Duration {
        self.min_interval
    }

    /// Whether this resource limits its reloads at all.
    pub(crate) fn is_limited(&self) -> bool {
        !self.debounce.is_zero() || !self.min_interval.is_zero()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a reload request at `now` and decides. A `Deferred` answer whose due time is
    /// new means the caller must start the deferred run ([`ReloadGate::spawn`]) unless one is
    /// pending already (`pending_before`).
    fn decide(&self, now: Instant) -> (Decision, bool) {
        let mut st = self.lock();
        let quiet = st
            .last_request
            .is_none_or(|t| now.saturating_duration_since(t) >= self.debounce);
        let spaced = st
            .last_run
            .is_none_or(|t| now.saturating_duration_since(t) >= self.min_interval);
        st.last_request = Some(now);
        let pending_before = st.due.is_some();
        if !pending_before && quiet && spaced {
            st.last_run = Some(now);
            return (Decision::Now, false);
        }
        let mut due = now + self.debounce;
        if let Some(last) = st.last_run {
            due = due.max(last + self.min_interval);
        }
        st.due = Some(due);
        (Decision::Deferred(due), pending_before)
    }

    /// Asks for a reload: `Now` means the caller runs it; otherwise a deferred run is
    /// scheduled (one task per resource at a time) and the caller goes on.
    pub(crate) fn request(self: &Arc<Self>, deferred: Deferred) -> Decision {
        let (decision, pending_before) = self.decide(Instant::now());
        if let Decision::Deferred(due) = decision {
            tracing::info!(
                "reload of {} deferred by its debounce/min_reload_interval (due in {})",
                deferred.dest.display(),
                humantime::format_duration(round_ms(due.saturating_duration_since(Instant::now())))
            );
            if !pending_before {
                let gate = Arc::clone(self);
                tokio::spawn(async move { gate.run_deferred(deferred).await });
            }
        }
        decision
    }

    /// Waits until the pending reload is due (later requests push it back), then runs it once.
    async fn run_deferred(&self, d: Deferred) {
        loop {
            let Some(due) = self.lock().due else {
                return;
            };
            if Instant::now() < due {
                tokio::time::sleep_until(due).await;
                continue;
            }
            {
                let mut st = self.lock();
                if st.due.is_some_and(|d| d > Instant::now()) {
                    continue;
                }
                st.due = None;
                st.last_run = Some(Instant::now());
            }
            if d.shutdown.is_set() {
                tracing::warn!(
                    "deferred reload_cmd of {} not run: shutting down",
                    d.dest.display()
                );
                return;
            }
            let started = std::time::Instant::now();
            let result = command::run(&d.command, d.timeout).await;
            metrics::record_command(
                CommandKind::Reload,
                &d.dest,
                started.elapsed(),
                result.is_ok(),
            );
            match result {
                Ok(_) => tracing::info!("deferred reload_cmd of {} done", d.dest.display()),
                Err(e) => tracing::error!(
                    dest = %d.dest.display(),
                    error = %e,
                    "deferred reload failed ({} was updated)",
                    d.dest.display()
                ),
            }
            return;
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn first_request_runs_at_once_then_requests_within_the_debounce_coalesce() {
        let gate = ReloadGate::new(ms(100), Duration::ZERO);
        let t0 = Instant::now();
        assert_eq!(gate.decide(t0), (Decision::Now, false));
        assert_eq!(
            gate.decide(t0 + ms(10)),
            (Decision::Deferred(t0 + ms(110)), false)
        );
        // A later request pushes the one pending run back; no second task.
        assert_eq!(
            gate.decide(t0 + ms(50)),
            (Decision::Deferred(t0 + ms(150)), true)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn min_interval_spaces_runs_from_the_last_one() {
        let gate = ReloadGate::new(Duration::ZERO, ms(1000));
        let t0 = Instant::now();
        assert_eq!(gate.decide(t0), (Decision::Now, false));
        assert_eq!(
            gate.decide(t0 + ms(200)),
            (Decision::Deferred(t0 + ms(1000)), false)
        );
        assert_eq!(
            gate.decide(t0 + ms(300)),
            (Decision::Deferred(t0 + ms(1000)), true)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deferred_reload_runs_once_for_many_requests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let count = dir.path().join("count");
        let gate = Arc::new(ReloadGate::new(ms(100), Duration::ZERO));
        let deferred = || Deferred {
            command: format!("echo x >> {}", count.display()),
            timeout: Duration::from_secs(10),
            dest: dir.path().join("dest"),
            shutdown: Shutdown::default(),
        };
        assert_eq!(gate.request(deferred()), Decision::Now);
        for _ in 0..5 {
            assert!(matches!(gate.request(deferred()), Decision::Deferred(_)));
            tokio::time::advance(ms(10)).await;
        }
        // Past the due time; the command itself runs in real time.
        tokio::time::advance(ms(200)).await;
        tokio::time::resume();
        let mut runs = 0;
        for _ in 0..200 {
            runs = std::fs::read_to_string(&count)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if runs > 0 && gate.lock().due.is_none() {
                break;
            }
            tokio::time::sleep(ms(10)).await;
        }
        tokio::time::sleep(ms(50)).await;
        let runs_after = std::fs::read_to_string(&count)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        assert_eq!((runs, runs_after), (1, 1));
    }
}
