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

use zeroize::Zeroizing;

use crate::keys::{KEY_LEN, MasterKey};

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
    key_pipe.write_all(master.as_bytes())?;
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

/// In the daemon: reads the master key handed over on [`KEY_FD`].
pub fn read_key_from_fd() -> io::Result<MasterKey> {
    set_cloexec(KEY_FD);
    let mut f = unsafe { std::fs::File::from_raw_fd(KEY_FD) };
    let mut buf = Zeroizing::new([0u8; KEY_LEN]);
    f.read_exact(&mut buf[..])?;
    Ok(MasterKey::from_bytes(*buf))
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
