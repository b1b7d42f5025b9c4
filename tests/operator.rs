//! The operator kit through the real binary: `ringway tune check` on this machine, dropping root
//! to a configured user, refusing root otherwise, systemd readiness (`Type=notify`) and the
//! shipped unit file passing `systemd-analyze verify`.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::httpd::Httpd;
use common::*;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn tune_check_prints_a_table_and_json_whose_exit_code_follows_the_verdicts() {
    let table = Command::new(BIN)
        .args(["tune", "check"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&table.stdout);
    let header = text.lines().next().unwrap_or("");
    for col in ["SETTING", "CURRENT", "RECOMMENDED", "STATUS", "FIX"] {
        assert!(header.contains(col), "{text}");
    }
    for setting in [
        "RLIMIT_NOFILE",
        "net.core.somaxconn",
        "kernel.io_uring_disabled",
        "kTLS",
    ] {
        assert!(text.contains(setting), "{setting} missing:\n{text}");
    }
    let json = Command::new(BIN)
        .args(["tune", "check", "--json", "-c", "examples/tcp.toml"])
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON array");
    let rows = v.as_array().expect("array");
    assert!(rows.len() >= 20, "{v}");
    let mut any_bad = false;
    for r in rows {
        for key in ["setting", "current", "recommended", "status", "fix"] {
            assert!(r.get(key).is_some(), "{r}");
        }
        let status = r["status"].as_str().unwrap_or("");
        assert!(["ok", "warn", "bad"].contains(&status), "{r}");
        any_bad |= status == "bad";
    }
    // Exit code: 0 when nothing is bad, 3 otherwise — the same for the table and the JSON.
    assert_eq!(json.status.code(), Some(if any_bad { 3 } else { 0 }), "{v}");
    // The file-descriptor verdict matches this process's real limit.
    let nofile = rows
        .iter()
        .find(|r| r["setting"] == "RLIMIT_NOFILE")
        .expect("RLIMIT_NOFILE row");
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert!(
        nofile["current"]
            .as_str()
            .unwrap_or("")
            .contains(&lim.rlim_max.to_string()),
        "{nofile}"
    );
    // A bad config is a config error (1), not a verdict.
    let bad = Command::new(BIN)
        .args(["tune", "check", "-c", "examples/bad.toml"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(1));
}

/// (real, effective, saved, fs) uids or gids from a /proc status file.
fn ids(status: &str, field: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn started_as_root_it_switches_every_thread_to_the_configured_user_and_keeps_serving() {
    if !is_root() {
        eprintln!("not root: privilege drop cannot be tested");
        return;
    }
    let www = Httpd::named("www");
    let rw = Ringway::start_text(|l, a| {
        format!(
            "[global]\nshards = 2\nadmin = \"127.0.0.1:{a}\"\nuser = \"nobody\"\n\
             [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{l}\"\nmode = \"http\"\nbackend = \"www\"\n\
             [[backend]]\nname = \"www\"\nservers = [ {{ address = \"{}\" }} ]\n",
            www.addr
        )
    });
    let nobody = 65534;
    let tasks = std::fs::read_dir(format!("/proc/{}/task", rw.pid())).expect("tasks");
    let mut threads = 0;
    for t in tasks.flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).expect("status");
        assert_eq!(ids(&status, "Uid:"), vec![nobody; 4], "{status}");
        assert_eq!(ids(&status, "Gid:"), vec![nobody; 4], "{status}");
        threads += 1;
    }
    assert!(threads >= 3, "shards and control thread");
    assert_eq!(
        http_get(rw.listen, "/after-drop").expect("request"),
        "www /after-drop"
    );
    assert!(rw.stderr().contains("dropped privileges"));
}

#[test]
fn root_without_a_user_is_refused_unless_allowed() {
    if !is_root() {
        eprintln!("not root: nothing to refuse");
        return;
    }
    let out = Command::new(BIN)
        .env_remove("RINGWAY_ALLOW_ROOT")
        .args(["run", "-c", "examples/tcp.toml"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to run as root") && err.contains("user"),
        "{err}"
    );
    // A user that does not exist: refused with the fix (after binding: ringway binds as root,
    // then switches user).
    let out = run_until_exit(
        |port| {
            format!(
                "[global]\nuser = \"no-such-user-rw\"\n[[listener]]\nname = \"a\"\nbind = \"127.0.0.1:{port}\"\nbackend = \"b\"\n\
                 [[backend]]\nname = \"b\"\nservers = [ {{ address = \"127.0.0.1:9\" }} ]\n"
            )
        },
        |c| c.env_remove("RINGWAY_ALLOW_ROOT"),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-user-rw") && err.contains("useradd"),
        "{err}"
    );
}

#[test]
fn systemd_notify_gets_ready_after_listening_and_stopping_on_drain() {
    let dir = TempDir::new("notify");
    let sock_path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let www = Httpd::named("www");
    let mut rw = Ringway::start_text_with(
        |l, a| {
            format!(
                "[global]\nshards = 2\nadmin = \"127.0.0.1:{a}\"\n\
                 [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{l}\"\nmode = \"http\"\nbackend = \"www\"\n\
                 [[backend]]\nname = \"www\"\nservers = [ {{ address = \"{}\" }} ]\n",
                www.addr
            )
        },
        |c| c.env("NOTIFY_SOCKET", &sock_path),
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY message");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(msg.contains("READY=1"), "{msg}");
    assert!(msg.contains(&format!("MAINPID={}", rw.pid())), "{msg}");
    // Ready means serving.
    assert_eq!(http_get(rw.listen, "/r").expect("request"), "www /r");
    rw.signal(libc::SIGTERM);
    let n = sock.recv(&mut buf).expect("STOPPING message");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
    assert!(rw.wait_exit(Duration::from_secs(20)).is_some());
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
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
    // The unit as shipped, with ExecStart pointing at this build (verify checks it exists).
    let unit =
        std::fs::read_to_string(manifest_dir().join("tuning/ringway.service")).expect("unit file");
    assert!(unit.contains("Type=notify"));
    let unit = unit.replace("/usr/local/bin/ringway", BIN);
    let dir = TempDir::new("unit");
    let path = dir.write("ringway.service", &unit);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    // Lines about the host's other units are not ours; ours must be clean.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ringway.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{err}");
}
