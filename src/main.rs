//! The `mailhaul` binary: parses the command line and dispatches.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Messages above 256 KiB get buffers of their own, returned to the system
    // when freed: glibc's default threshold rises with every large free, so
    // the few big messages of a long spool would otherwise stay in the heap.
    // SAFETY: mallopt only sets a malloc parameter, before any thread runs.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10) };
    match mailhaul::cli::Cli::try_parse() {
        Ok(cli) => mailhaul::commands::run(cli).into(),
        Err(e) => {
            let _ = e.print();
            // `mailhaul send` speaks sendmail's exit codes: a bad command
            // line is EX_USAGE there.
            if e.use_stderr() && std::env::args().skip(1).any(|a| a == "send") {
                mailhaul::exit::Exit::SysUsage.into()
            } else {
                std::process::ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
            }
        }
    }
}
