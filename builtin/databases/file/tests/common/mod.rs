//! What the file backend's test binaries share: counting its file-watcher threads.

/// Threads of this process named like notify's inotify loop (Linux names are cut to 15 bytes):
/// one per waiting watch.
pub fn watcher_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with("notify-rs"))
        .count()
}
