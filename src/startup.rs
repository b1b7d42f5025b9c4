//! Owns: turning environment failures at startup into messages that say what was found, what is
//! needed and how to fix it (STYLE.md §15), and process-wide setup done once before shards start.
//! Must not: run after startup or on a shard's hot path.

use std::io;

/// Oldest kernel ringway documents as supported: SINGLE_ISSUER|DEFER_TASKRUN arrived in 6.1.
pub const KERNEL_MIN: (u32, u32) = (6, 1);

/// Explains why io_uring_setup (or a ring registration) failed for `shard`.
pub fn explain_ring_error(shard: usize, e: &io::Error) -> String {
    let kernel = kernel_release().unwrap_or_else(|| "unknown".into());
    let disabled = read_trimmed("/proc/sys/kernel/io_uring_disabled");
    let memlock = memlock_limit_text();
    let seccomp = seccomp_mode();
    let mut msg = format!("shard {shard}: io_uring_setup failed: {e}. Found: kernel {kernel}");
    if let Some(d) = &disabled {
        msg.push_str(&format!(", kernel.io_uring_disabled={d}"));
    }
    msg.push_str(&format!(", RLIMIT_MEMLOCK {memlock}"));
    if let Some(s) = &seccomp {
        msg.push_str(&format!(", seccomp mode {s}"));
    }
    msg.push_str(". ");
    match e.raw_os_error() {
        Some(libc::ENOSYS) => msg.push_str(&format!(
            "This kernel has no io_uring; ringway needs Linux >= {}.{} built with CONFIG_IO_URING.",
            KERNEL_MIN.0, KERNEL_MIN.1
        )),
        Some(libc::EPERM) | Some(libc::EACCES) => {
            if disabled.as_deref().is_some_and(|d| d != "0") {
                msg.push_str(
                    "io_uring is disabled by sysctl: run `sysctl -w kernel.io_uring_disabled=0` (or set it in /etc/sysctl.d/, see tuning/GUIDE.md); value 1 allows only members of kernel.io_uring_group.",
                );
            } else if seccomp.as_deref().is_some_and(|s| s != "0") {
                msg.push_str(
                    "A seccomp filter blocks io_uring (common in containers): allow io_uring_setup, io_uring_enter and io_uring_register in the profile, or run outside the sandbox.",
                );
            } else {
                msg.push_str("Permission denied: check kernel.io_uring_disabled, seccomp and LSM policy (SELinux/AppArmor).");
            }
        }
        Some(libc::ENOMEM) => msg.push_str(
            "Not enough locked memory for the ring: raise it with `ulimit -l unlimited` or systemd LimitMEMLOCK=infinity, or lower recv_buffer_count.",
        ),
        Some(libc::EINVAL) => msg.push_str(&format!(
            "The kernel refused the ring parameters; ringway needs Linux >= {}.{}.",
            KERNEL_MIN.0, KERNEL_MIN.1
        )),
        _ => msg.push_str("See docs/architecture.md (startup) for what ringway needs."),
    }
    msg
}

/// Checks the running kernel is at least [`KERNEL_MIN`]; returns a message if not.
pub fn check_kernel() -> Result<(), String> {
    let Some(release) = kernel_release() else {
        return Ok(());
    };
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) < KERNEL_MIN {
        return Err(format!(
            "kernel {release} is older than {}.{}: ringway needs io_uring with SINGLE_ISSUER, DEFER_TASKRUN, multishot recv and provided-buffer rings. Upgrade the kernel.",
            KERNEL_MIN.0, KERNEL_MIN.1
        ));
    }
    Ok(())
}

/// Ignores SIGPIPE: a peer that closes while we splice or send must give EPIPE, not kill us.
pub fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN for SIGPIPE is async-signal-safe and process-wide by design.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: each connection needs two sockets and, when
/// spliced, up to two pipes (four fds).
pub fn raise_nofile() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    Some((lim.rlim_cur, lim.rlim_max))
}

pub fn kernel_release() -> Option<String> {
    read_trimmed("/proc/sys/kernel/osrelease")
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn memlock_limit_text() -> String {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return "unknown".into();
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        format!("{} KiB", lim.rlim_cur / 1024)
    }
}

fn seccomp_mode() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(|v| v.trim().to_string())
}

/// Looks up `user` (and `group`, default the user's primary group) and switches the whole
/// process to them: supplementary groups, gid, then uid. Called once the listeners are bound and
/// before shards start, so every thread runs unprivileged. Fails if the switch does not stick.
pub fn drop_privileges(user: &str, group: Option<&str>) -> Result<(u32, u32), String> {
    let (uid, primary_gid) = lookup_user(user)?;
    let gid = match group {
        Some(g) => lookup_group(g)?,
        None => primary_gid,
    };
    // SAFETY: plain syscalls with values looked up above; results checked.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(format!(
                "setgroups([{gid}]): {}",
                io::Error::last_os_error()
            ));
        }
        if libc::setgid(gid) != 0 {
            return Err(format!("setgid({gid}): {}", io::Error::last_os_error()));
        }
        if libc::setuid(uid) != 0 {
            return Err(format!("setuid({uid}): {}", io::Error::last_os_error()));
        }
        // Dropped for good: getting root back must fail.
        if uid != 0 && libc::setuid(0) == 0 {
            return Err("could still regain root after setuid; refusing to continue".into());
        }
    }
    Ok((uid, gid))
}

fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    let cname = std::ffi::CString::new(name).map_err(|_| format!("user `{name}`: bad name"))?;
    // SAFETY: `passwd` is a plain C struct of integers and pointers; all-zero (null pointers) is
    // a valid value, and getpwnam_r overwrites it before anything reads it.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r fills `pwd` using `buf` (sized above) and sets `result` to `&pwd` on
    // success or NULL when there is no such user.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(format!(
            "user `{name}` does not exist (create it: useradd --system --no-create-home {name})"
        ));
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

fn lookup_group(name: &str) -> Result<u32, String> {
    let cname = std::ffi::CString::new(name).map_err(|_| format!("group `{name}`: bad name"))?;
    // SAFETY: as for `passwd` above: a plain C struct for which all-zero is valid.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in lookup_user, for getgrnam_r.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(format!("group `{name}` does not exist"));
    }
    Ok(grp.gr_gid)
}

/// Tells systemd (`Type=notify`) about a state change: `READY=1` once every shard listens,
/// `STOPPING=1` when draining. Does nothing when not started by systemd (no `NOTIFY_SOCKET`).
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_errors_say_what_was_found_and_what_to_do() {
        let enomem = explain_ring_error(0, &io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(enomem.contains("RLIMIT_MEMLOCK"), "{enomem}");
        assert!(enomem.contains("ulimit -l unlimited"), "{enomem}");
        let enosys = explain_ring_error(1, &io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(enosys.contains("Linux >= 6.1"), "{enosys}");
        let eperm = explain_ring_error(2, &io::Error::from_raw_os_error(libc::EPERM));
        assert!(
            eperm.starts_with("shard 2: io_uring_setup failed"),
            "{eperm}"
        );
        assert!(
            eperm.contains("io_uring_disabled") || eperm.contains("seccomp"),
            "{eperm}"
        );
    }

    #[test]
    fn this_kernel_passes_the_version_check() {
        assert_eq!(check_kernel(), Ok(()));
    }
}
