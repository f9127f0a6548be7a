//! `veilfs encrypt`: encrypt an existing plaintext tree into a new vault,
//! keeping modes, times, symlinks, hard links and extended attributes.
//! Resumable: entries are built as `veilfs rekey` builds them (a temporary
//! name, then a rename that replaces what an interrupted run left), so a
//! rerun redoes what is not durable. With `remove_plaintext`, a plaintext
//! file is removed only after its ciphertext is durable (one `syncfs` per
//! batch), and nothing is ever followed: every access is `*at()` relative
//! to a directory descriptor with `O_NOFOLLOW`.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, Stat, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::content::ContentCipher;
use crate::names::{DirIv, NameCipher};
use crate::rekey::{
    RekeyError, TIMES_XATTR, create_sealed, err, open_dir, proc_path, record_times, times_of, tmp,
    ts, unlink_quiet, write_atomic, write_xattrs,
};
use crate::store;

/// Marks a vault an encryption is still filling (JSON: the source and
/// whether plaintext is removed). The mount refuses such a vault.
pub const STATE_FILE: &str = "veilfs.encrypt";
/// Source inode -> new path of hard-linked entries already encrypted.
pub const LINKS_FILE: &str = "veilfs.encrypt.links";

type Result<T> = std::result::Result<T, RekeyError>;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptState {
    pub plaindir: PathBuf,
    pub remove_plaintext: bool,
}

pub fn in_progress(cipherdir: &Path) -> bool {
    std::fs::symlink_metadata(cipherdir.join(STATE_FILE)).is_ok()
}

pub fn read_state(cipherdir: &Path) -> Result<Option<EncryptState>> {
    match std::fs::read_to_string(cipherdir.join(STATE_FILE)) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| err(format!("{}: {e}", cipherdir.join(STATE_FILE).display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(format!(
            "{}: {e}",
            cipherdir.join(STATE_FILE).display()
        ))),
    }
}

pub fn begin(cipherdir: &Path, state: &EncryptState) -> Result<()> {
    let text = serde_json::to_string_pretty(state).expect("serializable");
    write_atomic(cipherdir, STATE_FILE, text.as_bytes())
}

/// What an encryption did.
#[derive(Debug, Default, Clone, Copy)]
pub struct EncryptReport {
    pub entries: crate::rekey::EntryCounts,
    /// Extended attributes outside `user.` (not stored by veilfs).
    pub skipped_xattrs: u64,
}

/// Counts files and bytes of a plaintext tree, for the progress display.
pub fn count(plaindir: &Path) -> Result<(u64, u64)> {
    fn walk(dir: &OwnedFd, out: &mut (u64, u64)) -> Result<()> {
        for (name, st) in list(dir)? {
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    let d = open_dir(dir, &name).map_err(err)?;
                    walk(&d, out)?;
                }
                libc::S_IFREG => {
                    out.0 += 1;
                    out.1 += st.st_size as u64;
                }
                _ => {}
            }
        }
        Ok(())
    }
    let root = open_dir(rustix::fs::CWD, &cpath(plaindir)).map_err(|e| at(plaindir, e))?;
    let mut out = (0, 0);
    walk(&root, &mut out)?;
    Ok(out)
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL in a path")
}

fn at(p: &Path, e: impl std::fmt::Display) -> RekeyError {
    err(format!("{}: {e}", p.display()))
}

/// The entries of a directory, sorted by name, with their lstat.
fn list(dir: &OwnedFd) -> Result<Vec<(CString, Stat)>> {
    let rd = store::open_dir_read(dir).map_err(err)?;
    let mut d = rustix::fs::Dir::read_from(&rd).map_err(err)?;
    let mut out = Vec::new();
    while let Some(ent) = d.read() {
        let ent = ent.map_err(err)?;
        let n = ent.file_name();
        if n.to_bytes() == b"." || n.to_bytes() == b".." {
            continue;
        }
        match store::lstat_at(dir, n) {
            Ok(st) => out.push((n.to_owned(), st)),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(err(format!("{}: {e}", n.to_string_lossy()))),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Plain `user.*` attributes of an entry (the others are counted).
fn plain_xattrs(path: &CStr, skipped: &mut u64) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let list = crate::store::xattr::list_names(path)
        .map_err(|e| err(format!("listing attributes: {e}")))?;
    let mut out = Vec::new();
    for raw in crate::store::xattr::names(&list) {
        let Some(name) = raw.strip_prefix(b"user.") else {
            *skipped += 1;
            continue;
        };
        let mut v = vec![0u8; 65536];
        let k = rustix::fs::lgetxattr(path, raw, &mut v[..])
            .map_err(|e| err(format!("reading an attribute: {e}")))?;
        v.truncate(k);
        out.push((name.to_vec(), v));
    }
    Ok(out)
}

pub type ProgressFn<'a> = Box<dyn FnMut(u64, u64) + 'a>;

struct Encrypter<'a> {
    root: &'a OwnedFd,
    names: &'a NameCipher,
    content: &'a ContentCipher,
    remove: bool,
    as_root: bool,
    links: HashMap<u64, String>,
    links_file: File,
    report: EncryptReport,
    progress: Option<ProgressFn<'a>>,
    since: u64,
}

const BATCH: usize = 256;
const BATCH_BYTES: u64 = 32 << 20;

/// Encrypts (or goes on encrypting) `plaindir` into the vault at
/// `cipherdir`, then removes the state file.
pub fn run(
    cipherdir: &Path,
    plaindir: &Path,
    content: &ContentCipher,
    names: &NameCipher,
    remove_plaintext: bool,
    progress: Option<ProgressFn<'_>>,
) -> Result<EncryptReport> {
    let root = open_dir(rustix::fs::CWD, &cpath(cipherdir)).map_err(|e| at(cipherdir, e))?;
    let src = open_dir(rustix::fs::CWD, &cpath(plaindir)).map_err(|e| at(plaindir, e))?;
    let links_path = cipherdir.join(LINKS_FILE);
    let mut links = HashMap::new();
    if let Ok(t) = std::fs::read_to_string(&links_path) {
        for line in t.lines() {
            if let Some((i, r)) = line.split_once(' ')
                && let Ok(i) = i.parse::<u64>()
            {
                links.insert(i, r.to_string());
            }
        }
    }
    let links_file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&links_path)
        .map_err(|e| at(&links_path, e))?;
    let mut e = Encrypter {
        root: &root,
        names,
        content,
        remove: remove_plaintext,
        as_root: rustix::process::geteuid().is_root(),
        links,
        links_file,
        report: EncryptReport::default(),
        progress,
        since: 0,
    };
    let new_root = open_dir(&root, c".").map_err(err)?;
    e.dir(&src, &new_root, &names.root_iv(), "", plaindir)?;
    if let Some(cb) = e.progress.as_mut() {
        cb(e.report.entries.files, e.report.entries.bytes);
    }
    let report = e.report;
    drop(e);
    let _ = std::fs::remove_file(&links_path);
    std::fs::remove_file(cipherdir.join(STATE_FILE)).map_err(|e| at(cipherdir, e))?;
    rustix::fs::fsync(&root).map_err(|e| at(cipherdir, e))?;
    Ok(report)
}

/// One entry of a source directory and where it goes: the directories
/// on both sides, the new directory's IV, its plaintext and backing names,
/// its lstat, its backing path under the new root (for the link table)
/// and the path shown in messages.
#[derive(Clone, Copy)]
struct Item<'a> {
    src: &'a OwnedFd,
    new: &'a OwnedFd,
    iv: &'a DirIv,
    name: &'a CStr,
    final_name: &'a CStr,
    st: &'a Stat,
    rel: &'a str,
    path: &'a Path,
}

impl Encrypter<'_> {
    /// Encrypts the contents of the source directory `src` into `new`.
    fn dir(
        &mut self,
        src: &OwnedFd,
        new: &OwnedFd,
        iv: &DirIv,
        new_rel: &str,
        shown: &Path,
    ) -> Result<()> {
        let mut pending: Vec<CString> = Vec::new();
        let mut pending_bytes = 0u64;
        for (name, st) in list(src)? {
            let path = shown.join(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.to_bytes()),
            );
            let plain = name.to_bytes();
            let bn = self
                .names
                .backing_name(iv, plain)
                .map_err(|x| at(&path, x))?;
            store::write_long_record(new, &bn).map_err(|x| at(&path, x))?;
            let final_name = store::cstr(bn.entry());
            let rel = if new_rel.is_empty() {
                bn.entry().to_string()
            } else {
                format!("{new_rel}/{}", bn.entry())
            };
            let item = Item {
                src,
                new,
                iv,
                name: &name,
                final_name: &final_name,
                st: &st,
                rel: &rel,
                path: &path,
            };
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                self.subdir(item)?;
                continue;
            }
            self.entry(item).map_err(|x| at(&path, x))?;
            pending.push(name);
            pending_bytes += st.st_size as u64;
            if pending.len() >= BATCH || pending_bytes >= BATCH_BYTES {
                self.flush(src, new, &mut pending)?;
                pending_bytes = 0;
            }
        }
        self.flush(src, new, &mut pending)
    }

    /// Makes the batch durable, then (with `remove`) removes its plaintext.
    fn flush(&mut self, src: &OwnedFd, new: &OwnedFd, pending: &mut Vec<CString>) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        rustix::fs::syncfs(new).map_err(|e| err(format!("syncfs: {e}")))?;
        if self.remove {
            for n in pending.iter() {
                unlink_quiet(src, n)?;
            }
        }
        pending.clear();
        if let Some(cb) = self.progress.as_mut() {
            cb(self.report.entries.files, self.report.entries.bytes);
        }
        self.since = 0;
        Ok(())
    }

    fn subdir(&mut self, item: Item<'_>) -> Result<()> {
        match rustix::fs::mkdirat(item.new, item.final_name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(x) => return Err(at(item.path, x)),
        }
        let child = open_dir(item.new, item.final_name).map_err(|x| at(item.path, x))?;
        // As in rekey: the times record is written before the IV file, and
        // nothing enters the new directory or leaves the source one before
        // the IV file exists; with an IV file and no record, the directory
        // was finished by an earlier run.
        let child_iv = match crate::rekey::read_new_dir_iv(&child) {
            Ok(v) => v,
            Err(Errno::NOENT) => {
                record_times(&child, item.st).map_err(|x| at(item.path, x))?;
                let v = self.names.new_dir_iv(item.iv, item.name.to_bytes());
                store::write_dir_iv(&child, &v).map_err(|x| at(item.path, x))?;
                v
            }
            Err(x) => return Err(at(item.path, x)),
        };
        rustix::fs::fsync(&child).map_err(|x| at(item.path, x))?;
        rustix::fs::fsync(item.new).map_err(|x| at(item.path, x))?;
        let src_child = open_dir(item.src, item.name).map_err(|x| at(item.path, x))?;
        let attrs = plain_xattrs(
            &proc_path(&src_child, c"."),
            &mut self.report.skipped_xattrs,
        )
        .map_err(|x| at(item.path, x))?;
        write_xattrs(self.names, &proc_path(&child, c"."), &attrs).map_err(|x| at(item.path, x))?;
        self.dir(&src_child, &child, &child_iv, item.rel, item.path)?;
        if self.as_root {
            rustix::fs::fchown(
                &child,
                Some(rustix::fs::Uid::from_raw(item.st.st_uid)),
                Some(rustix::fs::Gid::from_raw(item.st.st_gid)),
            )
            .map_err(|x| at(item.path, x))?;
        }
        rustix::fs::fchmod(&child, Mode::from_raw_mode(item.st.st_mode & 0o7777))
            .map_err(|x| at(item.path, x))?;
        let mut rec = [0u8; 24];
        if rustix::fs::fgetxattr(&child, TIMES_XATTR, &mut rec[..]) == Ok(24) {
            let n = |a: usize, b: usize| i64::from_be_bytes(rec[a..b].try_into().expect("8"));
            let m = |a: usize, b: usize| u32::from_be_bytes(rec[a..b].try_into().expect("4"));
            let times = Timestamps {
                last_modification: ts(n(0, 8), m(8, 12) as i64),
                last_access: ts(n(12, 20), m(20, 24) as i64),
            };
            rustix::fs::futimens(&child, &times).map_err(|x| at(item.path, x))?;
            rustix::fs::fsync(&child).map_err(|x| at(item.path, x))?;
            rustix::fs::fremovexattr(&child, TIMES_XATTR).map_err(|x| at(item.path, x))?;
        }
        self.report.entries.dirs += 1;
        if self.remove {
            match rustix::fs::unlinkat(item.src, item.name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(x) => {
                    return Err(at(
                        item.path,
                        format!("removing the plaintext directory: {x}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn entry(&mut self, item: Item<'_>) -> Result<()> {
        let tmp = tmp();
        unlink_quiet(item.new, tmp)?;
        let ino = item.st.st_ino;
        // A link whose other names are already encrypted (and, with
        // remove_plaintext, gone from the folder) has nlink 1 by now.
        let linked = item.st.st_nlink > 1 || self.links.contains_key(&ino);
        if let Some(first) = self.links.get(&ino) {
            let first = store::cstr(first);
            match rustix::fs::linkat(self.root, &first, item.new, tmp, AtFlags::empty()) {
                Ok(()) => {
                    if item.st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                        crate::rekey::copy_target_record(self.root, &first, item.new)?;
                    }
                    rustix::fs::renameat(item.new, tmp, item.new, item.final_name).map_err(err)?;
                    unlink_quiet(item.new, tmp)?;
                    if item.st.st_mode & libc::S_IFMT == libc::S_IFREG {
                        let fd = rustix::fs::openat(
                            item.new,
                            item.final_name,
                            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(err)?;
                        let s = store::stat_fd(&fd).map_err(err)?;
                        let rec = self.names.link_record(s.st_ino, s.st_nlink);
                        rustix::fs::fsetxattr(
                            &fd,
                            crate::names::LINK_RECORD_XATTR,
                            &rec,
                            XattrFlags::empty(),
                        )
                        .map_err(err)?;
                    }
                    self.report.entries.hard_links += 1;
                    return Ok(());
                }
                Err(Errno::NOENT) => {}
                Err(x) => return Err(err(format!("linking: {x}"))),
            }
        }
        match item.st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {
                let fd = rustix::fs::openat(
                    item.src,
                    item.name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                    Mode::empty(),
                )
                .map_err(|x| err(format!("opening: {x}")))?;
                let mut w = create_sealed(item.new, tmp, self.content)?;
                let mut input = File::from(fd);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = input
                        .read(&mut buf)
                        .map_err(|x| err(format!("reading: {x}")))?;
                    if n == 0 {
                        break;
                    }
                    w.write_all(&buf[..n])
                        .map_err(|x| err(format!("writing: {x}")))?;
                    self.since += n as u64;
                    if self.since >= 8 << 20
                        && let Some(cb) = self.progress.as_mut()
                    {
                        self.since = 0;
                        cb(
                            self.report.entries.files,
                            self.report.entries.bytes + w.bytes,
                        );
                    }
                }
                let bytes = w.bytes;
                w.finish().map_err(|x| err(format!("writing: {x}")))?;
                self.report.entries.files += 1;
                self.report.entries.bytes += bytes;
            }
            libc::S_IFLNK => {
                let target = rustix::fs::readlinkat(item.src, item.name, Vec::new())
                    .map_err(|x| err(format!("reading the symlink: {x}")))?;
                let stored = self.names.store_symlink_target(item.iv, target.as_bytes());
                store::write_long_target_record(item.new, &stored).map_err(err)?;
                rustix::fs::symlinkat(stored.link(), item.new, tmp).map_err(err)?;
                self.report.entries.symlinks += 1;
            }
            _ => {
                rustix::fs::mknodat(
                    item.new,
                    tmp,
                    rustix::fs::FileType::from_raw_mode(item.st.st_mode),
                    Mode::from_raw_mode(0o600),
                    item.st.st_rdev,
                )
                .map_err(|x| err(format!("mknod: {x}")))?;
                self.report.entries.other += 1;
            }
        }
        let is_link = item.st.st_mode & libc::S_IFMT == libc::S_IFLNK;
        if self.as_root {
            rustix::fs::chownat(
                item.new,
                tmp,
                Some(rustix::fs::Uid::from_raw(item.st.st_uid)),
                Some(rustix::fs::Gid::from_raw(item.st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(err)?;
        }
        if !is_link {
            rustix::fs::chmodat(
                item.new,
                tmp,
                Mode::from_raw_mode(item.st.st_mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(err)?;
            let attrs = plain_xattrs(
                &proc_path(item.src, item.name),
                &mut self.report.skipped_xattrs,
            )?;
            write_xattrs(self.names, &proc_path(item.new, tmp), &attrs)?;
        }
        rustix::fs::utimensat(item.new, tmp, &times_of(item.st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(err)?;
        rustix::fs::renameat(item.new, tmp, item.new, item.final_name).map_err(err)?;
        unlink_quiet(item.new, tmp)?;
        if linked {
            rustix::fs::syncfs(item.new).map_err(err)?;
            self.links_file
                .write_all(format!("{ino} {}\n", item.rel).as_bytes())
                .and_then(|()| self.links_file.sync_data())
                .map_err(|x| err(format!("{LINKS_FILE}: {x}")))?;
            self.links.insert(ino, item.rel.to_string());
        }
        Ok(())
    }
}
