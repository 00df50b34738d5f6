//! The `licd` command: see `licd --help`.

/// mimalloc rather than the system allocator: under many concurrent requests glibc's malloc
/// and free were a sixth of the leader's time (docs/performance.md, Where a check's time
/// goes).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    licd::cli::main()
}
