//! The shipped socket units (tuning/ringway.socket, tuning/ringway-https.socket): systemd accepts
//! them, and they keep the promises tuning/GUIDE.md "Socket activation" makes about them.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tuning(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tuning")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `KEY=value` lines of a unit, comments skipped.
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .collect()
}

#[test]
fn each_socket_unit_names_its_listener_and_has_one_reuseport_socket_per_shard() {
    for (file, name, addr) in [
        ("ringway.socket", "http", "0.0.0.0:80"),
        ("ringway-https.socket", "https", "0.0.0.0:443"),
    ] {
        let unit = tuning(file);
        assert_eq!(values(&unit, "FileDescriptorName"), vec![name], "{file}");
        assert_eq!(values(&unit, "ReusePort"), vec!["yes"], "{file}");
        assert_eq!(values(&unit, "Service"), vec!["ringway.service"], "{file}");
        assert_eq!(values(&unit, "Accept"), vec!["no"], "{file}");
        // Four identical lines, for `shards = 4`, as the unit's comment and the guide say.
        assert_eq!(values(&unit, "ListenStream"), vec![addr; 4], "{file}");
        assert!(
            unit.contains(&format!("name = \"{name}\"")),
            "{file} shows its listener"
        );
    }
}

#[test]
fn the_socket_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze must be installed in CI (.ci/run installs systemd)"
        );
        eprintln!("systemd-analyze not installed; skipping outside CI");
        return;
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ringway-socket-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Service= must name a unit verify can load; its own checks are in tests/operator.rs.
    std::fs::write(
        dir.join("ringway.service"),
        "[Service]\nType=notify\nExecStart=/bin/true\n",
    )
    .expect("stub service");
    let mut paths = Vec::new();
    for file in ["ringway.socket", "ringway-https.socket"] {
        let path = dir.join(file);
        std::fs::write(&path, tuning(file)).expect("copy unit");
        paths.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on mere warnings (a misspelt value is "ignoring"), so read what it said
    // about our units; lines about the host's other units are not ours.
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("ringway")).collect();
    assert!(out.status.success() && ours.is_empty(), "{err}");
}
