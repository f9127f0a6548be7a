//! Rebuilding one entry after another under the new key (the walk's
//! visitor), and the helpers `veilfs encrypt` shares.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::content::ContentCipher;
use crate::cryptfile::ChunkWriter;
use crate::crypto::{self};
use crate::names::{DirIv, NameCipher, XATTR_ID_LEN, XATTR_ID_NAME, XattrVersion};
use crate::offline::{Kind, Offline, OfflineError};
use crate::store;
use crate::tree::{Control, Entry, Visitor};

use super::*;

/// One directory level: the old directory being emptied and its new
/// counterpart being filled.
pub(super) struct Level {
    pub(super) old: OwnedFd,
    pub(super) old_iv: Option<DirIv>,
    pub(super) new: OwnedFd,
    pub(super) new_iv: DirIv,
    /// The new directory's path below `veilfs.rekey.new` (backing names).
    pub(super) new_rel: String,
    /// Old entries rebuilt but not yet removed: removed once the new
    /// directory is fsync'd.
    pub(super) pending: Vec<CString>,
    /// Backing bytes of `pending`: the extra space in use.
    pub(super) pending_bytes: u64,
}

pub(super) struct Rekeyer<'a> {
    pub(super) dir: &'a Path,
    pub(super) root: &'a OwnedFd,
    pub(super) new_names: &'a NameCipher,
    pub(super) new_content: &'a ContentCipher,
    pub(super) stack: Vec<Level>,
    pub(super) links: HashMap<u64, String>,
    pub(super) links_file: File,
    pub(super) as_root: bool,
    pub(super) progress: RekeyProgress,
    pub(super) on_progress: Option<ProgressFn<'a>>,
    pub(super) report: &'a mut RekeyReport,
    pub(super) failure: Option<RekeyError>,
    pub(super) since: u64,
}

/// Entries rebuilt before their old forms are removed in one batch.
pub(super) const PENDING_MAX: usize = 256;
/// ... or as many backing bytes: the extra space a rekey needs is the
/// largest file plus this (well inside [`SPACE_MARGIN`]).
pub(super) const PENDING_BYTES: u64 = 32 << 20;

pub(crate) use crate::store::xattr::entry_path as proc_path;

pub(crate) fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    }
}

pub(crate) fn times_of(st: &rustix::fs::Stat) -> Timestamps {
    Timestamps {
        last_access: ts(st.st_atime, st.st_atime_nsec as i64),
        last_modification: ts(st.st_mtime, st.st_mtime_nsec as i64),
    }
}

/// Opens a directory for `*at()` calls, fsync, fchmod and listing.
pub(crate) fn open_dir<Fd: rustix::fd::AsFd>(
    parent: Fd,
    name: &CStr,
) -> std::result::Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The temporary name an entry is built under, in its new directory.
pub(crate) fn tmp() -> &'static CStr {
    c"veilfs.rekey.tmp"
}

pub(crate) fn unlink_quiet(dir: &OwnedFd, name: &CStr) -> Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(err(format!("removing {}: {e}", name.to_string_lossy()))),
    }
}

/// The vault's `user.*` attributes of a backing entry, decrypted with
/// `names`: (plaintext name without `user.`, value).
pub(super) fn read_xattrs(names: &NameCipher, path: &CStr) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let list = crate::store::xattr::list_names(path)
        .map_err(|e| err(format!("listing attributes: {e}")))?;
    let id = crate::store::xattr::entry_id(path);
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for raw in crate::store::xattr::names(&list) {
        let Ok(bname) = std::str::from_utf8(raw) else {
            continue;
        };
        let Ok((plain_name, version)) = names.decrypt_xattr_name(bname) else {
            continue; // not the vault's (a sync client's, the system's)
        };
        let mut value = vec![0u8; 65536 + 64];
        let len = rustix::fs::lgetxattr(path, bname, &mut value[..]).map_err(|e| {
            err(format!(
                "reading attribute user.{}: {e}",
                lossy(&plain_name)
            ))
        })?;
        value.truncate(len);
        let idref = match version {
            XattrVersion::V2 => id.as_ref(),
            XattrVersion::V1 => None,
        };
        let plain = names
            .decrypt_xattr_value(bname, version, idref, value)
            .map_err(|e| {
                err(format!(
                    "extended attribute user.{} does not decrypt: {e}",
                    lossy(&plain_name)
                ))
            })?;
        // A version-1 and a version-2 copy of one name (a crash while
        // upgrading): the version-2 one is the newer.
        if let Some(slot) = out.iter_mut().find(|(n, _)| *n == plain_name) {
            if version == XattrVersion::V2 {
                slot.1 = plain;
            }
        } else {
            out.push((plain_name, plain));
        }
    }
    Ok(out)
}

pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes `attrs` in version 2 under `names` onto the entry at `path`,
/// with its entry ID (an existing one is kept, so a redo is idempotent).
pub(crate) fn write_xattrs(
    names: &NameCipher,
    path: &CStr,
    attrs: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    if attrs.is_empty() {
        return Ok(());
    }
    let id: [u8; XATTR_ID_LEN] = match crate::store::xattr::entry_id(path) {
        Some(id) => id,
        None => {
            let id: [u8; XATTR_ID_LEN] = crypto::random::bytes();
            rustix::fs::lsetxattr(path, XATTR_ID_NAME, &id, XattrFlags::empty())
                .map_err(|e| err(format!("writing the entry ID: {e}")))?;
            id
        }
    };
    for (name, value) in attrs {
        let bname = names.encrypt_xattr_name(name);
        let sealed = names.encrypt_xattr_value(&bname, &id, value);
        rustix::fs::lsetxattr(path, bname.as_str(), &sealed, XattrFlags::empty())
            .map_err(|e| err(format!("writing attribute user.{}: {e}", lossy(name))))?;
    }
    Ok(())
}

impl Rekeyer<'_> {
    /// Records why the rekey stopped at `plain_path` (the walk reports only
    /// the returned error's path) and stops the walk.
    fn stopped(&mut self, plain_path: &str, cause: impl std::fmt::Display) -> OfflineError {
        let shown = if plain_path.is_empty() {
            "/"
        } else {
            plain_path
        };
        self.failure = Some(err(format!(
            "{}: {shown}: {cause}. The rekey stopped; the vault is half rekeyed and nothing is \
             lost: fix the cause, then run `veilfs rekey --resume {}`",
            self.dir.display(),
            self.dir.display()
        )));
        OfflineError::io(plain_path, io::Error::other("rekey stopped"))
    }

    pub(super) fn top(&self) -> &Level {
        self.stack.last().expect("inside the root")
    }

    pub(super) fn tick(&mut self, force: bool) {
        if (force || self.since >= 8 << 20)
            && let Some(cb) = self.on_progress.as_mut()
        {
            self.since = 0;
            cb(&self.progress);
        }
    }

    /// Makes the rebuilt entries of the top level durable, then removes
    /// their old forms.
    pub(super) fn flush(&mut self) -> Result<()> {
        let level = self.stack.last_mut().expect("inside the root");
        if level.pending.is_empty() {
            return Ok(());
        }
        // One syncfs makes every rebuilt entry of the batch durable (its
        // content, attributes and name): far cheaper than an fsync per
        // small file.
        rustix::fs::syncfs(&level.new).map_err(|e| err(format!("syncfs: {e}")))?;
        level.pending_bytes = 0;
        for name in level.pending.drain(..) {
            unlink_quiet(&level.old, &name)?;
        }
        Ok(())
    }

    pub(super) fn enter_dir(&mut self, off: &Offline, e: &Entry<'_>) -> Result<()> {
        let is_root = e.rel.as_os_str().is_empty();
        let (old, new, new_iv, new_rel) = if is_root {
            match rustix::fs::mkdirat(self.root, NEW_TREE, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(err(format!("creating {NEW_TREE}: {e}"))),
            }
            let new = open_dir(self.root, &store::cstr(NEW_TREE))
                .map_err(|e| err(format!("{NEW_TREE}: {e}")))?;
            rustix::fs::fsync(self.root).map_err(|e| err(format!("fsync: {e}")))?;
            let old = open_dir(self.root, c".").map_err(err)?;
            (old, new, self.new_names.root_iv(), String::new())
        } else {
            let plain = e.rel.file_name().expect("a named entry").as_bytes();
            let parent = self.top();
            let bn = self
                .new_names
                .backing_name(&parent.new_iv, plain)
                .map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
            store::write_long_record(&parent.new, &bn)
                .map_err(|x| err(format!("{}: long-name record: {x}", e.plain_path)))?;
            let name = store::cstr(bn.entry());
            match rustix::fs::mkdirat(&parent.new, &name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(x) => return Err(err(format!("{}: mkdir: {x}", e.plain_path))),
            }
            let new =
                open_dir(&parent.new, &name).map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
            // The new directory's IV file is written after the record of
            // the old directory's times, and nothing enters or leaves
            // either directory before it exists. So without an IV file
            // the old directory is untouched: (re)record its times; with
            // one and no record, an earlier run finished the directory
            // (times included) and removed the record.
            let new_iv = match read_new_dir_iv(&new) {
                Ok(iv) => iv,
                Err(Errno::NOENT) => {
                    record_times(&new, e.stat)
                        .map_err(|x| err(format!("{}: recording its times: {x}", e.plain_path)))?;
                    let iv = self.new_names.new_dir_iv(&parent.new_iv, plain);
                    store::write_dir_iv(&new, &iv)
                        .map_err(|x| err(format!("{}: writing its IV: {x}", e.plain_path)))?;
                    iv
                }
                Err(x) => return Err(err(format!("{}: reading its new IV: {x}", e.plain_path))),
            };
            rustix::fs::fsync(&new).map_err(|x| err(format!("fsync: {x}")))?;
            rustix::fs::fsync(&parent.new).map_err(|x| err(format!("fsync: {x}")))?;
            let old =
                open_dir(e.parent, e.name).map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
            let new_rel = if parent.new_rel.is_empty() {
                bn.entry().to_string()
            } else {
                format!("{}/{}", parent.new_rel, bn.entry())
            };
            (old, new, new_iv, new_rel)
        };
        let old_iv = off.dir_iv_of(&old, e.plain_path, is_root).ok();
        let attrs = read_xattrs(off.names(), &proc_path(&old, c"."))
            .map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
        write_xattrs(self.new_names, &proc_path(&new, c"."), &attrs)
            .map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
        self.stack.push(Level {
            old,
            old_iv,
            new,
            new_iv,
            new_rel,
            pending: Vec::new(),
            pending_bytes: 0,
        });
        self.report.dirs += 1;
        Ok(())
    }

    pub(super) fn leave_dir(&mut self, e: &Entry<'_>) -> Result<()> {
        self.flush()?;
        let is_root = e.rel.as_os_str().is_empty();
        let level = self.stack.pop().expect("inside a directory");
        // What is left in the old directory was never listed: its IV file
        // and copies, long-name and long-target records (rebuilt with the
        // entries), and foreign files (a sync client's), which move along.
        let mut names = Vec::new();
        {
            let d = store::open_dir_read(&level.old).map_err(err)?;
            let mut d = rustix::fs::Dir::read_from(&d).map_err(err)?;
            while let Some(ent) = d.read() {
                let ent = ent.map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
                let n = ent.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(n.to_vec());
                }
            }
        }
        for n in names {
            let record = n.ends_with(b".vln.name") || n.ends_with(b".vlink");
            let meta = n.starts_with(b"veilfs");
            let c = CString::new(n.clone()).expect("no NUL");
            if is_root {
                if record {
                    unlink_quiet(&level.old, &c)?;
                }
            } else if record || meta {
                unlink_quiet(&level.old, &c)?;
            } else {
                match rustix::fs::renameat_with(
                    &level.old,
                    &c,
                    &level.new,
                    &c,
                    RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => {}
                    Err(x) => {
                        return Err(err(format!(
                            "{}: moving the foreign file {} along: {x}",
                            e.plain_path,
                            lossy(&n)
                        )));
                    }
                }
            }
        }
        if is_root {
            return Ok(());
        }
        let st = e.stat;
        if self.as_root {
            rustix::fs::fchown(
                &level.new,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
            )
            .map_err(|x| err(format!("{}: chown: {x}", e.plain_path)))?;
        }
        rustix::fs::fchmod(&level.new, Mode::from_raw_mode(st.st_mode & 0o7777))
            .map_err(|x| err(format!("{}: chmod: {x}", e.plain_path)))?;
        let mut rec = [0u8; 24];
        if rustix::fs::fgetxattr(&level.new, TIMES_XATTR, &mut rec[..]) == Ok(24) {
            let n = |a: usize, b: usize| i64::from_be_bytes(rec[a..b].try_into().expect("8"));
            let m = |a: usize, b: usize| u32::from_be_bytes(rec[a..b].try_into().expect("4"));
            let times = Timestamps {
                last_modification: ts(n(0, 8), m(8, 12) as i64),
                last_access: ts(n(12, 20), m(20, 24) as i64),
            };
            // Times first, then the record: without the record the times
            // are final (see enter_dir).
            rustix::fs::futimens(&level.new, &times)
                .map_err(|x| err(format!("{}: times: {x}", e.plain_path)))?;
            rustix::fs::fsync(&level.new).map_err(|x| err(format!("fsync: {x}")))?;
            rustix::fs::fremovexattr(&level.new, TIMES_XATTR)
                .map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
        }
        rustix::fs::fsync(&level.new).map_err(|x| err(format!("fsync: {x}")))?;
        drop(level);
        let parent = self.top();
        match rustix::fs::unlinkat(&parent.old, e.name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(x) => Err(err(format!(
                "{}: removing the old directory: {x}",
                e.plain_path
            ))),
        }
    }

    pub(super) fn entry(&mut self, off: &Offline, e: &Entry<'_>) -> Result<()> {
        let plain = e.rel.file_name().expect("a named entry").as_bytes();
        let top = self.stack.last().expect("inside the root");
        let bn = self
            .new_names
            .backing_name(&top.new_iv, plain)
            .map_err(err)?;
        store::write_long_record(&top.new, &bn)
            .map_err(|x| err(format!("long-name record: {x}")))?;
        let final_name = store::cstr(bn.entry());
        let tmp = tmp();
        unlink_quiet(&top.new, tmp)?;
        let ino = e.stat.st_ino;
        let linked = e.stat.st_nlink > 1 || self.links.contains_key(&ino);
        // A further link of an entry already rebuilt: link the new one.
        if let Some(rel) = self.links.get(&ino) {
            let first = CString::new(format!("{NEW_TREE}/{rel}")).expect("no NUL");
            match rustix::fs::linkat(self.root, &first, &top.new, tmp, AtFlags::empty()) {
                Ok(()) => {
                    if e.kind == Kind::Symlink {
                        // A long target's record goes with every link.
                        copy_target_record(self.root, &first, &top.new)?;
                    }
                    self.install(&final_name, e.kind == Kind::File)?;
                    self.report.hard_links += 1;
                    return Ok(());
                }
                // Not durable before a crash: rebuild it anew.
                Err(Errno::NOENT) => {}
                Err(x) => return Err(err(format!("linking: {x}"))),
            }
        }
        let top = self.stack.last().expect("inside the root");
        let mut file: Option<File> = None;
        match e.kind {
            Kind::File => {
                let mut w = create_sealed(&top.new, tmp, self.new_content)?;
                off.cat_at(e.parent, e.name, e.plain_path, &mut w, false)
                    .map_err(err)?;
                let bytes = w.bytes;
                file = Some(w.finish().map_err(|x| err(format!("writing: {x}")))?);
                self.report.files += 1;
                self.report.bytes += bytes;
                self.progress.files_done += 1;
                self.progress.bytes_done += bytes;
                self.since += bytes;
            }
            Kind::Symlink => {
                let stored = store::read_symlink_sealed(e.parent, e.name)
                    .map_err(|x| err(format!("reading the symlink: {x}")))?;
                let iv = top.old_iv.ok_or_else(|| err("its directory has no IV"))?;
                let target = off
                    .names()
                    .decrypt_symlink_target(&iv, &stored)
                    .map_err(|x| err(format!("symlink target does not decrypt: {x}")))?;
                let st = self.new_names.store_symlink_target(&top.new_iv, &target);
                store::write_long_target_record(&top.new, &st)
                    .map_err(|x| err(format!("long target record: {x}")))?;
                rustix::fs::symlinkat(st.link(), &top.new, tmp)
                    .map_err(|x| err(format!("symlink: {x}")))?;
                self.report.symlinks += 1;
            }
            Kind::Dir => unreachable!("directories are entered"),
            _ => {
                rustix::fs::mknodat(
                    &top.new,
                    tmp,
                    rustix::fs::FileType::from_raw_mode(e.stat.st_mode),
                    Mode::from_raw_mode(0o600),
                    e.stat.st_rdev,
                )
                .map_err(|x| err(format!("mknod: {x}")))?;
                self.report.other += 1;
            }
        }
        let top = self.stack.last().expect("inside the root");
        let st = e.stat;
        if self.as_root {
            rustix::fs::chownat(
                &top.new,
                tmp,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|x| err(format!("chown: {x}")))?;
        }
        if e.kind != Kind::Symlink {
            rustix::fs::chmodat(
                &top.new,
                tmp,
                Mode::from_raw_mode(st.st_mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|x| err(format!("chmod: {x}")))?;
            let attrs = read_xattrs(off.names(), &proc_path(e.parent, e.name))?;
            if !attrs.is_empty() {
                write_xattrs(self.new_names, &proc_path(&top.new, tmp), &attrs)?;
            }
        }
        rustix::fs::utimensat(&top.new, tmp, &times_of(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|x| err(format!("times: {x}")))?;
        // Made durable with its batch (`flush`), before its old form goes.
        drop(file);
        self.install(&final_name, false)?;
        if linked {
            // Durable at its new name before the journal names it.
            let top = self.stack.last().expect("inside the root");
            rustix::fs::syncfs(&top.new).map_err(|x| err(format!("syncfs: {x}")))?;
            let rel = if top.new_rel.is_empty() {
                bn.entry().to_string()
            } else {
                format!("{}/{}", top.new_rel, bn.entry())
            };
            let line = format!("{ino} {rel}\n");
            self.links_file
                .write_all(line.as_bytes())
                .and_then(|()| self.links_file.sync_data())
                .map_err(|x| err(format!("{LINKS_FILE}: {x}")))?;
            self.links.insert(ino, rel);
        }
        Ok(())
    }

    /// Renames the temporary entry to its new name (replacing a copy left
    /// by an interrupted run) and, for a further hard link of a regular
    /// file, writes its link record (docs/FORMAT.md §1.1).
    pub(super) fn install(&mut self, final_name: &CStr, link_record: bool) -> Result<()> {
        let top = self.stack.last().expect("inside the root");
        rustix::fs::renameat(&top.new, tmp(), &top.new, final_name)
            .map_err(|x| err(format!("rename: {x}")))?;
        // Renaming a link onto the same inode does nothing: drop it.
        unlink_quiet(&top.new, tmp())?;
        if link_record {
            let fd = rustix::fs::openat(
                &top.new,
                final_name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|x| err(format!("opening the new link: {x}")))?;
            let st = store::stat_fd(&fd).map_err(err)?;
            let rec = self.new_names.link_record(st.st_ino, st.st_nlink);
            rustix::fs::fsetxattr(
                &fd,
                crate::names::LINK_RECORD_XATTR,
                &rec,
                XattrFlags::empty(),
            )
            .map_err(|x| err(format!("writing the link record: {x}")))?;
        }
        Ok(())
    }
}

impl Visitor for Rekeyer<'_> {
    fn visit(&mut self, off: &Offline, e: &Entry<'_>) -> crate::offline::Result<bool> {
        let res = if e.kind == Kind::Dir {
            if !e.rel.as_os_str().is_empty() && only_leftovers(e) {
                // An old directory whose entries have all moved and whose IV
                // file is gone already (a run killed while finishing it), or
                // one a crash left without an IV right after mkdir: it is
                // empty, so finish it here.
                let done = self.enter_dir(off, e).and_then(|()| self.leave_dir(e));
                return match done {
                    Ok(()) => Ok(false),
                    Err(x) => Err(self.stopped(e.plain_path, x)),
                };
            }
            self.enter_dir(off, e)
        } else {
            self.entry(off, e).and_then(|()| {
                let level = self.stack.last_mut().expect("inside the root");
                level.pending.push(e.name.to_owned());
                level.pending_bytes += e.stat.st_size as u64;
                if level.pending.len() >= PENDING_MAX || level.pending_bytes >= PENDING_BYTES {
                    self.flush()?;
                }
                self.tick(false);
                Ok(())
            })
        };
        match res {
            Ok(()) => Ok(true),
            Err(x) => Err(self.stopped(e.plain_path, x)),
        }
    }

    fn leave(&mut self, _off: &Offline, e: &Entry<'_>) -> crate::offline::Result<()> {
        match self.leave_dir(e) {
            Ok(()) => {
                self.tick(true);
                Ok(())
            }
            Err(x) => Err(self.stopped(e.plain_path, x)),
        }
    }

    fn problem(&mut self, _error: &OfflineError) -> Control {
        Control::Stop
    }
}

/// A new backing file `name` in `dir` (never replacing one, mode 0600
/// until its times and mode are set), to be filled as a stream of chunks
/// sealed under `content`.
pub(crate) fn create_sealed<'c>(
    dir: &OwnedFd,
    name: &CStr,
    content: &'c ContentCipher,
) -> Result<ChunkWriter<'c>> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|x| err(format!("creating: {x}")))?;
    Ok(ChunkWriter::new(File::from(fd), content))
}

/// The IV of a directory of the new generation. An IV file cut short by a
/// kill between its creation and its write (nothing is in the directory
/// yet then) is removed and reported as missing (`NOENT`).
pub(crate) fn read_new_dir_iv(dir: &OwnedFd) -> std::result::Result<DirIv, Errno> {
    match store::read_dir_iv(dir) {
        Ok(iv) => Ok(iv),
        Err(Errno::NOENT) => Err(Errno::NOENT),
        Err(e) => {
            let name = c"veilfs.diriv";
            match store::lstat_at(dir, name) {
                Ok(st)
                    if st.st_mode & libc::S_IFMT == libc::S_IFREG
                        && (st.st_size as usize) < crate::names::DIR_IV_LEN =>
                {
                    rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
                    Err(Errno::NOENT)
                }
                _ => Err(e),
            }
        }
    }
}

/// Copies the long-target record (docs/FORMAT.md §7) of the symlink at
/// `first` (a path below `root`) into `to`, if it has one.
pub(crate) fn copy_target_record(root: &OwnedFd, first: &CStr, to: &OwnedFd) -> Result<()> {
    let path = first.to_bytes();
    let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b"."[..], path),
    };
    let dir = CString::new(dir).expect("no NUL");
    let name = CString::new(name).expect("no NUL");
    let from = open_dir(root, &dir).map_err(|x| err(format!("linking: {x}")))?;
    store::copy_long_target_record(&from, &name, to)
        .map_err(|x| err(format!("copying the long target record: {x}")))
}

/// Records `st`'s times on the new directory `dir` ([`TIMES_XATTR`]).
pub(crate) fn record_times(dir: &OwnedFd, st: &rustix::fs::Stat) -> std::result::Result<(), Errno> {
    let mut rec = Vec::with_capacity(24);
    rec.extend_from_slice(&st.st_mtime.to_be_bytes());
    rec.extend_from_slice(&(st.st_mtime_nsec as u32).to_be_bytes());
    rec.extend_from_slice(&st.st_atime.to_be_bytes());
    rec.extend_from_slice(&(st.st_atime_nsec as u32).to_be_bytes());
    rustix::fs::fsetxattr(dir, TIMES_XATTR, &rec, XattrFlags::empty())?;
    rustix::fs::fsync(dir)
}

/// Whether the old directory `e` has no IV file and holds nothing but
/// metadata and records (nothing that could need its IV).
pub(super) fn only_leftovers(e: &Entry<'_>) -> bool {
    let Ok(dir) = open_dir(e.parent, e.name) else {
        return false;
    };
    match store::read_dir_iv(&dir) {
        Err(Errno::NOENT) => {}
        _ => return false,
    }
    let Ok(mut d) = rustix::fs::Dir::read_from(&dir) else {
        return false;
    };
    while let Some(Ok(ent)) = d.read() {
        let n = ent.file_name().to_bytes();
        let leftover = n == b"."
            || n == b".."
            || n.starts_with(b"veilfs")
            || n.ends_with(b".vln.name")
            || n.ends_with(b".vlink");
        if !leftover {
            return false;
        }
    }
    true
}
