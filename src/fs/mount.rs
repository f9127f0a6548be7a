//! Mounting: FUSE session setup, readiness signalling and clean unmount on
//! SIGINT/SIGTERM.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use fuser::{Config, MountOption, Session, SessionACL};
use sd_notify::NotifyState;

use super::{FsOptions, VeilFs};
use crate::content::ContentCipher;
use crate::cryptfile::journal::{self, Journal};
use crate::names::NameCipher;

/// Everything `veilfs mount` decides.
#[derive(Debug, Clone)]
pub struct MountConfig {
    pub cipherdir: PathBuf,
    /// The rewrite journal's directory (crate::cryptfile::journal); `None` on a
    /// read-only mount.
    pub journal_dir: Option<PathBuf>,
    pub mountpoint: PathBuf,
    pub allow_other: bool,
    pub threads: usize,
    /// Serve over io_uring when the kernel offers it (`--io-uring`).
    pub io_uring: bool,
    pub fs: FsOptions,
    /// Unmount after this long without a request and with nothing open.
    pub idle: Option<std::time::Duration>,
    /// Tell systemd (`Type=notify`, `$NOTIFY_SOCKET`) once the mount is
    /// usable. For the foreground mount: the background daemon is not the
    /// process systemd started.
    pub notify_systemd: bool,
    /// The `nodev`, `nosuid` and `noexec` mount options.
    pub no_dev: bool,
    pub no_suid: bool,
    pub no_exec: bool,
}

/// Raises the open-file limit to its hard maximum: the daemon keeps a
/// descriptor per cached directory and per open file.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn fuse_config(cfg: &MountConfig, auto_unmount: bool) -> Config {
    let mut c = Config::default();
    c.mount_options = vec![
        MountOption::FSName(format!("veilfs:{}", cfg.cipherdir.display())),
        MountOption::Subtype("veilfs".into()),
        MountOption::NoAtime,
    ];
    // Without --allow-other the mounting user is the only caller, and the
    // daemon runs as that user: the backing file system checks every
    // operation for it, as gocryptfs relies on too. Asking the kernel to
    // check modes as well costs a GETATTR of the parent directory before
    // each create, unlink and rename (the previous one invalidated its
    // attributes). With --allow-other the kernel must check for the
    // other users.
    if cfg.fs.kernel_checks_permissions {
        c.mount_options.push(MountOption::DefaultPermissions);
    }
    if cfg.fs.read_only {
        c.mount_options.push(MountOption::RO);
    }
    for (set, opt) in [
        (cfg.no_dev, MountOption::NoDev),
        (cfg.no_suid, MountOption::NoSuid),
        (cfg.no_exec, MountOption::NoExec),
    ] {
        if set {
            c.mount_options.push(opt);
        }
    }
    if auto_unmount {
        c.mount_options.push(MountOption::AutoUnmount);
    }
    c.acl = if cfg.allow_other {
        SessionACL::All
    } else if auto_unmount {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    c.n_threads = Some(cfg.threads.max(1));
    c.clone_fd = true;
    // FUSE over io_uring, when asked for and the kernel offers it (Linux
    // 6.14+, the fuse module's enable_uring parameter on): one system call
    // per request instead of a read and a write, served on the caller's
    // CPU. fuser falls back to /dev/fuse, and `serve` logs which one it is.
    // Not the default: cold random reads and metadata gain 15-50 %, but
    // sequential and random writes lose 7-12 % (docs/PERFORMANCE.md).
    c.io_uring = cfg.io_uring;
    // Each entry holds a 1 MiB buffer (max_write) once a large request has
    // used it: 4 per CPU instead of fuser's 8 keeps the daemon's peak RSS
    // at 31 instead of 39 MiB after large reads and writes (20 MiB over
    // /dev/fuse), with the same throughput measured (300 MiB cold read
    // 0.26-0.27 s either way, 4 KiB random writes 48k/40k vs 45k/34k IOPS).
    c.io_uring_depth = 4;
    // The ring threads linger like the /dev/fuse thread (`VeilFs::linger`),
    // and not on one CPU, where spinning keeps the program that sends the
    // next request from running.
    c.io_uring_linger = if available_cpus() > 1 {
        cfg.fs.linger
    } else {
        std::time::Duration::ZERO
    };
    c
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The error of a mount that failed with and without auto_unmount. The
/// first attempt went through fusermount3, whose own message says what is
/// wrong ("failed to open /dev/fuse: Permission denied", "user has no
/// write access to mountpoint"); the retry without it may try mount(2)
/// directly and fail with a bare errno. Keep fusermount3's words.
fn both_attempts(first: &std::io::Error, second: std::io::Error) -> std::io::Error {
    let said = first.to_string();
    let said = said.trim();
    if said.is_empty() || said == second.to_string().trim() {
        return second;
    }
    let hint = if said.contains("/dev/fuse") {
        "; /dev/fuse must be readable and writable by you (crw-rw-rw-), \
         and a container needs it passed in (docker run --device /dev/fuse)"
    } else {
        ""
    };
    std::io::Error::new(
        second.kind(),
        format!("{said} (then, without auto_unmount: {second}){hint}"),
    )
}

/// Mounts and serves until unmounted (by `fusermount3 -u`, SIGINT or
/// SIGTERM). `ready` is written "ok\n" once the mount is usable, or the
/// error text if mounting failed.
pub fn serve(
    cfg: &MountConfig,
    content: ContentCipher,
    names: NameCipher,
    ready: Option<OwnedFd>,
) -> std::io::Result<()> {
    let mut ready = ready.map(std::fs::File::from);
    let result = (|| {
        raise_fd_limit();
        let journal = open_journal(cfg, &content)?;
        // Modes from the kernel already have the caller's umask applied.
        rustix::process::umask(rustix::fs::Mode::empty());
        let fs = VeilFs::new(
            &cfg.cipherdir,
            content.clone(),
            names.clone(),
            cfg.fs.clone(),
            journal.clone(),
        )?;
        let slot = fs.fuse_device_slot();
        let activity = fs.activity();
        // AutoUnmount (fusermount3 watches us and unmounts if we die) needs
        // allow_root or allow_other, which unprivileged users may not be
        // granted; fall back to a plain mount then.
        match Session::new(fs, &cfg.mountpoint, &fuse_config(cfg, true)) {
            Ok(s) => Ok((s, slot, activity, journal)),
            Err(e) => {
                log::warn!(
                    "mount with auto_unmount failed ({}); retrying without it",
                    e.to_string().trim()
                );
                let fs = VeilFs::new(
                    &cfg.cipherdir,
                    content,
                    names,
                    cfg.fs.clone(),
                    journal.clone(),
                )?;
                let slot = fs.fuse_device_slot();
                let activity = fs.activity();
                Session::new(fs, &cfg.mountpoint, &fuse_config(cfg, false))
                    .map(|s| (s, slot, activity, journal))
                    .map_err(|e2| both_attempts(&e, e2))
            }
        }
    })();
    let (session, device_slot, activity, journal) = match result {
        Ok(s) => s,
        Err(e) => {
            if let Some(r) = ready.as_mut() {
                let _ = writeln!(r, "{e}");
            }
            return Err(e);
        }
    };
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])?;
    let signal_handle = signals.handle();
    let transport = session.transport().clone();
    match &transport {
        fuser::Transport::IoUring { queues, depth, .. } => {
            log::info!("FUSE requests travel over io_uring ({queues} queues of {depth} entries)")
        }
        fuser::Transport::DevFuse(_) if !cfg.io_uring => {
            log::info!("FUSE requests travel over /dev/fuse (--io-uring asks for io_uring)")
        }
        fuser::Transport::DevFuse(why) => {
            log::info!("FUSE requests travel over /dev/fuse: {why}")
        }
    }
    let over_uring = matches!(transport, fuser::Transport::IoUring { .. });
    let mountpoint = cfg.mountpoint.clone();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            unmount(&mountpoint);
        }
    });
    // With more threads each reads its own cloned descriptor, and a
    // request seen on this one may be another thread's to serve. With one
    // CPU, spinning would only keep the program that sends the next
    // request from running.
    // Over io_uring requests do not come through /dev/fuse: the ring
    // threads linger themselves (`fuse_config`).
    if cfg.threads == 1 && available_cpus() > 1 && !over_uring {
        match session.as_fd().try_clone_to_owned() {
            Ok(fd) => {
                let _ = device_slot.set(fd);
            }
            Err(e) => log::debug!("no linger: cannot duplicate /dev/fuse: {e}"),
        }
    }
    raise_read_ahead(&cfg.mountpoint);
    if let Some(mut r) = ready.take() {
        let _ = r.write_all(b"ok\n");
    }
    log::info!(
        "mounted {} on {}",
        cfg.cipherdir.display(),
        cfg.mountpoint.display()
    );
    if cfg.notify_systemd {
        let status = format!("Mounted {}", cfg.mountpoint.display());
        if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]) {
            log::warn!("cannot tell systemd the mount is ready: {e}");
        }
    }
    if let Some(limit) = cfg.idle {
        super::idle::watch(
            activity.clone(),
            limit,
            cfg.mountpoint.clone(),
            unmount_if_unused,
        );
    }
    let res = session.run();
    activity.stop();
    if over_uring {
        log::info!(
            "served {} requests over io_uring",
            transport.io_uring_requests()
        );
    }
    if cfg.notify_systemd {
        let _ = sd_notify::notify(&[NotifyState::Stopping]);
    }
    signal_handle.close();
    if let Err(e) = journal.close() {
        log::warn!("cannot empty the rewrite journal at unmount: {e}");
    }
    log::info!("unmounted {}", cfg.mountpoint.display());
    res
}

/// Replays what a crash left in the vault's rewrite journal, then opens
/// it for this mount. A read-only mount neither replays nor records.
fn open_journal(cfg: &MountConfig, content: &ContentCipher) -> std::io::Result<Journal> {
    let Some(dir) = &cfg.journal_dir else {
        return Ok(Journal::off());
    };
    let root = rustix::fs::open(
        &cfg.cipherdir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let what = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!(
                "rewrite journal {}: {e} (set VEILFS_STATE_DIR to a writable local directory)",
                dir.display()
            ),
        )
    };
    let done = journal::recover(dir, &root, content).map_err(what)?;
    if done.unplaced > 0 {
        log::warn!(
            "{} journal record(s) could not be applied by path; run veilfs fsck --repair {}",
            done.unplaced,
            cfg.cipherdir.display()
        );
    }
    Journal::open(dir, &root).map_err(what)
}

/// Read-ahead window for the mount, in KiB. The kernel offers a FUSE mount
/// 128 KiB; 4 MiB keeps four 1 MiB reads in flight, so the backing disk
/// sees a queue instead of one stream (cold sequential reads 450 -> 615
/// MiB/s on the project's machine).
const READ_AHEAD_KIB: u32 = 4096;

/// Raises the mount's read-ahead window through sysfs. Only root may; for
/// anyone else the kernel's default stays, which is only slower.
fn raise_read_ahead(mountpoint: &Path) {
    let Some(dev) = mount_device(mountpoint) else {
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&knob, READ_AHEAD_KIB.to_string()) {
        Ok(()) => log::debug!("{knob} = {READ_AHEAD_KIB}"),
        Err(e) => log::debug!("cannot raise read-ahead ({knob}): {e}"),
    }
}

/// The `major:minor` of the veilfs mount on `mountpoint`, from
/// /proc/self/mountinfo (a stat of the mount point could wait on this very
/// daemon).
fn mount_device(mountpoint: &Path) -> Option<String> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let want = mountpoint.as_os_str().as_bytes();
    info.split(|&b| b == b'\n')
        .rev()
        .filter(|l| l.windows(14).any(|w| w == b" - fuse.veilfs"))
        .filter_map(|l| {
            let mut f = l.split(|&b| b == b' ');
            let dev = f.nth(2)?;
            let mp = f.nth(1)?;
            (unescape_mountinfo(mp) == want).then(|| String::from_utf8_lossy(dev).into_owned())
        })
        .next()
}

/// Unmounts through fusermount3 (which also works unprivileged). The
/// kernel writes back what it has cached before the mount goes, while this
/// daemon still serves it.
/// A busy mount (open files) is detached lazily: it disappears from the
/// namespace now and the daemon exits when the last file is closed.
pub fn unmount(mountpoint: &Path) -> bool {
    let run = |args: &[&str]| {
        std::process::Command::new("fusermount3")
            .args(args)
            .arg(mountpoint)
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if run(&["-u"]) {
        return true;
    }
    log::warn!("{} is busy; detaching it lazily", mountpoint.display());
    run(&["-uz"])
}

/// Unmounts only if nothing uses the mount: `fusermount3 -u`, never `-z`.
/// The kernel refuses (EBUSY) while a file is open or a process has its
/// working directory inside. Returns whether the mount is gone.
pub fn unmount_if_unused(mountpoint: &Path) -> bool {
    match std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(mountpoint)
        .stderr(std::process::Stdio::piped())
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            log::debug!(
                "fusermount3 -u {}: {}",
                mountpoint.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            false
        }
        Err(e) => {
            log::warn!("cannot run fusermount3: {e}");
            false
        }
    }
}

/// Whether `path` is currently a mount point (by /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.as_os_str().as_bytes();
    info.split(|&b| b == b'\n')
        .filter_map(|l| l.split(|&b| b == b' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == want)
}

/// Undoes the kernel's escaping of a mountinfo field: space, tab, newline
/// and backslash appear as `\ooo` octal escapes; every other byte,
/// including the bytes of a UTF-8 name, appears as is. Works on bytes, as
/// Linux paths are bytes.
fn unescape_mountinfo(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && let Some(digits) = s.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unescape_mountinfo;

    #[test]
    fn mountinfo_unescape_keeps_utf8_and_decodes_octal() {
        assert_eq!(
            unescape_mountinfo("/home/a/Chats/Müller".as_bytes()),
            "/home/a/Chats/Müller".as_bytes()
        );
        assert_eq!(unescape_mountinfo(br"/a\040b\011c\134d"), b"/a b\tc\\d");
        // An escape cut short at the end stays as is.
        assert_eq!(unescape_mountinfo(br"/a\04"), br"/a\04");
        assert_eq!(unescape_mountinfo(br"/a\999"), br"/a\999");
    }
}
