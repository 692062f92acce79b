//! Crash safety: a process killed with SIGKILL at a random point of a sync
//! leaves the destination either completely old or completely new, and the
//! stage files such kills leave are removed by the next run.
//!
//! The test binary re-executes itself in "child mode" (`CONFD_CRASH_CHILD`
//! set): the child syncs one large destination back and forth between two
//! contents in a loop until it is killed. A second child does the same with
//! 1,000 destinations committed as one group.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confd_core::{load_resources, run_once};
use support::{Confdir, MemDb};

const CHILD_ENV: &str = "CONFD_CRASH_CHILD";
const GROUP_CHILD_ENV: &str = "CONFD_CRASH_GROUP_CHILD";
/// Destinations in the group-commit test, and kills in it.
const GROUP: usize = 1_000;
const GROUP_KILLS: usize = 12;
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

/// Child mode of the group test: 1,000 resources (one group: same keys) flip between two
/// contents, one pass after another, until killed.
#[test]
fn group_crash_child() {
    let Ok(root) = std::env::var(GROUP_CHILD_ENV) else {
        return;
    };
    let opts = confd_core::RunOptions {
        confdir: Path::new(&root).to_path_buf(),
        default_backend: "mem".into(),
        ..Default::default()
    };
    let resources = load_resources(&opts).expect("child resources");
    let db = MemDb::new(&[]);
    let backends = db.backends();
    // As the host runs it: two workers, file work on the calling thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let contents = [group_content(0), group_content(1)];
    let mut i = 1;
    loop {
        db.set("/gen", &contents[i % 2]);
        let summary = rt.block_on(run_once(&resources, &backends, &opts));
        assert_eq!(summary.failed, 0);
        i += 1;
    }
}

fn group_content(which: usize) -> String {
    if which == 0 {
        "old generation\n".repeat(300)
    } else {
        "new generation, a longer line\n".repeat(200)
    }
}

/// SIGKILL at random points of group commits of 1,000 files: every destination is old or new,
/// and the next run removes every stage file the kills left.
#[test]
fn killed_group_commit_leaves_each_file_old_or_new() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(GROUP_CHILD_ENV).is_ok() {
        return;
    }
    let c = Confdir::new();
    c.template("gen.tmpl", "{{getv \"/gen\"}}");
    let names: Vec<String> = (0..GROUP).map(|i| format!("f{i:04}.conf")).collect();
    let old = group_content(0);
    let new = group_content(1);
    for name in &names {
        c.resource(name, "gen.tmpl", &["/gen"], "");
        fs::write(c.dest(name), &old).expect("initial dest");
    }
    let exe = std::env::current_exe().expect("test binary");
    let stages = || {
        fs::read_dir(c.out())
            .expect("read dest dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".confd-"))
            .count()
    };
    let (mut mixed, mut left_behind) = (0, 0);
    let mut seen = BTreeSet::new();
    for round in 0..GROUP_KILLS {
        let mut child = Command::new(&exe)
            .args([
                "group_crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(GROUP_CHILD_ENV, c.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        // Loading 1,000 resources comes first; kill from then to several passes in.
        let x = (round as u64 * 2_900_000 / GROUP_KILLS as u64) + (round as u64 * 7_919) % 50_000;
        std::thread::sleep(Duration::from_micros(200_000 + x));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        left_behind += stages();
        let mut kinds = BTreeSet::new();
        for name in &names {
            let got = fs::read_to_string(c.dest(name)).expect("dest must always exist");
            if got == old {
                kinds.insert("old");
            } else if got == new {
                kinds.insert("new");
            } else {
                panic!("round {round}: {name} is partial ({} bytes)", got.len());
            }
        }
        if kinds.len() == 2 {
            mixed += 1;
        }
        seen.extend(kinds);
    }
    println!(
        "{mixed} of {GROUP_KILLS} kills stopped a pass between renames; {left_behind} stage files left"
    );
    assert_eq!(seen.len(), 2, "no kill came after a pass changed the files");
    assert!(
        left_behind > 0 || mixed > 0,
        "no kill hit a group commit in progress: the check above proved nothing"
    );
    load_resources(&c.opts()).expect("resources load");
    assert_eq!(stages(), 0);
}
