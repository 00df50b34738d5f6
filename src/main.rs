//! The `licd` command: see `licd --help`.

fn main() -> std::process::ExitCode {
    licd::cli::main()
}
