//! Peak memory of a run, logged at debug level when confd exits, so the memory target of the
//! one-shot benchmark (host and plugin together) can be checked without outside tools.

/// Peak resident set sizes in KiB: this process, and the largest of its reaped children (the
/// plugins), as getrusage(2) reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peaks {
    pub own_kib: u64,
    pub children_kib: u64,
}

/// Reads both peaks; `None` where the kernel refuses (it does not on Linux).
pub fn peaks() -> Option<Peaks> {
    use nix::sys::resource::{UsageWho, getrusage};
    // Linux reports ru_maxrss in KiB.
    let kib = |who| {
        getrusage(who)
            .ok()
            .and_then(|u| u64::try_from(u.max_rss()).ok())
    };
    Some(Peaks {
        own_kib: kib(UsageWho::RUSAGE_SELF)?,
        children_kib: kib(UsageWho::RUSAGE_CHILDREN)?,
    })
}

/// Logs the peaks at debug level (`--log-level debug`).
pub fn log_peaks() {
    match peaks() {
        Some(p) => tracing::debug!(
            host_kib = p.own_kib,
            plugin_kib = p.children_kib,
            "peak resident memory: host {:.1} MB, largest plugin {:.1} MB",
            p.own_kib as f64 / 1024.0,
            p.children_kib as f64 / 1024.0
        ),
        None => tracing::debug!("peak resident memory unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_grow_with_what_the_process_and_its_children_touch() {
        let before = peaks().expect("getrusage works on Linux");
        assert!(before.own_kib > 0, "{before:?}");
        // Touch 32 MiB more than this test process holds so far: the own peak must show it.
        let block = vec![1u8; before.own_kib as usize * 1024 + 32 * 1024 * 1024];
        let after = peaks().expect("getrusage works on Linux");
        assert!(
            after.own_kib >= before.own_kib + 32 * 1024,
            "{before:?} {after:?}"
        );
        drop(block);
        // A reaped child is counted in children_kib.
        let status = std::process::Command::new("sh")
            .args(["-c", "true"])
            .status()
            .expect("sh runs");
        assert!(status.success());
        let with_child = peaks().expect("getrusage works on Linux");
        assert!(with_child.children_kib > 0, "{with_child:?}");
    }
}
