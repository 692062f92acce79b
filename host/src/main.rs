//! confd: the binary's entry point; everything else lives in the library half of this crate
//! so the integration tests exercise the same code.

fn main() -> std::process::ExitCode {
    confd::run::main()
}
