//! `veilfs export`: decrypt a vault's tree (or a subtree) into a plain
//! directory without FUSE, keeping modes, times, symlinks, extended
//! attributes and, for root, owners. The rescue path on a machine without
//! FUSE. Built on the [`crate::tree`] walker.
//!
//! Without `salvage` the first damaged name, directory or chunk stops the
//! export. With it, damaged chunks become zeros at their offsets (as
//! `cat --salvage`), entries that cannot be decrypted are skipped, and
//! every problem is listed in the report.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Stat, Timespec, Timestamps, XattrFlags};

use crate::offline::{Kind, Offline, OfflineError};
use crate::tree::{self, Control, Entry, Totals, Visitor};

/// Where an export stands, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportProgress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Called as an export goes.
pub type ProgressFn<'a> = Box<dyn FnMut(&ExportProgress) + 'a>;

pub struct ExportOptions<'a> {
    /// Created if missing; if it exists it must be an empty directory.
    pub dest: PathBuf,
    pub salvage: bool,
    pub progress: Option<ProgressFn<'a>>,
}

/// What an export did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ExportReport {
    pub dirs: u64,
    pub files: u64,
    pub symlinks: u64,
    pub special: u64,
    pub bytes: u64,
    /// Damage found (with salvage: worked around); each names the path.
    pub damaged: Vec<String>,
    /// What could not be carried over: sockets, devices (without root),
    /// attributes the destination does not support.
    pub skipped: Vec<String>,
}

impl ExportReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The destination cannot be used or written.
    #[error("{}: {error}", path.display())]
    Dest { path: PathBuf, error: io::Error },
    /// Reading the vault failed (a wrong `--path`, an I/O error).
    #[error("{0}")]
    Vault(OfflineError),
    /// Without salvage: the first damage, where the export stopped.
    #[error("{0}")]
    Damaged(OfflineError),
}

impl ExportError {
    pub fn is_corruption(&self) -> bool {
        match self {
            ExportError::Damaged(_) => true,
            ExportError::Vault(e) => e.is_corruption(),
            ExportError::Dest { .. } => false,
        }
    }
}

/// Exports the plaintext tree at `start` into `opts.dest`.
pub fn export(
    off: &Offline,
    start: &Path,
    mut opts: ExportOptions<'_>,
) -> Result<ExportReport, ExportError> {
    prepare_dest(&opts.dest)?;
    let mut totals = Totals::default();
    tree::walk(off, start, &mut totals).map_err(ExportError::Vault)?;
    let mut ex = Exporter {
        dest: opts.dest.clone(),
        salvage: opts.salvage,
        as_root: rustix::process::geteuid().is_root(),
        report: ExportReport::default(),
        progress: ExportProgress {
            files_total: totals.files,
            bytes_total: totals.bytes,
            ..ExportProgress::default()
        },
        on_progress: opts.progress.take(),
        dest_error: None,
        stopped: false,
    };
    let res = tree::walk(off, start, &mut ex);
    if let Some(e) = ex.dest_error.take() {
        return Err(e);
    }
    res.map_err(|e| {
        if ex.stopped {
            ExportError::Damaged(e)
        } else {
            ExportError::Vault(e)
        }
    })?;
    Ok(ex.report)
}

fn prepare_dest(dest: &Path) -> Result<(), ExportError> {
    let err = |error| ExportError::Dest {
        path: dest.to_path_buf(),
        error,
    };
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            if fs::read_dir(dest).map_err(err)?.next().is_some() {
                return Err(err(io::Error::other(
                    "exists and is not empty: export into a new or empty directory",
                )));
            }
            Ok(())
        }
        Ok(_) => Err(err(io::Error::other("exists and is not a directory"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new().mode(0o700).create(dest).map_err(err)
        }
        Err(e) => Err(err(e)),
    }
}

struct Exporter<'a> {
    dest: PathBuf,
    salvage: bool,
    as_root: bool,
    report: ExportReport,
    progress: ExportProgress,
    on_progress: Option<ProgressFn<'a>>,
    /// A destination error, which always ends the export.
    dest_error: Option<ExportError>,
    /// Stopped at damage (no salvage).
    stopped: bool,
}

/// Counts bytes written and reports progress every 4 MiB.
struct Counting<'p, 'a, W> {
    inner: W,
    progress: &'p mut ExportProgress,
    on_progress: &'p mut Option<ProgressFn<'a>>,
    since: u64,
}

impl<W: Write> Write for Counting<'_, '_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.bytes_done += n as u64;
        self.since += n as u64;
        if self.since >= 4 << 20 {
            self.since = 0;
            if let Some(cb) = self.on_progress.as_mut() {
                cb(self.progress);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    }
}

fn times_of(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: ts(st.st_atime, st.st_atime_nsec as i64),
        last_modification: ts(st.st_mtime, st.st_mtime_nsec as i64),
    }
}

impl Exporter<'_> {
    fn dest_path(&self, e: &Entry<'_>) -> PathBuf {
        if e.rel.as_os_str().is_empty() {
            self.dest.clone()
        } else {
            self.dest.join(e.rel)
        }
    }

    /// Records a destination error; the walk then stops.
    fn dest_failed(&mut self, path: &Path, error: io::Error) -> OfflineError {
        let shown = OfflineError::Io {
            path: path.display().to_string(),
            error: io::Error::new(error.kind(), error.to_string()),
        };
        self.dest_error = Some(ExportError::Dest {
            path: path.to_path_buf(),
            error,
        });
        shown
    }

    /// Copies the `user.*` attributes of the backing entry, decrypted.
    /// Attributes whose names do not decrypt are a sync client's or the
    /// system's, not the vault's: left behind.
    fn copy_xattrs(&mut self, off: &Offline, e: &Entry<'_>, dest: &Path) {
        let src = crate::store::xattr::entry_path(e.parent, e.name);
        let Ok(list) = crate::store::xattr::list_names(src.as_c_str()) else {
            return; // no attributes readable here
        };
        for raw in crate::store::xattr::names(&list) {
            let Ok(bname) = std::str::from_utf8(raw) else {
                continue;
            };
            let Ok((plain_name, version)) = off.names().decrypt_xattr_name(bname) else {
                continue;
            };
            let shown_name = format!("user.{}", String::from_utf8_lossy(&plain_name));
            let mut value = vec![0u8; 65536 + 64];
            let value = match rustix::fs::lgetxattr(src.as_c_str(), bname, &mut value[..]) {
                Ok(n) => {
                    value.truncate(n);
                    value
                }
                Err(err) => {
                    self.report
                        .skipped
                        .push(format!("{}: attribute {shown_name}: {err}", e.plain_path));
                    continue;
                }
            };
            let id = match version {
                crate::names::XattrVersion::V2 => crate::store::xattr::entry_id(src.as_c_str()),
                crate::names::XattrVersion::V1 => None,
            };
            let plain = match off
                .names()
                .decrypt_xattr_value(bname, version, id.as_ref(), value)
            {
                Ok(v) => v,
                Err(err) => {
                    self.report.damaged.push(format!(
                        "{}: extended attribute {shown_name} does not decrypt: {err}",
                        e.plain_path
                    ));
                    continue;
                }
            };
            let mut name = b"user.".to_vec();
            name.extend_from_slice(&plain_name);
            let name = std::ffi::OsStr::from_bytes(&name);
            if let Err(err) = rustix::fs::lsetxattr(dest, name, &plain, XattrFlags::empty()) {
                self.report.skipped.push(format!(
                    "{}: attribute {shown_name} not set on {}: {err}",
                    e.plain_path,
                    dest.display()
                ));
            }
        }
    }

    /// Owner (root only), mode, then times: in this order, because chown
    /// clears set-id bits and every change moves ctime only.
    fn finish(&mut self, e: &Entry<'_>, dest: &Path) -> io::Result<()> {
        let st = e.stat;
        if self.as_root {
            std::os::unix::fs::lchown(dest, Some(st.st_uid), Some(st.st_gid))?;
        }
        if e.kind != Kind::Symlink {
            fs::set_permissions(dest, fs::Permissions::from_mode(st.st_mode & 0o7777))?;
        }
        rustix::fs::utimensat(CWD, dest, &times_of(st), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    fn export_file(&mut self, off: &Offline, e: &Entry<'_>, dest: &Path) -> io::Result<()> {
        let file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest)?;
        let mut out = Counting {
            inner: BufWriter::with_capacity(1 << 20, file),
            progress: &mut self.progress,
            on_progress: &mut self.on_progress,
            since: 0,
        };
        let res = off.cat_at(e.parent, e.name, e.plain_path, &mut out, self.salvage);
        out.flush()?;
        let file = out.inner.into_inner().map_err(|e| e.into_error())?;
        match res {
            Ok(report) => {
                self.report.bytes += report.bytes;
                if let Some(why) = &report.header_error {
                    self.report.damaged.push(format!(
                        "{}: {why}; written as {} zero bytes",
                        e.plain_path, report.bytes
                    ));
                }
                for bad in &report.bad {
                    self.report.damaged.push(format!(
                        "{}: bytes {}..{}: {}; written as zeros",
                        e.plain_path, bad.bytes.start, bad.bytes.end, bad.reason
                    ));
                }
            }
            Err(OfflineError::Io { path, error }) if path == e.plain_path => {
                // Reading the backing file or writing the copy: which one
                // is not known here; both end the export.
                return Err(io::Error::new(error.kind(), format!("{path}: {error}")));
            }
            Err(err) => {
                drop(file);
                let _ = fs::remove_file(dest);
                return Err(io::Error::other(ExportVaultError(err)));
            }
        }
        file.sync_all()?;
        drop(file);
        self.report.files += 1;
        self.progress.files_done += 1;
        if let Some(cb) = self.on_progress.as_mut() {
            cb(&self.progress);
        }
        Ok(())
    }

    fn export_symlink(&mut self, off: &Offline, e: &Entry<'_>, dest: &Path) -> io::Result<bool> {
        let stored = crate::store::read_symlink_sealed(e.parent, e.name)?;
        // The IV of the directory holding it (the root keeps none).
        let iv = crate::store::read_dir_iv(e.parent).unwrap_or_else(|_| off.names().root_iv());
        match off.names().decrypt_symlink_target(&iv, &stored) {
            Ok(target) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), dest)?;
                self.report.symlinks += 1;
                Ok(true)
            }
            Err(err) => {
                self.report.damaged.push(format!(
                    "{}: symlink target does not decrypt: {err}",
                    e.plain_path
                ));
                Ok(false)
            }
        }
    }
}

/// A vault error met while exporting a file, carried through io::Error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ExportVaultError(OfflineError);

impl Visitor for Exporter<'_> {
    fn visit(&mut self, off: &Offline, e: &Entry<'_>) -> crate::offline::Result<bool> {
        let dest = self.dest_path(e);
        let res: io::Result<bool> = match e.kind {
            Kind::Dir => {
                if !e.rel.as_os_str().is_empty() {
                    // Private until its contents are in; mode and times at
                    // `leave`.
                    if let Err(err) = fs::DirBuilder::new().mode(0o700).create(&dest) {
                        return Err(self.dest_failed(&dest, err));
                    }
                }
                self.report.dirs += 1;
                return Ok(true);
            }
            Kind::File => self.export_file(off, e, &dest).map(|()| true),
            Kind::Symlink => self.export_symlink(off, e, &dest),
            Kind::Fifo => rustix::fs::mknodat(
                CWD,
                &dest,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .map(|()| {
                self.report.special += 1;
                true
            })
            .map_err(io::Error::from),
            Kind::CharDevice | Kind::BlockDevice if self.as_root => rustix::fs::mknodat(
                CWD,
                &dest,
                rustix::fs::FileType::from_raw_mode(e.stat.st_mode),
                rustix::fs::Mode::from_raw_mode(0o600),
                e.stat.st_rdev,
            )
            .map(|()| {
                self.report.special += 1;
                true
            })
            .map_err(io::Error::from),
            other => {
                self.report.skipped.push(format!(
                    "{}: {} is not exported{}",
                    e.plain_path,
                    other.describe(),
                    if matches!(other, Kind::CharDevice | Kind::BlockDevice) {
                        " (only root can create devices)"
                    } else {
                        ""
                    }
                ));
                Ok(false)
            }
        };
        match res {
            Ok(true) => {
                if e.kind != Kind::Symlink {
                    self.copy_xattrs(off, e, &dest);
                }
                if let Err(err) = self.finish(e, &dest) {
                    return Err(self.dest_failed(&dest, err));
                }
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(err) => match err.into_inner() {
                Some(inner) => match inner.downcast::<ExportVaultError>() {
                    // Damage that stops the export (no salvage) or an
                    // entry that is gone: a vault error.
                    Ok(v) => {
                        let v = v.0;
                        if self.problem(&v) == Control::Stop {
                            return Err(v);
                        }
                        Ok(false)
                    }
                    Err(other) => Err(self.dest_failed(&dest, io::Error::other(other))),
                },
                None => Err(self.dest_failed(&dest, io::Error::other("write failed"))),
            },
        }
    }

    fn leave(&mut self, off: &Offline, e: &Entry<'_>) -> crate::offline::Result<()> {
        let dest = self.dest_path(e);
        self.copy_xattrs(off, e, &dest);
        if let Err(err) = self.finish(e, &dest) {
            return Err(self.dest_failed(&dest, err));
        }
        Ok(())
    }

    fn problem(&mut self, error: &OfflineError) -> Control {
        if !self.salvage {
            self.stopped = true;
            return Control::Stop;
        }
        self.report.damaged.push(error.to_string());
        Control::Continue
    }
}
