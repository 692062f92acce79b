//! Writes confd's man page and shell completions from the clap definition `confd` parses its
//! command line with, so `man confd`, tab completion and `confd --help` cannot disagree.
//! `make deb` packages what it writes; host/tests/docs.rs checks that every flag of `--help`
//! is in each file.
//!
//!   confd-gen-docs OUT_DIR    writes confd.1, confd.bash, _confd (zsh) and confd.fish

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use roff::{Roff, bold, roman};

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [out] = args.as_slice() else {
        eprintln!("usage: confd-gen-docs OUT_DIR");
        return ExitCode::from(2);
    };
    match write_all(out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confd-gen-docs: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn write_all(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write(&out.join("confd.1"), &man_page()?)?;
    for (shell, name) in [
        (Shell::Bash, "confd.bash"),
        (Shell::Zsh, "_confd"),
        (Shell::Fish, "confd.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut confd::cli::Cli::command(), "confd", &mut script);
        write(&out.join(name), &script)?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// clap_mangen's sections, plus the ones a man page reader looks for that clap does not know
/// (exit status, environment, files). The VERSION section is left out: the package version is
/// in the title line, and the commit belongs to `confd --version` of the installed binary.
fn man_page() -> anyhow::Result<Vec<u8>> {
    // Made afresh without the hidden internal-plugin subcommand, which clap_mangen would still
    // announce in the synopsis; the arguments and texts are the definition's own.
    let full = confd::cli::Cli::command();
    let cmd = clap::Command::new("confd")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .long_about(full.get_long_about().cloned().unwrap_or_default())
        .args(full.get_arguments().cloned())
        // clap_mangen lists aliases nowhere; --help shows them, so the man page must too.
        .mut_args(|arg| {
            let aliases = arg.get_visible_aliases().unwrap_or_default();
            if aliases.is_empty() {
                return arg;
            }
            let also: Vec<String> = aliases.iter().map(|a| format!("--{a}")).collect();
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [aliases: {}]", also.join(", ")))
        });
    let man = clap_mangen::Man::new(cmd).manual("confd manual");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    page.extend_from_slice(extra_sections().render().as_bytes());
    Ok(page)
}

fn extra_sections() -> Roff {
    let mut roff = Roff::new();
    let mut section = |title: &str, paragraphs: &[&str]| {
        roff.control("SH", [title]);
        for (i, text) in paragraphs.iter().enumerate() {
            if i > 0 {
                roff.control("PP", []);
            }
            roff.text([roman(*text)]);
        }
    };
    section(
        "EXIT STATUS",
        &[
            "0: every resource is in sync.",
            "1: a resource failed (the others were still processed).",
            "2: usage or configuration error (nothing was written).",
        ],
    );
    section(
        "ENVIRONMENT",
        &[
            "Every setting can also come from a CONFD_* variable named after its flag \
             (CONFD_BACKEND, CONFD_LOG_LEVEL, CONFD_NODE as a comma list; --client-ca-keys is \
             CONFD_CLIENT_CAKEYS). A flag wins over the environment, which wins over confd.toml.",
            "CONFD_PLUGIN_DEV=1 silences the warning printed when a plugin file replaces a \
             builtin backend.",
        ],
    );
    section(
        "FILES",
        &[
            "/etc/confd/confd.toml: settings (skipped when absent).",
            "/etc/confd/conf.d/*.toml: template resources (source, destination, keys, \
             check and reload commands).",
            "/etc/confd/templates/: the templates, Go text/template or Jinja (.j2).",
            "confd-database-<name>: a backend plugin, found next to the confd binary or in the \
             current directory and used with --backend <name>.",
        ],
    );
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        roman("The documentation in "),
        bold("/usr/share/doc/confd/"),
        roman(" (configuration, resources, templates, backends, writing a plugin), and "),
        bold("confd --list-backends"),
        roman("."),
    ]);
    roff
}
