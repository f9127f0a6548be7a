//! Running the mount in the background: the foreground process unlocks
//! the vault (it may need a terminal for the password), then starts a
//! detached copy of itself, hands it the master key through a pipe, and
//! returns only once the mount is ready, so scripts can use it on the next
//! line.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::keys::MasterKey;

/// Descriptor numbers the daemon finds its key and readiness pipes on.
pub const KEY_FD: i32 = 3;
pub const READY_FD: i32 = 4;

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((r, w))
}

/// Starts `current_exe() <args>` detached (new session, no terminal,
/// stdio on /dev/null) with the key on fd 3 and a readiness pipe on fd 4,
/// and waits until it reports the mount ready or fails.
pub fn spawn_daemon(master: &MasterKey, args: &[OsString]) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let (key_r, key_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let (key_raw, ready_raw) = (key_r.as_raw_fd(), ready_w.as_raw_fd());
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    unsafe {
        cmd.pre_exec(move || {
            // The pipes may already sit on fds 3 and 4: move both out of
            // the way first, then dup2 into place (dup2 clears CLOEXEC).
            let key_tmp = libc::fcntl(key_raw, libc::F_DUPFD_CLOEXEC, 10);
            let ready_tmp = libc::fcntl(ready_raw, libc::F_DUPFD_CLOEXEC, 10);
            if key_tmp < 0
                || ready_tmp < 0
                || libc::dup2(key_tmp, KEY_FD) < 0
                || libc::dup2(ready_tmp, READY_FD) < 0
            {
                return Err(io::Error::last_os_error());
            }
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(key_r);
    drop(ready_w);
    let mut key_pipe = std::fs::File::from(key_w);
    key_pipe.write_all(master.expose_secret())?;
    drop(key_pipe);
    // One line, not EOF: processes the daemon starts (fusermount3 keeps
    // running with auto_unmount) must not hold the answer back.
    let mut status = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::from(ready_r)),
        &mut status,
    )?;
    if status.trim() == "ok" {
        return Ok(());
    }
    let _ = child.try_wait();
    let msg = status.trim();
    Err(io::Error::other(if msg.is_empty() {
        "the mount daemon exited before the mount was ready (see syslog: journalctl -t veilfs)"
            .to_string()
    } else {
        msg.to_string()
    }))
}

/// Keeps the master key and its subkeys out of core dumps: marks the
/// process not dumpable (which also keeps other processes of the same
/// user from attaching to it or reading its memory through /proc) and
/// sets RLIMIT_CORE to 0. Called by `veilfs mount` before the key is read
/// or unlocked, in the foreground and in the background daemon.
pub fn forbid_core_dumps() -> io::Result<()> {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on this process, with valid arguments.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_CORE, &none) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In the daemon: reads the master key handed over on [`KEY_FD`].
pub fn read_key_from_fd() -> io::Result<MasterKey> {
    set_cloexec(KEY_FD);
    let mut f = unsafe { std::fs::File::from_raw_fd(KEY_FD) };
    // Read straight into the key's own (heap, zeroized) buffer: no copy of
    // the key is left on the stack.
    MasterKey::try_fill_with(|buf| f.read_exact(buf))
}

/// In the daemon: the readiness pipe.
pub fn ready_fd() -> OwnedFd {
    set_cloexec(READY_FD);
    unsafe { OwnedFd::from_raw_fd(READY_FD) }
}

/// Keeps an inherited descriptor from leaking into programs the daemon
/// starts (fusermount3).
fn set_cloexec(fd: i32) {
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

/// A `log` backend writing to syslog (journald picks it up), for the
/// daemon, whose stderr goes nowhere.
pub struct SyslogLogger {
    filter: env_filter::Filter,
}

impl SyslogLogger {
    pub fn install(filter: env_filter::Filter) {
        let level = filter.filter();
        unsafe {
            libc::openlog(c"veilfs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON);
        }
        if log::set_boxed_logger(Box::new(SyslogLogger { filter })).is_ok() {
            log::set_max_level(level);
        }
    }
}

impl log::Log for SyslogLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.filter.matches(record) {
            return;
        }
        let priority = match record.level() {
            log::Level::Error => libc::LOG_ERR,
            log::Level::Warn => libc::LOG_WARNING,
            log::Level::Info => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        let msg = format!("{}", record.args()).replace('\0', "");
        if let Ok(c) = std::ffi::CString::new(msg) {
            unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13, finding 8: the process holding the key cannot be
    /// core-dumped. Runs in a forked child, which must not change the test
    /// runner itself.
    #[test]
    fn forbid_core_dumps_clears_dumpable_and_core_limit() {
        // SAFETY: the child makes only async-signal-safe system calls and
        // leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let code = unsafe {
                let before = libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0);
                let ok = forbid_core_dumps().is_ok();
                let mut lim = libc::rlimit {
                    rlim_cur: 1,
                    rlim_max: 1,
                };
                libc::getrlimit(libc::RLIMIT_CORE, &mut lim);
                let dumpable = libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0);
                match (before, ok, dumpable, lim.rlim_cur, lim.rlim_max) {
                    (1, true, 0, 0, 0) => 0,
                    (b, _, _, _, _) if b != 1 => 2,
                    (_, false, _, _, _) => 3,
                    (_, _, d, _, _) if d != 0 => 4,
                    _ => 5,
                }
            };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "2: not dumpable to start with, 3: call failed, 4: still dumpable, 5: core limit not 0"
        );
    }
}
