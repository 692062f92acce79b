//! Crash safety: a process killed with SIGKILL at a random point of a sync
//! leaves the destination either completely old or completely new, and the
//! stage files such kills leave are removed by the next run.
//!
//! The test binary re-executes itself in "child mode" (`CONFD_CRASH_CHILD`
//! set): the child syncs one large destination back and forth between two
//! contents in a loop until it is killed.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confd_core::{load_resources, run_once};
use support::{Confdir, MemDb};

const CHILD_ENV: &str = "CONFD_CRASH_CHILD";
const KILLS: usize = 200;

/// Two contents of different sizes, each recognisable as a whole.
fn content(which: usize) -> String {
    let (line, n) = if which == 0 {
        (
            "old old old old old old old old old old old old old old\n",
            20_000,
        )
    } else {
        (
            "new new new new new new new new new new new new new new new new new new\n",
            25_000,
        )
    };
    line.repeat(n)
}

fn write_confdir(root: &Path, dest: &Path) {
    fs::create_dir_all(root.join("conf.d")).expect("conf.d");
    fs::create_dir_all(root.join("templates")).expect("templates");
    fs::write(root.join("templates/big.tmpl"), "{{getv \"/big\"}}").expect("template");
    fs::write(
        root.join("conf.d/big.toml"),
        format!(
            "[template]\nsrc = \"big.tmpl\"\ndest = {:?}\nkeys = [\"/big\"]\nmode = \"0640\"\n",
            dest.display().to_string()
        ),
    )
    .expect("resource");
}

/// Child mode: sync forever, alternating the two contents. Does nothing in a
/// normal test run.
#[test]
fn crash_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = Path::new(&root);
    let opts = confd_core::RunOptions {
        confdir: root.join("confdir"),
        default_backend: "mem".into(),
        ..Default::default()
    };
    let resources = load_resources(&opts).expect("child resources");
    let db = MemDb::new(&[]);
    let backends = db.backends();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let contents = [content(0), content(1)];
    let mut i = 1;
    loop {
        db.set("/big", &contents[i % 2]);
        let summary = rt.block_on(run_once(&resources, &backends, &opts));
        assert_eq!(summary.failed, 0);
        i += 1;
    }
}

#[test]
fn killed_sync_leaves_old_or_new() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let c = Confdir::new();
    let root = c.dir.path();
    let dest = c.dest("big.conf");
    write_confdir(&root.join("confdir"), &dest);
    let old = content(0);
    let new = content(1);
    fs::write(&dest, &old).expect("initial dest");
    let exe = std::env::current_exe().expect("test binary");
    let start = Instant::now();
    let mut seen = BTreeSet::new();
    let stages = || {
        fs::read_dir(dest.parent().expect("dest dir"))
            .expect("read dest dir")
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".confd-big.conf.")
            })
            .count()
    };
    let mut left_behind = 0;
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        // Start-up takes a few ms; kill anywhere from before the first sync
        // to several syncs in.
        let delay = rand_delay(round);
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // Each run removes what the kill before it left: never more than one here.
        let left = stages();
        assert!(
            left <= 1,
            "round {round}: {left} stage files beside the destination"
        );
        left_behind += left;
        let got = fs::read_to_string(&dest).expect("dest must always exist");
        if got == old {
            seen.insert("old");
        } else if got == new {
            seen.insert("new");
        } else {
            panic!(
                "round {round}: partial destination ({} bytes; old is {}, new is {})",
                got.len(),
                old.len(),
                new.len()
            );
        }
    }
    assert!(
        seen.len() == 2,
        "the kills never interrupted a run that changed the file: {seen:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(60));

    // The kills left stage files; the next run's load removes every one.
    println!("{left_behind} of {KILLS} kills left a stage file");
    assert!(
        left_behind > 0,
        "no kill hit a stage file: the check above proved nothing"
    );
    let opts = confd_core::RunOptions {
        confdir: root.join("confdir"),
        default_backend: "mem".into(),
        ..Default::default()
    };
    load_resources(&opts).expect("resources load");
    assert_eq!(stages(), 0);
}

/// A spread of kill points: mostly 5-40 ms, deterministic per round so a
/// failure can be replayed.
fn rand_delay(round: usize) -> Duration {
    let x = (round as u64).wrapping_mul(2_654_435_761) % 35_000;
    Duration::from_micros(5_000 + x)
}
