//! systemd's notification protocol (`Type=notify`): READY=1 once the first pass is done,
//! RELOADING=1/READY=1 around a SIGHUP reload, STOPPING=1 at shutdown, a one-line STATUS=, and
//! WATCHDOG=1 keep-alives. Does nothing when systemd did not ask (no `NOTIFY_SOCKET`), so the
//! same binary runs unchanged under Kubernetes, a shell or a Type=simple unit.

use std::time::Duration;

use sd_notify::NotifyState;

/// Where notifications go; copies are cheap.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` as systemd sets them.
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty()),
            watchdog: sd_notify::watchdog_enabled().filter(|d| !d.is_zero()),
        }
    }

    /// How often to send WATCHDOG=1: half the period systemd gave, as sd_watchdog_enabled(3)
    /// advises, or `None` when no watchdog is set.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
            .filter(|_| self.enabled)
            .map(|d| (d / 2).max(Duration::from_millis(1)))
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(err) = sd_notify::notify(states) {
            tracing::warn!("cannot notify systemd: {err}");
        }
    }

    /// READY=1 with the status line.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// RELOADING=1 with the MONOTONIC_USEC systemd 253+ needs to match the READY=1 after it.
    pub fn reloading(&self) {
        if !self.enabled {
            return;
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading the configuration"),
            ]),
            Err(err) => {
                tracing::warn!("cannot read the monotonic clock: {err}");
                self.send(&[NotifyState::Reloading]);
            }
        }
    }

    /// STOPPING=1.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// STATUS= alone.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// WATCHDOG=1.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

/// The STATUS= line: what runs and how the last work went.
pub fn status_line(
    resources: usize,
    mode: &str,
    totals: &confd_core::Summary,
    last: Option<&str>,
) -> String {
    let mut line = format!(
        "{mode}: {resources} resource{}; {} updated, {} failed so far",
        if resources == 1 { "" } else { "s" },
        totals.updated,
        totals.failed
    );
    if let Some(last) = last {
        line.push_str("; ");
        line.push_str(last);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_is_one_line_with_counts() {
        let totals = confd_core::Summary {
            updated: 3,
            unchanged: 1,
            failed: 1,
            pending: 0,
        };
        let line = status_line(4, "watching", &totals, Some("last pass 12:00:00"));
        assert_eq!(
            line,
            "watching: 4 resources; 3 updated, 1 failed so far; last pass 12:00:00"
        );
        assert!(!line.contains('\n'));
    }
}
