//! `veilfs mount` and `veilfs unmount`.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::daemon;
use super::{CliError, UnlockArgs, mount_opts};
use crate::fs::FsOptions;
use crate::fs::mount::{self, MountConfig};
use crate::vault::{self, LockKind, UnlockedVault, VaultLock};

#[derive(Debug, Args)]
pub struct MountArgs {
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// Stay in the foreground and log to stderr (default: return once the
    /// mount is ready and log to syslog).
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount read-only.
    #[arg(long)]
    pub ro: bool,
    /// Let other users access the mount (the kernel checks file modes).
    #[arg(long)]
    pub allow_other: bool,
    /// Threads serving FUSE requests, 1 to 64. One is fastest for the
    /// usual one or two apps on a small machine (no hand-off between
    /// threads; fsync runs on helper threads so it never holds other
    /// requests up); more help many apps doing cold reads in parallel on a
    /// machine with many cores.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = parse_threads)]
    pub threads: usize,
    /// Seconds the kernel may cache names and attributes, 0 to 3600. Keep
    /// it short when a sync client changes CIPHERDIR while it is mounted.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS", value_parser = parse_attr_timeout)]
    pub attr_timeout: f64,
    /// Send every write straight to the daemon instead of letting the
    /// kernel cache and batch them. Slower small writes; write errors such
    /// as a full disk show up at write() rather than at fsync() or close(),
    /// and a sync client's in-place change to a file that is open shows up
    /// at once rather than after it is closed.
    #[arg(long)]
    pub no_writeback_cache: bool,
    /// Microseconds the serving thread stays awake after answering a
    /// request, watching for the next one, instead of going to sleep at
    /// once, 0 to 1000. Saves a wake-up per request for programs that send
    /// them one after another (ls -l, rm -rf, tar, SQLite), for at most
    /// this much CPU time per request. 0 turns it off. Only with more than
    /// one CPU; over /dev/fuse only with --threads 1, over io_uring for
    /// each ring thread.
    #[arg(long, default_value_t = 50, value_name = "MICROSECONDS", value_parser = parse_linger_us)]
    pub linger_us: u64,
    /// Unmount after DURATION (90s, 15m, 1h) without any request, never
    /// while a file or directory is open or a process works inside. Time
    /// asleep (suspend) counts.
    #[arg(long, value_name = "DURATION", value_parser = mount_opts::duration_arg)]
    pub idle: Option<Duration>,
    /// Serve the kernel's requests over io_uring when the kernel offers it
    /// (Linux 6.14+, with the fuse module's enable_uring parameter on: as
    /// root, echo Y > /sys/module/fuse/parameters/enable_uring). Cold 4 KiB
    /// random reads run about a third faster, creating, listing and
    /// deleting many small files take 15-50 % less time; sequential and
    /// 4 KiB random writes lose 7-12 %. Without it, or
    /// when the kernel does not offer it (the log says why), requests go
    /// through /dev/fuse.
    #[arg(long)]
    pub io_uring: bool,
    /// Mount even if MOUNTPOINT is not empty (its files are hidden while
    /// mounted).
    #[arg(long)]
    pub nonempty: bool,
    /// Mount options, comma-separated, as in fstab: ro, allow_other,
    /// nonempty, io_uring, idle=DURATION, passfile=FILE, keyfile=FILE, extpass=CMD,
    /// nodev, nosuid, noexec; nofail, x-systemd.* and mount(8)'s generic
    /// options are accepted and ignored. Anything else is an error.
    #[arg(short = 'o', value_name = "OPTS")]
    pub options: Vec<String>,
    /// Set by `-o nodev`, `-o nosuid`, `-o noexec`.
    #[arg(skip)]
    pub kernel: KernelFlags,
    /// Internal: this process is the background daemon; the key arrives on
    /// fd 3 and readiness is reported on fd 4.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
    /// The vault directory (what the sync client sees).
    pub cipherdir: PathBuf,
    /// Where the plaintext view appears.
    pub mountpoint: PathBuf,
}

/// Parses a number and checks it is within `lo..=hi`, naming the range
/// in the error (clap prints it with the option's name, exit code 2).
fn in_range<T>(s: &str, lo: T, hi: T, unit: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let v: T = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number; the allowed range is {lo} to {hi}{unit}"))?;
    // `!(a <= b)` rather than `a > b`: NaN is outside every range.
    if !(lo <= v && v <= hi) {
        return Err(format!(
            "{v} is outside the allowed range {lo} to {hi}{unit}"
        ));
    }
    Ok(v)
}

fn parse_threads(s: &str) -> Result<usize, String> {
    in_range(s, 1, MAX_THREADS, " threads")
}

fn parse_attr_timeout(s: &str) -> Result<f64, String> {
    in_range(s, 0.0, MAX_ATTR_TIMEOUT_SECS, " seconds")
}

fn parse_linger_us(s: &str) -> Result<u64, String> {
    in_range(s, 0, MAX_LINGER_US, " microseconds")
}

/// Most FUSE worker threads `--threads` accepts.
pub const MAX_THREADS: usize = 64;
/// Longest `--attr-timeout`, in seconds.
pub const MAX_ATTR_TIMEOUT_SECS: f64 = 3600.0;
/// Longest `--linger-us`: beyond a millisecond the thread burns CPU for
/// requests that are not coming.
pub const MAX_LINGER_US: u64 = 1000;

/// Mount flags with no command-line switch of their own.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelFlags {
    pub no_dev: bool,
    pub no_suid: bool,
    pub no_exec: bool,
}

fn canonical(path: &Path, what: &str) -> Result<PathBuf, CliError> {
    path.canonicalize()
        .map_err(|e| CliError::Other(format!("{what} {}: {e}", path.display())))
}

impl MountArgs {
    /// Folds the `-o` options into the other fields.
    pub fn apply_mount_options(&mut self) -> Result<(), CliError> {
        if self.options.is_empty() {
            return Ok(());
        }
        let o = mount_opts::parse(&self.options)?;
        self.ro |= o.ro;
        self.allow_other |= o.allow_other;
        self.nonempty |= o.nonempty;
        self.io_uring |= o.io_uring;
        self.kernel.no_dev |= o.no_dev;
        self.kernel.no_suid |= o.no_suid;
        self.kernel.no_exec |= o.no_exec;
        if o.idle.is_some() {
            self.idle = o.idle;
        }
        let from_options = o.passfile.is_some() || o.key_file.is_some() || o.extpass.is_some();
        if from_options {
            let u = &self.unlock;
            if u.passfile.is_some() || u.key_file.is_some() || u.extpass.is_some() || u.key {
                return Err(CliError::Usage(
                    "the secret is given twice: by an unlock option and by -o passfile=, keyfile= or extpass="
                        .into(),
                ));
            }
            self.unlock.passfile = o.passfile;
            self.unlock.key_file = o.key_file;
            self.unlock.extpass = o.extpass;
        }
        self.options.clear();
        Ok(())
    }

    fn config(&self, cipherdir: PathBuf, mountpoint: PathBuf) -> MountConfig {
        MountConfig {
            cipherdir,
            journal_dir: None,
            mountpoint,
            allow_other: self.allow_other,
            idle: self.idle,
            notify_systemd: self.foreground,
            no_dev: self.kernel.no_dev,
            no_suid: self.kernel.no_suid,
            no_exec: self.kernel.no_exec,
            threads: self.threads,
            io_uring: self.io_uring,
            fs: FsOptions {
                read_only: self.ro,
                ttl: std::time::Duration::from_secs_f64(self.attr_timeout),
                writeback_cache: !self.no_writeback_cache,
                kernel_checks_permissions: self.allow_other,
                linger: std::time::Duration::from_micros(self.linger_us),
                ..FsOptions::default()
            },
        }
    }

    /// The arguments the background daemon is started with.
    fn daemon_args(&self, cipherdir: &Path, mountpoint: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["mount".into(), "--daemon-child".into()];
        a.push(format!("--threads={}", self.threads).into());
        a.push(format!("--attr-timeout={}", self.attr_timeout).into());
        a.push(format!("--linger-us={}", self.linger_us).into());
        if self.ro {
            a.push("--ro".into());
        }
        if self.allow_other {
            a.push("--allow-other".into());
        }
        if self.no_writeback_cache {
            a.push("--no-writeback-cache".into());
        }
        if self.io_uring {
            a.push("--io-uring".into());
        }
        if self.nonempty {
            a.push("--nonempty".into());
        }
        if let Some(idle) = self.idle {
            a.push(format!("--idle={}ms", idle.as_millis()).into());
        }
        let k = self.kernel;
        let flags: Vec<&str> = [
            (k.no_dev, "nodev"),
            (k.no_suid, "nosuid"),
            (k.no_exec, "noexec"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if !flags.is_empty() {
            a.push(format!("-o{}", flags.join(",")).into());
        }
        a.push("--".into());
        a.push(cipherdir.into());
        a.push(mountpoint.into());
        a
    }
}

fn serve(
    cfg: &MountConfig,
    vault: &UnlockedVault,
    ready: Option<std::os::fd::OwnedFd>,
) -> Result<(), CliError> {
    let mut cfg = cfg.clone();
    if cfg.fs.read_only {
        // A read-only mount does not replay the journal: say so if a crash
        // left something in it.
        if let Ok(dir) =
            crate::cryptfile::journal::journal_dir(&cfg.cipherdir, &vault.master.key_id())
            && crate::cryptfile::journal::read_records(&dir).is_ok_and(|r| !r.is_empty())
        {
            log::warn!(
                "a crash left chunk rewrites in the journal {}; a read-only mount does not replay them (chunks they cover may read as EIO): mount read-write once, or run veilfs fsck --repair",
                dir.display()
            );
        }
    } else {
        cfg.journal_dir = Some(
            crate::cryptfile::journal::journal_dir(&cfg.cipherdir, &vault.master.key_id())
                .map_err(|e| {
                    CliError::Other(format!(
                        "finding the rewrite journal of {}: {e}",
                        cfg.cipherdir.display()
                    ))
                })?,
        );
    }
    let (content, names) = vault.ciphers();
    mount::serve(&cfg, content, names, ready)
        .map_err(|e| CliError::Other(format!("mounting on {}: {e}", cfg.mountpoint.display())))
}

/// The vault's exclusive lock, held for the life of the mount: one live
/// mount per vault, and no fsck or passwd behind its back.
fn lock_for_mount(cipherdir: &Path) -> Result<Option<VaultLock>, CliError> {
    super::lock_vault(
        cipherdir,
        LockKind::Exclusive,
        "a vault has one live mount at a time (two would overwrite each other's changes)",
    )
}

pub fn run(mut args: MountArgs) -> Result<(), CliError> {
    args.apply_mount_options()?;
    // Before any key is read or derived: no core dump may hold it.
    if let Err(e) = daemon::forbid_core_dumps() {
        log::warn!("cannot disable core dumps of the mount process: {e}");
    }
    let cipherdir = canonical(&args.cipherdir, "vault directory")?;
    let mountpoint = canonical(&args.mountpoint, "mount point")?;
    if args.daemon_child {
        let key = daemon::read_key_from_fd().map_err(|e| {
            CliError::Other(format!("daemon: reading the key from the parent: {e}"))
        })?;
        let ready = daemon::ready_fd();
        // The parent checked the lock; another mount may have taken it
        // since. The parent prints what is written to the pipe.
        let _lock = match lock_for_mount(&cipherdir) {
            Ok(lock) => lock,
            Err(e) => {
                let mut r = std::fs::File::from(ready);
                let _ = writeln!(r, "{e}");
                return Err(e);
            }
        };
        let vault = vault::unlock_with_key(&cipherdir, key)?;
        return serve(
            &args.config(cipherdir, mountpoint.clone()),
            &vault,
            Some(ready),
        );
    }
    if !mountpoint.is_dir() {
        return Err(CliError::Other(format!(
            "mount point {} is not a directory: create it with mkdir first",
            mountpoint.display()
        )));
    }
    if mount::is_mounted(&mountpoint) {
        return Err(CliError::Other(format!(
            "{} is already a mount point: unmount it first (fusermount3 -u {})",
            mountpoint.display(),
            mountpoint.display()
        )));
    }
    if !args.nonempty
        && let Some(entry) = std::fs::read_dir(&mountpoint)
            .map_err(|e| CliError::Other(format!("mount point {}: {e}", mountpoint.display())))?
            .next()
    {
        let name = entry
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(CliError::Other(format!(
            "mount point {} is not empty (it holds {name:?}, for one): the mount would hide \
             its files; choose an empty directory, or pass --nonempty to mount over them anyway",
            mountpoint.display()
        )));
    }
    if mountpoint.starts_with(&cipherdir) {
        return Err(CliError::Usage(format!(
            "the mount point {} is inside the vault directory {}: choose a directory outside it",
            mountpoint.display(),
            cipherdir.display()
        )));
    }
    // Before the password prompt; a foreground mount holds it until it
    // exits, a background one hands over to the daemon, which takes it.
    let lock = lock_for_mount(&cipherdir)?;
    let vault = args.unlock.unlock(&cipherdir)?;
    if args.foreground {
        return serve(&args.config(cipherdir, mountpoint), &vault, None);
    }
    drop(lock);
    daemon::spawn_daemon(&vault.master, &args.daemon_args(&cipherdir, &mountpoint)).map_err(
        |e| {
            CliError::Other(format!(
                "mounting {} on {}: {e}",
                cipherdir.display(),
                mountpoint.display()
            ))
        },
    )?;
    super::say!(
        "veilfs: {} mounted on {}",
        cipherdir.display(),
        mountpoint.display()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// The mount point to unmount (same as `fusermount3 -u MOUNTPOINT`).
    pub mountpoint: PathBuf,
}

pub fn run_unmount(args: UnmountArgs) -> Result<(), CliError> {
    if !mount::is_mounted(&args.mountpoint) {
        return Err(CliError::Other(format!(
            "{} is not mounted",
            args.mountpoint.display()
        )));
    }
    let status = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(&args.mountpoint)
        .status()
        .map_err(|e| {
            CliError::Other(format!(
                "running fusermount3: {e} (install the fuse3 package)"
            ))
        })?;
    if !status.success() {
        return Err(CliError::Other(format!(
            "fusermount3 -u {} failed: files may still be open; close them, or detach lazily with fusermount3 -uz",
            args.mountpoint.display()
        )));
    }
    Ok(())
}

/// Whether a command line wants syslog rather than stderr logging: the
/// background daemon has no stderr.
pub fn logs_to_syslog(args: &MountArgs) -> bool {
    args.daemon_child
}
