//! Binary upgrade (`ringway upgrade`, docs/upgrade.md) and systemd socket activation, on the real
//! binary: connections keep working while one process hands its listening sockets to the next,
//! a new binary that fails leaves the old one serving, and sockets passed in LISTEN_FDS are the
//! ones ringway serves on.

mod common;

use std::cell::RefCell;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A ringway started by an upgrade: not a child of the test, so it is stopped by pid. SIGKILLed
/// on drop if still running.
struct Successor {
    pid: i32,
}

/// Process `pid` runs (a zombie waiting for a reaper that is not us counts as gone).
fn proc_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

fn proc_cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

impl Successor {
    fn alive(&self) -> bool {
        proc_alive(self.pid)
    }

    fn cmdline(&self) -> String {
        proc_cmdline(self.pid)
    }

    /// SIGTERM, then waits until it is gone.
    fn stop(&self) {
        // SAFETY: kill(2) with a pid this test got from ringway and checked is a ringway.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        assert!(
            poll(Duration::from_secs(20), || (!self.alive()).then_some(())).is_some(),
            "pid {} did not stop after SIGTERM",
            self.pid
        );
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        if self.alive() {
            // SAFETY: as in `stop`.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// `ringway upgrade ARGS` against `rw`'s admin listener: (exit code, stdout, stderr).
fn upgrade_cli(rw: &Ringway, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .arg("upgrade")
        .arg("--admin")
        .arg(rw.admin.to_string())
        .arg("--token-file")
        .arg(admin_token_file())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ringway upgrade");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Upgrades the ringway that serves `rw`'s admin listener, pid `old_pid` (which must succeed),
/// and returns the new process.
fn upgrade_ok(rw: &Ringway, old_pid: i32, args: &[&str]) -> Successor {
    let (code, out, err) = upgrade_cli(rw, args);
    assert_eq!(
        code,
        Some(0),
        "upgrade failed:\n{out}{err}\n{}",
        rw.stderr()
    );
    // "upgraded: new pid N serves; old pid M drains"
    let pid: i32 = out
        .split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no new pid in {out:?}"));
    // Guarded before any check, so a failing one does not leave it running.
    let s = Successor { pid };
    assert!(out.contains(&format!("old pid {old_pid}")), "{out}");
    assert_ne!(pid, old_pid);
    assert!(s.alive(), "new pid {pid} is not running");
    assert!(s.cmdline().contains("--upgrade-from"), "{}", s.cmdline());
    s
}

/// One round trip through an echo tunnel.
fn echo_once(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    if back != msg {
        return Err(std::io::Error::other(format!(
            "echo mismatch: {back:?} != {msg:?}"
        )));
    }
    Ok(())
}

/// New connections in a loop, each one connect + echo + close, counted until stopped.
struct ClientLoop {
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClientLoop {
    fn start(addr: SocketAddr) -> ClientLoop {
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, f, s) = (Arc::clone(&ok), Arc::clone(&failures), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                n += 1;
                let msg = format!("conn-{n:08}");
                let result =
                    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).and_then(|mut c| {
                        c.set_read_timeout(Some(Duration::from_secs(10)))?;
                        c.set_write_timeout(Some(Duration::from_secs(10)))?;
                        echo_once(&mut c, msg.as_bytes())
                    });
                match result {
                    Ok(()) => {
                        o.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        // The sockets of the port as they are now (a connection stuck in an
                        // accept queue shows as Recv-Q on a LISTEN line).
                        let port = addr.port();
                        let ss = Command::new("ss")
                            .args([
                                "-tanpie",
                                &format!("( sport = :{port} or dport = :{port} )"),
                            ])
                            .output()
                            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                            .unwrap_or_default();
                        f.lock()
                            .expect("failures")
                            .push(format!("connection {n}: {e} ({:?})\n{ss}", e.kind()))
                    }
                }
            }
        });
        ClientLoop {
            ok,
            failures,
            stop,
            thread: Some(thread),
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits until `more` further connections succeeded.
    fn wait_more(&self, more: u64, what: &str) {
        let want = self.ok() + more;
        assert!(
            poll(Duration::from_secs(20), || (self.ok() >= want)
                .then_some(()))
            .is_some(),
            "{what}: only {} of {want} connections succeeded; failures: {:?}",
            self.ok(),
            self.failures()
        );
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().expect("failures").clone()
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("client loop");
        }
        (self.ok(), self.failures())
    }
}

impl Drop for ClientLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[test]
fn upgrade_under_load_drops_nothing_and_the_old_process_drains_then_exits_zero() {
    let b = Backend::echo();
    let mut rw = Ringway::start(
        &[b.addr],
        &Opts {
            drain: "2s",
            ..Opts::default()
        },
    );
    let old_pid = rw.pid();
    let mut tunnel = connect(rw.listen);
    echo_once(&mut tunnel, b"before the upgrade").expect("tunnel before");
    let clients = ClientLoop::start(rw.listen);
    clients.wait_more(20, "before the upgrade");

    let new = upgrade_ok(&rw, rw.pid(), &[]);

    // The tunnel opened before the upgrade keeps working while the old process drains, until
    // the drain deadline closes it and the old process exits.
    let mut round_trips = 0u32;
    let status = loop {
        if let Some(status) = rw.child.try_wait().expect("try_wait") {
            break status;
        }
        match echo_once(&mut tunnel, format!("during {round_trips:06}").as_bytes()) {
            Ok(()) => round_trips += 1,
            // Closed by the drain deadline: the old process is about to exit.
            Err(_) => {
                break rw
                    .wait_exit(Duration::from_secs(15))
                    .expect("old process exits after its drain");
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "old process exit status {status}");
    assert!(
        round_trips >= 5,
        "the tunnel made only {round_trips} round trips during the drain"
    );
    let log = rw.stderr();
    assert!(log.contains("signal=\"upgrade\""), "{log}");
    assert!(
        log.contains("drain_closed=1"),
        "the tunnel ends at the deadline:\n{log}"
    );

    // Only the new process is left, and it takes every new connection.
    clients.wait_more(20, "after the old process exited");
    let (ok, failures) = clients.finish();
    if !failures.is_empty() {
        eprintln!("new stats: {:#}", rw.stats());
    }
    assert!(
        failures.is_empty(),
        "{} of {} connections failed during the upgrade:\n{}",
        failures.len(),
        ok as usize + failures.len(),
        failures.join("\n")
    );
    assert!(new.alive());
    let stats = rw.stats();
    assert!(
        stat_u64(&stats, "/total/accepted") >= 20,
        "the new process's /stats: {stats:#}"
    );
    assert!(
        log.contains(&format!("took over from the old process old_pid={old_pid}")),
        "{log}"
    );
    new.stop();
}

#[test]
fn a_failing_new_binary_leaves_the_old_one_serving_and_a_later_upgrade_works() {
    let b = Backend::echo();
    let opts = Opts {
        drain: "1s",
        ..Opts::default()
    };
    let mut rw = Ringway::start(&[b.addr], &opts);
    let mut tunnel = connect(rw.listen);
    echo_once(&mut tunnel, b"hello").expect("tunnel");

    // A binary that exits at once.
    let (code, _, err) = upgrade_cli(&rw, &["--bin", "/bin/false"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("exited with status 1"), "{err}");
    assert!(err.contains("keeps serving"), "{err}");

    // A new process that cannot start: its extra listener's port is taken by a socket without
    // SO_REUSEPORT. It says why, and the old process passes that on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr");
    let bad = rw.dir.write(
        "taken.toml",
        &format!(
            "{}\n[[listener]]\nname = \"extra\"\nbind = \"{taken_addr}\"\nmode = \"tcp\"\nbackend = \"be\"\n",
            config_text(rw.listen.port(), rw.admin.port(), &[b.addr], &opts)
        ),
    );
    let (code, _, err) = upgrade_cli(&rw, &["-c", &bad.display().to_string()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("could not start"), "{err}");
    assert!(err.contains(&taken_addr.to_string()), "{err}");
    assert!(says_port_taken(&err), "{err}");

    // The old process serves on: the open tunnel, new connections, the admin listener.
    echo_once(&mut tunnel, b"still here").expect("tunnel after the failures");
    let mut c = connect(rw.listen);
    echo_once(&mut c, b"new connection").expect("new connection after the failures");
    drop(c);
    assert!(rw.child.try_wait().expect("try_wait").is_none());
    assert!(rw.total("accepted") >= 2);
    // The failed processes are gone and the upgrade socket is removed.
    let socket = std::env::temp_dir().join(format!("ringway-upgrade-{}.sock", rw.pid()));
    let leftover = poll(Duration::from_secs(20), || {
        (upgrade_children(&socket).is_empty() && !socket.exists()).then_some(())
    });
    assert!(
        leftover.is_some(),
        "left behind: processes {:?}, socket {}",
        upgrade_children(&socket),
        socket.exists()
    );

    // A later upgrade with the good binary works.
    let new = upgrade_ok(&rw, rw.pid(), &[]);
    echo_once(&mut tunnel, b"old tunnel in the drain").expect("tunnel in the drain");
    let status = rw
        .wait_exit(Duration::from_secs(15))
        .expect("old process exits after its drain");
    assert!(status.success(), "exit status {status}");
    let mut c = connect(rw.listen);
    echo_once(&mut c, b"served by the new process").expect("new process serves");
    new.stop();
}

/// Pids of processes started with `--upgrade-from SOCKET`.
fn upgrade_children(socket: &std::path::Path) -> Vec<i32> {
    let want = socket.display().to_string();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| proc_alive(pid) && proc_cmdline(pid).contains(&want))
                .collect()
        })
        .unwrap_or_default()
}

/// Listening TCP sockets on 127.0.0.1:`port` in this network namespace (inodes).
fn listening_on(port: u16) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let local = cols.get(1)?;
            let (_, p) = local.rsplit_once(':')?;
            (u16::from_str_radix(p, 16).ok()? == port && *cols.get(3)? == "0A")
                .then(|| cols.get(9).map(|s| s.to_string()))
                .flatten()
        })
        .collect()
}

fn socket_inode(fd: RawFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn socket_activation_serves_on_the_passed_sockets_and_binds_nothing_of_its_own() {
    let b = Backend::echo();
    let sockets: Rc<RefCell<Vec<socket2::Socket>>> = Rc::default();
    let text_sockets = Rc::clone(&sockets);
    let prepare_sockets = Rc::clone(&sockets);
    let rw = Ringway::start_text_with(
        move |listen, admin| {
            // What systemd does for two `ListenStream=127.0.0.1:PORT` lines with ReusePort=yes.
            let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().expect("addr");
            let mut held = text_sockets.borrow_mut();
            held.clear();
            for _ in 0..2 {
                let s = reuseport_socket(addr);
                s.listen(128).expect("listen");
                held.push(s);
            }
            config_text(listen, admin, &[b.addr], &Opts::default())
        },
        move |cmd| {
            let fds: Vec<RawFd> = prepare_sockets
                .borrow()
                .iter()
                .map(|s| s.as_raw_fd())
                .collect();
            let fds: [RawFd; 2] = fds.try_into().expect("two sockets");
            let args: Vec<OsString> = cmd.get_args().map(|a| a.to_owned()).collect();
            let cfg = PathBuf::from(args.get(2).expect("run -c FILE"));
            let dir = cfg.parent().expect("config dir").to_owned();
            let log = |name: &str| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(dir.join(name))
                    .expect("log file")
            };
            // LISTEN_PID must be ringway's pid: the shell's, which `exec` hands on.
            let mut wrapped = Command::new("/bin/sh");
            wrapped
                .arg("-c")
                .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
                .arg(BIN)
                .args(&args)
                .env("RINGWAY_ALLOW_ROOT", "1")
                .env("LISTEN_FDS", "2")
                .env("LISTEN_FDNAMES", "test:test")
                .stdin(Stdio::null())
                .stdout(log("stdout.log"))
                .stderr(log("stderr.log"));
            // SAFETY: only fcntl, dup2 and close between fork and exec (async-signal-safe), on
            // fds this process holds; first moved above 3 and 4 so no copy overwrites a source.
            unsafe {
                wrapped.pre_exec(move || {
                    let mut high = [0; 2];
                    for (h, fd) in high.iter_mut().zip(fds) {
                        *h = libc::fcntl(fd, libc::F_DUPFD, 100);
                        if *h < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    for (i, h) in high.iter().enumerate() {
                        // dup2 leaves the new fd without close-on-exec: it survives exec.
                        if libc::dup2(*h, 3 + i as RawFd) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        libc::close(*h);
                    }
                    Ok(())
                })
            };
            std::mem::swap(cmd, &mut wrapped);
            cmd
        },
    );
    for n in 0..8 {
        let mut c = connect(rw.listen);
        echo_once(&mut c, format!("activated {n}").as_bytes()).expect("served");
    }
    let log = rw.stderr();
    assert!(
        log.contains("socket activation: systemd passed listening sockets sockets=2"),
        "{log}"
    );
    assert!(
        log.contains("adopted inherited listening sockets listener=test")
            && log.contains("sockets=2 from=systemd"),
        "{log}"
    );
    // Only the two sockets the test made listen on the port: ringway bound none of its own
    // (its own SO_REUSEPORT sockets would have joined the group, taking connections too).
    let ours: Vec<String> = sockets
        .borrow()
        .iter()
        .map(|s| socket_inode(s.as_raw_fd()))
        .collect();
    let mut listening: Vec<String> = listening_on(rw.listen.port())
        .into_iter()
        .map(|i| format!("socket:[{i}]"))
        .collect();
    listening.sort();
    let mut want = ours.clone();
    want.sort();
    assert_eq!(listening, want, "listening sockets on {}", rw.listen);
    // ringway holds them.
    let held: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", rw.pid()))
        .expect("fds")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .collect();
    assert!(ours.iter().all(|o| held.contains(o)), "{held:?}");
}

/// `ringway reload` against `rw`'s admin listener (the file it was started with); must apply.
fn reload_cli(rw: &Ringway) {
    let out = Command::new(BIN)
        .arg("reload")
        .arg("--admin")
        .arg(rw.admin.to_string())
        .arg("--token-file")
        .arg(admin_token_file())
        .stdin(Stdio::null())
        .output()
        .expect("run ringway reload");
    assert!(
        out.status.success(),
        "reload failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        rw.stderr()
    );
}

#[test]
fn the_hand_over_carries_the_listeners_reloads_added_and_not_those_they_removed() {
    let b = Backend::echo();
    let opts = Opts {
        drain: "1s",
        ..Opts::default()
    };
    let mut rw = Ringway::start(&[b.addr], &opts);
    let extra_port = free_port();
    let extra: SocketAddr = format!("127.0.0.1:{extra_port}").parse().expect("addr");
    let path = rw.dir.0.join("ringway.toml");
    let base = config_text(rw.listen.port(), rw.admin.port(), &[b.addr], &opts);
    let with_extra = format!(
        "{base}\n[[listener]]\nname = \"extra\"\nbind = \"{extra}\"\nmode = \"tcp\"\nbackend = \"be\"\n"
    );
    std::fs::write(&path, &with_extra).expect("write config");
    reload_cli(&rw);
    echo_once(&mut connect(extra), b"added by a reload").expect("extra listener");

    // Two listeners of two shards, plus the admin listener.
    let first = upgrade_ok(&rw, rw.pid(), &[]);
    assert!(
        rw.stderr()
            .contains("handing over the listening sockets new_pid=")
            && rw.stderr().contains("sockets=5"),
        "{}",
        rw.stderr()
    );
    let status = rw.wait_exit(Duration::from_secs(15)).expect("old exits");
    assert!(status.success(), "exit status {status}");
    let log = rw.stderr();
    assert!(
        log.contains("adopted inherited listening sockets listener=extra"),
        "{log}"
    );
    echo_once(&mut connect(extra), b"after the upgrade").expect("extra adopted");

    // The new process drops `extra` by a reload; the next hand-over leaves it out.
    std::fs::write(&path, &base).expect("write config");
    reload_cli(&rw);
    let second = upgrade_ok(&rw, first.pid, &[]);
    let log = rw.stderr();
    let last = log
        .rfind("handing over the listening sockets")
        .map(|i| &log[i..])
        .unwrap_or_default();
    assert!(last.contains("sockets=3"), "{log}");
    assert!(
        poll(Duration::from_secs(15), || (!first.alive()).then_some(())).is_some(),
        "the first successor did not drain and exit"
    );
    echo_once(&mut connect(rw.listen), b"second successor").expect("served");
    assert!(
        TcpStream::connect_timeout(&extra, Duration::from_secs(2)).is_err(),
        "the removed listener still accepts"
    );
    second.stop();
}
