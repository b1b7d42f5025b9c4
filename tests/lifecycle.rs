//! Startup and shutdown of the real binary: SIGTERM drain, drain deadline, memlock, CLI.

mod common;

use std::io::Read;
use std::net::{Shutdown, TcpStream};

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

#[test]
fn sigterm_drains_in_flight_transfer_and_refuses_new() {
    let total = 64 * MIB;
    let b = Backend::spawn(move |mut s| {
        let _ = send_stream(&mut s, 11, total);
    });
    let mut rw = Ringway::start(&[b.addr], &Opts::default());
    let mut c = connect(rw.listen);
    // Read the first MiB so the transfer is surely in flight, then signal.
    let mut first = vec![0u8; MIB as usize];
    c.read_exact(&mut first).expect("first MiB");
    rw.signal(libc::SIGTERM);
    let listen = rw.listen;
    let refused = poll(
        Duration::from_secs(10),
        || match TcpStream::connect_timeout(&listen, Duration::from_millis(200)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    );
    assert!(
        refused.is_some(),
        "new connections still accepted while draining"
    );
    // The transfer in flight completes intact.
    let mut whole = Digest::default();
    whole.update(&first);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = c.read(&mut buf).expect("rest of the stream");
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
    }
    assert_eq!(
        whole,
        expected_digest(11, total),
        "transfer cut short or corrupted by the drain"
    );
    drop(c);
    let status = rw
        .wait_exit(Duration::from_secs(15))
        .expect("ringway exits after drain");
    assert!(status.success(), "exit status {status}");
    let log = rw.stderr();
    assert!(log.contains("ringway stopped"), "no summary line:\n{log}");
    // The transfer ended by itself, not by the drain deadline.
    assert!(log.contains("drain_closed=0"), "{log}");
}

#[test]
fn drain_timeout_closes_lingering_connections_and_exits_zero() {
    let b = Backend::echo();
    let mut rw = Ringway::start(
        &[b.addr],
        &Opts {
            drain: "1s",
            ..Opts::default()
        },
    );
    let mut c = connect(rw.listen);
    std::io::Write::write_all(&mut c, b"hi").expect("write");
    let mut buf = [0u8; 2];
    c.read_exact(&mut buf).expect("echo");
    let t = Instant::now();
    rw.signal(libc::SIGINT);
    // The idle connection stays open until the drain deadline closes it.
    let mut one = [0u8; 1];
    let r = c.read(&mut one);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed before drain_timeout: {took:?}"
    );
    let status = rw.wait_exit(Duration::from_secs(10)).expect("exit");
    assert!(status.success(), "exit status {status}");
    assert!(rw.stderr().contains("drain_closed=1"), "{}", rw.stderr());
    let _ = c.shutdown(Shutdown::Both);
}

#[test]
fn starts_under_memlock_8mib_without_cap_ipc_lock() {
    let b = Backend::echo();
    let has_setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    let rw = Ringway::start_with(
        &[b.addr],
        &Opts {
            shards: 2,
            ..Opts::default()
        },
        |cmd| {
            // SAFETY: setrlimit is async-signal-safe; called in the child before exec.
            unsafe {
                cmd.pre_exec(|| {
                    let lim = libc::rlimit {
                        rlim_cur: 8 << 20,
                        rlim_max: 8 << 20,
                    };
                    if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                })
            };
            if has_setpriv {
                // Root ignores RLIMIT_MEMLOCK while it holds CAP_IPC_LOCK: drop it so the limit
                // really applies. setpriv execs ringway with the same arguments.
                let program = cmd.get_program().to_owned();
                let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
                let mut wrapped = Command::new("setpriv");
                wrapped
                    .env("RINGWAY_ALLOW_ROOT", "1")
                    .args(["--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--"])
                    .arg(program)
                    .args(args);
                std::mem::swap(cmd, &mut wrapped);
                // Re-apply stdio and the rlimit hook to the wrapper.
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null());
                // SAFETY: as above.
                unsafe {
                    cmd.pre_exec(|| {
                        let lim = libc::rlimit {
                            rlim_cur: 8 << 20,
                            rlim_max: 8 << 20,
                        };
                        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    })
                };
            }
            cmd
        },
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", rw.pid())).unwrap_or_default();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", rw.pid())).unwrap_or_default();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max locked memory") && l.contains("8388608")),
        "memlock not applied:\n{limits}"
    );
    if has_setpriv {
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(u64::MAX);
        assert_eq!(cap_eff & (1 << 14), 0, "CAP_IPC_LOCK still effective");
    }
    assert_eq!(stat_u64(&rw.stats(), "/shards"), 2);
    let mut c = connect(rw.listen);
    std::io::Write::write_all(&mut c, b"ok").expect("write");
    let mut buf = [0u8; 2];
    c.read_exact(&mut buf).expect("served under memlock 8 MiB");
}

/// A backend that says `tag` on connect, then echoes.
fn tagged(tag: &'static [u8]) -> Backend {
    Backend::spawn(move |mut s| {
        if std::io::Write::write_all(&mut s, tag).is_err() {
            return;
        }
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            if std::io::Write::write_all(&mut s, &buf[..n]).is_err() {
                break;
            }
        }
    })
}

fn first_byte(listen: std::net::SocketAddr) -> u8 {
    let mut c = connect(listen);
    let mut one = [0u8; 1];
    c.read_exact(&mut one).expect("tag");
    one[0]
}

#[test]
fn sighup_reloads_the_file_and_a_bad_file_changes_nothing() {
    let a = tagged(b"A");
    let b = tagged(b"B");
    let mut rw = Ringway::start(&[a.addr], &Opts::default());
    assert_eq!(first_byte(rw.listen), b'A');
    // A tunnel opened before the reload keeps its server and keeps working after it.
    let mut tunnel = connect(rw.listen);
    let mut one = [0u8; 1];
    tunnel.read_exact(&mut one).expect("tag");
    assert_eq!(one[0], b'A');

    let path = rw.dir.0.join("ringway.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(
        &path,
        text.replace(&a.addr.to_string(), &b.addr.to_string()),
    )
    .expect("write");
    rw.signal(libc::SIGHUP);
    let switched = poll(Duration::from_secs(5), || {
        (first_byte(rw.listen) == b'B').then_some(())
    });
    assert!(switched.is_some(), "{}", rw.stderr());
    assert!(rw.stderr().contains("reload done"), "{}", rw.stderr());
    std::io::Write::write_all(&mut tunnel, b"xy").expect("write");
    let mut two = [0u8; 2];
    tunnel
        .read_exact(&mut two)
        .expect("tunnel survives the reload");
    assert_eq!(&two, b"xy");

    // A file that does not validate: the error is located, ringway keeps the running config.
    std::fs::write(&path, "[global]\nshards = \"many\"\n").expect("write");
    rw.signal(libc::SIGHUP);
    let refused = poll(Duration::from_secs(5), || {
        rw.stderr().contains("ringway.toml:2:").then_some(())
    });
    assert!(refused.is_some(), "{}", rw.stderr());
    assert!(
        rw.child.try_wait().expect("try_wait").is_none(),
        "bad reload killed ringway"
    );
    assert_eq!(first_byte(rw.listen), b'B');
}

#[test]
fn second_stop_signal_closes_remaining_connections_at_once() {
    let b = Backend::echo();
    let mut rw = Ringway::start(
        &[b.addr],
        &Opts {
            drain: "60s",
            ..Opts::default()
        },
    );
    let mut c = connect(rw.listen);
    std::io::Write::write_all(&mut c, b"hi").expect("write");
    let mut buf = [0u8; 2];
    c.read_exact(&mut buf).expect("echo");
    rw.signal(libc::SIGTERM);
    let draining = poll(Duration::from_secs(5), || {
        rw.stderr().contains("draining").then_some(())
    });
    assert!(draining.is_some());
    // Still serving the open connection during the drain; /stats still answers.
    assert_eq!(rw.total("active"), 1);
    let t = Instant::now();
    rw.signal(libc::SIGTERM);
    let status = rw
        .wait_exit(Duration::from_secs(10))
        .expect("exit after second signal");
    assert!(status.success());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let mut one = [0u8; 1];
    assert!(matches!(c.read(&mut one), Ok(0) | Err(_)));
}
