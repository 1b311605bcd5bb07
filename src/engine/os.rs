//! The engine's calls into the operating system beyond what `std` offers,
//! in one place, each with what it relies on: directory fsync, and the
//! Linux calls behind durable delivery and socket counters.

use std::fs::File;
use std::io;
use std::path::Path;

/// fsyncs a directory, making the names created, renamed or removed in it
/// durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
