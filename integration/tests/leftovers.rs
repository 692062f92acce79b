//! Nothing left behind: one-shot confd runs killed with SIGKILL at random points leave stage
//! files beside their destinations and plugin socket directories in the temporary directory;
//! the next run removes them, so after 250 kills and one normal run none is left. The runs get
//! a temporary directory of their own (TMPDIR), so only this test's leftovers are counted.

mod e2e;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::Run;

const KILLS: usize = 250;
const RESOURCES: usize = 4;

/// `RESOURCES` resources of ~100 KB each from the env backend: big enough that a kill often
/// lands while a stage file exists.
fn confdir(dir: &Path) {
    for sub in ["conf.d", "templates"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    std::fs::write(
        dir.join("templates/app.tmpl"),
        "run {{getv \"/app/run\"}}\n{{getv \"/app/blob\"}}\n",
    )
    .expect("write template");
    for i in 0..RESOURCES {
        std::fs::write(
            dir.join(format!("conf.d/app{i}.toml")),
            format!(
                "[template]\nsrc = \"app.tmpl\"\ndest = \"@OUT@/app{i}.conf\"\nkeys = [\"/app\"]\n"
            ),
        )
        .expect("write resource");
    }
}

/// A one-shot run whose output differs from the previous one (`run`), so every resource syncs.
fn command(run: &Run, tmp: &Path, round: usize) -> Command {
    let mut cmd = Command::new(e2e::isolated_confd());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TMPDIR", tmp)
        .env("APP_RUN", round.to_string())
        .env("APP_BLOB", "b".repeat(100_000))
        .current_dir(run.cwd())
        .args(["--onetime", "--backend", "env", "--confdir"])
        .arg(run.confdir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn stage_files(out: &Path) -> usize {
    std::fs::read_dir(out)
        .expect("read out")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".confd-"))
        .count()
}

fn socket_dirs(tmp: &Path) -> usize {
    std::fs::read_dir(tmp)
        .expect("read tmp")
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // confd's own directory (`confd-<pid>-…`) and, from plugins run without one, theirs
            name.starts_with("confd-") || name.starts_with("plugin")
        })
        .count()
}

/// Kill points spread over 0-30 ms, deterministic per round so a failure can be replayed.
fn delay(round: usize) -> Duration {
    let x = (round as u64).wrapping_mul(2_654_435_761) % 30_000;
    Duration::from_micros(x)
}

#[test]
fn sigkilled_one_shot_runs_leave_nothing_after_the_next_run() {
    let src = tempfile::tempdir().expect("tempdir");
    confdir(src.path());
    let run = Run::new(src.path());
    let tmp = run.dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir tmp");

    let started = Instant::now();
    let (mut stages_seen, mut sockets_seen) = (0, 0);
    for round in 0..KILLS {
        let mut child = command(&run, &tmp, round).spawn().expect("spawn confd");
        std::thread::sleep(delay(round));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        // What this kill left (the next run's start removes it, so no sum builds up).
        stages_seen = stages_seen.max(stage_files(&run.out()));
        sockets_seen = sockets_seen.max(socket_dirs(&tmp));
    }
    let killing = started.elapsed();
    // The plugins of the last run die with it (SIGKILL on their parent's death); give the
    // signal a moment to land before the normal run looks at their sockets.
    std::thread::sleep(Duration::from_millis(500));
    let (stages_before, sockets_before) = (stage_files(&run.out()), socket_dirs(&tmp));

    let output = command(&run, &tmp, KILLS)
        .stderr(Stdio::piped())
        .output()
        .expect("run confd");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "MEASURED {KILLS} SIGKILLs in {killing:?}: at most {stages_seen} stage files and \
         {sockets_seen} socket directories at once; {stages_before} and {sockets_before} before \
         the normal run"
    );
    assert!(
        sockets_seen > 0,
        "no kill left a socket directory: the check below proves nothing"
    );
    assert_eq!(stage_files(&run.out()), 0, "stage files left");
    assert_eq!(socket_dirs(&tmp), 0, "socket directories left");
    for i in 0..RESOURCES {
        let text = std::fs::read_to_string(run.out().join(format!("app{i}.conf"))).expect("dest");
        assert!(text.starts_with(&format!("run {KILLS}\n")), "app{i}.conf");
    }
}
