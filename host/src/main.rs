//! confd: the binary's entry point; everything else lives in the library half of this crate
//! so the integration tests exercise the same code.

mod rusage;

fn main() -> std::process::ExitCode {
    let code = confd::run::main();
    // After the run: the runtime is gone and the plugins are reaped, so their peaks count.
    rusage::log_peaks();
    code
}
