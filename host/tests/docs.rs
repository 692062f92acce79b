//! The man page and completions that `make deb` packages, written by confd-gen-docs: every flag
//! `confd --help` shows must be in each of them, so a flag added to the clap definition cannot
//! be missing from `man confd` or from tab completion.

use std::path::Path;
use std::process::Command;

use crate::common::{Scratch, clean_command, confd_bin, text};

/// The long flags `--help` shows, aliases included.
fn help_flags() -> Vec<String> {
    let out = clean_command(&confd_bin())
        .arg("--help")
        .output()
        .expect("run confd --help");
    assert!(out.status.success(), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    let mut flags: Vec<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(str::to_string)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

/// Whether `text` has `word` not followed by more of a flag name (`--file` is not in
/// `--filter` only).
fn mentions(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        !text[at + word.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
    })
}

fn generate(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_confd-gen-docs"))
        .arg(dir)
        .output()
        .expect("run confd-gen-docs");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn every_help_flag_is_in_the_man_page_and_each_completion_script() {
    let flags = help_flags();
    // The list itself must be right, or the loop below checks nothing.
    for expected in [
        "--backend",
        "--one-time",
        "--plugin-config",
        "--help",
        "--version",
    ] {
        assert!(
            flags.iter().any(|f| f == expected),
            "{expected} not in {flags:?}"
        );
    }
    let s = Scratch::new();
    generate(s.path());
    let read = |name: &str| {
        std::fs::read_to_string(s.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    // roff writes a hyphen as `\-`.
    let man = read("confd.1").replace("\\-", "-");
    let (bash, zsh, fish) = (read("confd.bash"), read("_confd"), read("confd.fish"));
    let mut missing = Vec::new();
    for flag in &flags {
        let name = &flag[2..];
        for (file, found) in [
            ("confd.1", mentions(&man, flag)),
            ("confd.bash", mentions(&bash, flag)),
            ("_confd", mentions(&zsh, flag)),
            // fish names long options as `-l name`.
            ("confd.fish", mentions(&fish, &format!("-l {name}"))),
        ] {
            if !found {
                missing.push(format!("{flag} in {file}"));
            }
        }
    }
    assert!(missing.is_empty(), "missing: {missing:?}");
}

#[test]
fn the_man_page_has_the_sections_a_reader_looks_for_and_no_hidden_subcommand() {
    let s = Scratch::new();
    generate(s.path());
    let man = std::fs::read_to_string(s.path().join("confd.1")).expect("read confd.1");
    assert!(man.contains("\n.TH confd 1 "), "no title line");
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "\"EXIT STATUS\"",
        "ENVIRONMENT",
        "FILES",
        "\"SEE ALSO\"",
    ] {
        assert!(
            man.contains(&format!("\n.SH {section}\n")),
            "no {section} section"
        );
    }
    for hidden in ["internal-plugin", "subcommands"] {
        assert!(!man.contains(hidden), "the man page mentions {hidden}");
    }
}

#[test]
fn usage_error_without_an_output_directory() {
    let out = Command::new(env!("CARGO_BIN_EXE_confd-gen-docs"))
        .output()
        .expect("run confd-gen-docs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: confd-gen-docs OUT_DIR"));
}
