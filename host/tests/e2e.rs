//! End-to-end one-shot runs of `integration/confdir` (Go and Jinja templates, same expected
//! output) for the env and file backends, each through the builtin path and through the
//! external plugin executable copied as `confd-database-<name>-test` (the founding document's
//! example), found next to confd or in the current directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use std::os::unix::fs::PermissionsExt as _;

use crate::common::{
    clean_command, confd_bin, copy_confdir, copy_exe, env_list, integration_dir, mode, text, tree,
    write_script,
};

/// A copy of the integration confdir with empty `out/go` and `out/jinja`.
struct Run {
    dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Run {
        let dir = crate::common::temp_dir();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("go")).expect("mkdir");
        std::fs::create_dir_all(out.join("jinja")).expect("mkdir");
        copy_confdir(
            &integration_dir().join("confdir"),
            &dir.path().join("confdir"),
            &out,
        );
        Run { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A copy of confd in `<run>/confd-bin/`, so plugins that other builds left next to the
    /// shared binary (target/debug/confd-database-env...) cannot stand in for the builtins.
    fn private_confd(&self) -> PathBuf {
        let dir = self.path().join("confd-bin");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let confd = dir.join("confd");
        if !confd.exists() {
            copy_exe(&confd_bin(), &confd);
        }
        confd
    }

    fn command(&self, confd: &Path, backend: &str) -> Command {
        let mut cmd = clean_command(confd);
        cmd.current_dir(self.path())
            .args([
                "--onetime",
                "--log-level",
                "debug",
                "--backend",
                backend,
                "--confdir",
            ])
            .arg(self.path().join("confdir"));
        cmd
    }

    fn env_command(&self, confd: &Path, backend: &str) -> Command {
        let mut cmd = self.command(confd, backend);
        cmd.envs(env_list());
        cmd
    }

    fn data_file(&self) -> String {
        integration_dir()
            .join("data/myapp.yaml")
            .display()
            .to_string()
    }

    /// Both engines' outputs equal `integration/expect`, modes included.
    fn assert_expected(&self, output: &Output) {
        assert!(output.status.success(), "{}", text(output));
        let expect_dir = integration_dir().join("expect");
        let mut expected = tree(&expect_dir);
        let modes = String::from_utf8(expected.remove("MODES").expect("expect/MODES"))
            .expect("utf-8 MODES");
        for engine in ["go", "jinja"] {
            let out = self.path().join("out").join(engine);
            let got = tree(&out);
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                "{engine}: output files\n{}",
                text(output)
            );
            for (name, want) in &expected {
                assert_eq!(
                    String::from_utf8_lossy(&got[name]),
                    String::from_utf8_lossy(want),
                    "{engine}/{name}"
                );
            }
            for line in modes.lines().filter(|l| !l.trim().is_empty()) {
                let (name, m) = line.split_once(' ').expect("name mode");
                let want = u32::from_str_radix(m.trim(), 8).expect("octal mode");
                assert_eq!(mode(&out.join(name)), want, "{engine}/{name} mode");
            }
        }
    }
}

/// Builds `confd-database-<name>` and returns its path.
fn plugin_bin(name: &str) -> PathBuf {
    let package = format!("confd-database-{name}");
    confd_test_support::workspace_bin(&package, &package)
}

/// Copies confd and the `<name>` plugin (as `confd-database-<name>-test`) into `<run>/bin`.
fn install_next_to_confd(run: &Run, name: &str) -> PathBuf {
    let bin = run.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    copy_exe(&confd_bin(), &bin.join("confd"));
    copy_exe(
        &plugin_bin(name),
        &bin.join(format!("confd-database-{name}-test")),
    );
    bin.join("confd")
}

#[test]
fn env_builtin() {
    let run = Run::new();
    let output = run
        .env_command(&run.private_confd(), "env")
        .output()
        .expect("run");
    run.assert_expected(&output);
}

#[test]
fn env_builtin_with_go_style_flags() {
    let run = Run::new();
    let mut cmd = clean_command(&run.private_confd());
    cmd.current_dir(run.path())
        .envs(env_list())
        .args(["-onetime", "-backend", "env", "-noop=false"])
        .arg(format!("-confdir={}", run.path().join("confdir").display()));
    run.assert_expected(&cmd.output().expect("run"));
}

#[test]
fn env_external_plugin_next_to_confd() {
    let run = Run::new();
    let confd = install_next_to_confd(&run, "env");
    let output = run.env_command(&confd, "env-test").output().expect("run");
    run.assert_expected(&output);
}

#[test]
fn env_external_plugin_in_current_directory() {
    let run = Run::new();
    copy_exe(
        &plugin_bin("env"),
        &run.path().join("confd-database-env-test"),
    );
    let output = run
        .env_command(&run.private_confd(), "env-test")
        .output()
        .expect("run");
    run.assert_expected(&output);
}

#[test]
fn file_builtin() {
    let run = Run::new();
    let output = run
        .command(&run.private_confd(), "file")
        .args(["--file", &run.data_file()])
        .output()
        .expect("run");
    run.assert_expected(&output);
}

#[test]
fn file_builtin_settings_from_confd_toml() {
    let run = Run::new();
    let toml = format!("backend = \"file\"\nfile = [{:?}]\n", run.data_file());
    std::fs::write(run.path().join("confd.toml"), toml).expect("write confd.toml");
    let mut cmd = clean_command(&run.private_confd());
    cmd.current_dir(run.path())
        .args(["--onetime", "--config-file", "confd.toml", "--confdir"])
        .arg(run.path().join("confdir"));
    run.assert_expected(&cmd.output().expect("run"));
}

#[test]
fn file_external_plugin_next_to_confd() {
    // A third-party name gets no confd settings; --plugin-config gives it its file.
    let run = Run::new();
    let confd = install_next_to_confd(&run, "file");
    let output = run
        .command(&confd, "file-test")
        .arg(format!("--plugin-config=file={}", run.data_file()))
        .output()
        .expect("run");
    run.assert_expected(&output);
}

#[test]
fn file_external_plugin_in_current_directory_with_confd_toml_settings() {
    let run = Run::new();
    copy_exe(
        &plugin_bin("file"),
        &run.path().join("confd-database-file-test"),
    );
    let toml = format!("[plugins.file-test]\nfile = {:?}\n", run.data_file());
    std::fs::write(run.path().join("confd.toml"), toml).expect("write confd.toml");
    let output = run
        .command(&run.private_confd(), "file-test")
        .args(["--config-file", "confd.toml"])
        .output()
        .expect("run");
    run.assert_expected(&output);
}

#[test]
fn external_plugin_overriding_a_builtin_warns() {
    let run = Run::new();
    copy_exe(&plugin_bin("env"), &run.path().join("confd-database-env"));
    let output = run
        .env_command(&run.private_confd(), "env")
        .output()
        .expect("run");
    run.assert_expected(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Once per run, not once per resource (the confdir has many resources on env).
    assert_eq!(
        stderr.matches("overrides the builtin env backend").count(),
        1,
        "{}",
        text(&output)
    );

    let run = Run::new();
    copy_exe(&plugin_bin("env"), &run.path().join("confd-database-env"));
    let output = run
        .env_command(&run.private_confd(), "env")
        .env("CONFD_PLUGIN_DEV", "1")
        .output()
        .expect("run");
    run.assert_expected(&output);
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("overrides"),
        "{}",
        text(&output)
    );
}

/// A `confd-database-env` in the current directory that another user owns, or that anyone may
/// write, is not run (it would run as root in place of the builtin); the builtin renders and the
/// warning names the file and why.
#[test]
fn hijack_files_in_the_current_directory_are_skipped_and_the_builtin_runs() {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("not root: the file owned by another user is not tested (only mode 0777)");
    }
    for how in ["mode 0777", "owned by nobody"] {
        if how == "owned by nobody" && !root {
            continue;
        }
        let run = Run::new();
        let marker = run.path().join("hijacked");
        let hijack = run.path().join("confd-database-env");
        write_script(
            &hijack,
            &format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
        );
        let reason = if how == "mode 0777" {
            std::fs::set_permissions(&hijack, std::fs::Permissions::from_mode(0o777))
                .expect("chmod");
            "it is writable by group or others (mode 0777)"
        } else {
            std::os::unix::fs::chown(&hijack, Some(65534), None).expect("chown to nobody");
            "it is owned by uid 65534, neither root nor the user running confd (uid 0)"
        };
        let output = run
            .env_command(&run.private_confd(), "env")
            .output()
            .expect("run");
        run.assert_expected(&output);
        assert!(
            !marker.exists(),
            "{how}: the file was run\n{}",
            text(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "not using the plugin {}: {reason}",
                hijack.display()
            )),
            "{how}: the warning names the file and why\n{}",
            text(&output)
        );
    }
}

#[test]
fn plugin_dirs_are_searched_and_the_current_directory_can_be_left_out() {
    let run = Run::new();
    let plugins = run.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    copy_exe(&plugin_bin("env"), &plugins.join("confd-database-env-test"));
    let output = run
        .env_command(&run.private_confd(), "env-test")
        .args(["--plugin-dir", "plugins"])
        .output()
        .expect("run");
    run.assert_expected(&output);

    let run = Run::new();
    let plugins = run.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    copy_exe(&plugin_bin("env"), &plugins.join("confd-database-env-test"));
    let output = run
        .env_command(&run.private_confd(), "env-test")
        .env("CONFD_PLUGIN_DIR", &plugins)
        .output()
        .expect("run");
    run.assert_expected(&output);

    let run = Run::new();
    copy_exe(
        &plugin_bin("env"),
        &run.path().join("confd-database-env-test"),
    );
    let output = run
        .env_command(&run.private_confd(), "env-test")
        .arg("--no-cwd-plugins")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unknown backend \"env-test\""),
        "{}",
        text(&output)
    );
}

#[test]
fn second_run_changes_nothing() {
    let run = Run::new();
    let first = run
        .env_command(&run.private_confd(), "env")
        .output()
        .expect("run");
    run.assert_expected(&first);
    let before = tree(&run.path().join("out"));
    let second = run
        .env_command(&run.private_confd(), "env")
        .output()
        .expect("run");
    run.assert_expected(&second);
    assert_eq!(tree(&run.path().join("out")), before);
}

#[test]
fn watch_with_env_is_refused_clearly() {
    let run = Run::new();
    let output = clean_command(&run.private_confd())
        .current_dir(run.path())
        .envs(env_list())
        .args(["--watch", "--backend", "env", "--confdir"])
        .arg(run.path().join("confdir"))
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("env backend cannot watch"),
        "{}",
        text(&output)
    );
}

/// Processes whose command line mentions `needle` (our copied binaries live in a unique
/// temporary directory, so this finds exactly the processes of one test).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[test]
fn sigterm_in_interval_mode_stops_plugins_and_exits_zero() {
    let run = Run::new();
    let confd = install_next_to_confd(&run, "env");
    let child = clean_command(&confd)
        .current_dir(run.path())
        .envs(env_list())
        .args(["--interval", "3600", "--backend", "env", "--confdir"])
        .arg(run.path().join("confdir"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn confd");
    let target = run.path().join("out/jinja/upstream.conf");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !target.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(target.exists(), "the first pass never rendered");
    let needle = run.path().join("bin").display().to_string();
    assert!(
        processes_mentioning(&needle)
            .iter()
            .any(|c| c.contains("internal-plugin")),
        "the builtin plugin process should be running"
    );
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait confd");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    // The plugin is gone too: no orphan.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_mentioning(&needle).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(processes_mentioning(&needle), Vec::<String>::new());
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn watch_with_file_rerenders_on_change_and_stops_on_sigint() {
    let run = Run::new();
    let data = run.path().join("myapp.yaml");
    std::fs::copy(integration_dir().join("data/myapp.yaml"), &data).expect("copy data");
    let confd = run.private_confd();
    let child = clean_command(&confd)
        .current_dir(run.path())
        .args([
            "--watch",
            "--debounce",
            "50ms",
            "--backend",
            "file",
            "--file",
        ])
        .arg(&data)
        .arg("--confdir")
        .arg(run.path().join("confdir"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn confd");
    let app = run.path().join("out/jinja/app.conf");
    wait_for("the first render", Duration::from_secs(20), || {
        std::fs::read_to_string(&app).is_ok_and(|t| t.contains("user = ROB"))
    });
    let yaml = std::fs::read_to_string(&data).expect("read data");
    std::fs::write(&data, yaml.replace("user: rob", "user: alice")).expect("write data");
    wait_for("the re-render", Duration::from_secs(20), || {
        std::fs::read_to_string(&app).is_ok_and(|t| t.contains("user = ALICE"))
    });
    let go_app = run.path().join("out/go/app.conf");
    wait_for("the Go template re-render", Duration::from_secs(20), || {
        std::fs::read_to_string(&go_app).is_ok_and(|t| t.contains("user = ALICE"))
    });
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait confd");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let needle = confd.parent().expect("bin dir").display().to_string();
    wait_for("the plugin to exit", Duration::from_secs(5), || {
        processes_mentioning(&needle).is_empty()
    });
}

#[test]
fn a_second_sigint_exits_at_once_without_waiting_for_the_pass() {
    let run = Run::new();
    let marker = run.path().join("reload-started");
    // A pass that cannot finish soon: its reload command sleeps.
    std::fs::write(
        run.path().join("confdir/conf.d/zz-slow.toml"),
        format!(
            "[template]\nsrc = \"app.conf.tmpl\"\ndest = \"{}\"\nprefix = \"/myapp\"\nkeys = [\"/database\", \"/upstream\"]\nreload_cmd = \"touch {} && sleep 5\"\n",
            run.path().join("out/slow.conf").display(),
            marker.display()
        ),
    )
    .expect("write resource");
    let confd = run.private_confd();
    let child = clean_command(&confd)
        .current_dir(run.path())
        .envs(env_list())
        .args(["--onetime", "--backend", "env", "--confdir"])
        .arg(run.path().join("confdir"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn confd");
    wait_for("the slow reload to start", Duration::from_secs(20), || {
        marker.exists()
    });
    let pid = child.id().to_string();
    let started = Instant::now();
    for _ in 0..2 {
        let status = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = child.wait_with_output().expect("wait confd");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the second SIGINT must not wait for the 5 s reload: {:?}\n{}",
        started.elapsed(),
        text(&output)
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("again: exiting at once"),
        "{}",
        text(&output)
    );
    // The destination was installed before the reload began: complete, never partial.
    let written = std::fs::read_to_string(run.path().join("out/slow.conf")).expect("slow.conf");
    let expected = std::fs::read_to_string(integration_dir().join("expect/app.conf"))
        .expect("expected app.conf");
    assert_eq!(written, expected);
    // The plugin dies with confd (parent-death signal): no orphan.
    let needle = run.path().join("confd-bin").display().to_string();
    wait_for("the plugin to go", Duration::from_secs(5), || {
        processes_mentioning(&needle).is_empty()
    });
}
