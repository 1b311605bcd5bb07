//! The systemd user units in `assets/systemd/` pass `systemd-analyze verify
//! --user` with no complaint at all (an unknown key is only a warning there,
//! so any output fails the test), with their `%h/.cargo/bin/mailhaul`
//! pointing at the binary under test in a throwaway home; and the exit codes
//! the watch service does not restart on are the ones `mailhaul watch`
//! gives up with.

use std::path::Path;
use std::process::Command;

use mailhaul::exit::Exit;

const ANALYZE: &str = "/usr/bin/systemd-analyze";

#[test]
fn units_verify_cleanly() {
    assert!(
        Path::new(ANALYZE).exists(),
        "{ANALYZE} is missing: install the Debian package `systemd` (tests/run-all.sh does)"
    );
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/systemd");
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    let bin = dir.path().join("home/.cargo/bin");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mailhaul"), bin.join("mailhaul")).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&units)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "mailhaul-fetch.service",
            "mailhaul-fetch.timer",
            "mailhaul-watch.service"
        ]
    );
    let out = Command::new(ANALYZE)
        .args(["verify", "--user"])
        .args(&files)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("HOME", dir.path().join("home"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {}\n{said}",
        out.status
    );
}

#[test]
fn the_watch_service_restarts_on_all_but_the_give_up_codes() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/systemd/mailhaul-watch.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=%h/.cargo/bin/mailhaul watch\n"));
    let give_up = [
        Exit::Config,
        Exit::HostKey,
        Exit::Auth,
        Exit::ServerUnsupported,
    ]
    .map(|e| e.code().to_string())
    .join(" ");
    assert!(
        unit.contains(&format!("RestartPreventExitStatus={give_up}\n")),
        "{give_up}"
    );
    let fetch = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/systemd/mailhaul-fetch.service"),
    )
    .unwrap();
    assert!(fetch.contains("ExecStart=%h/.cargo/bin/mailhaul fetch\n"));
}
