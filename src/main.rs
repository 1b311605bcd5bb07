//! The `mailhaul` binary: parses the command line and dispatches.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Messages above 256 KiB get buffers of their own, returned to the system
    // when freed: glibc's default threshold rises with every large free, so
    // the few big messages of a long spool would otherwise stay in the heap.
    // SAFETY: mallopt only sets a malloc parameter, before any thread runs.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10) };
    mailhaul::commands::run(mailhaul::cli::Cli::parse()).into()
}
