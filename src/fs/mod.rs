//! The FUSE frontend: turns kernel requests into backing-store operations
//! with encrypted names and content.
//!
//! Invariants:
//! - Every backing access is `*at()` relative to a directory descriptor,
//!   with `O_NOFOLLOW` (see `store`).
//! - No handler panics on bad input; every error becomes an errno.
//! - A file's content lock (`Node::data`) is held shared by reads and
//!   exclusively by writes and truncation, so no reader sees a torn chunk.
//!
//! Layout, one family of requests per file, each an `impl VeilFs` block
//! (as gocryptfs's `fusefrontend`): `file.rs`, `dir.rs`, `attr.rs`,
//! `xattr.rs`; `locate.rs` says where a node lives in the backing store;
//! `serve.rs` how every request is answered (`VeilFs::answer`: the
//! read-only guard, the reply, the linger) and the helper threads. This
//! file holds `VeilFs`, lookup, `attr()` and the `impl Filesystem` that
//! dispatches. The submodules `use super::*`: they share this file's
//! imports and private helpers.

mod attr;
mod conflicts;
mod dir;
mod durable;
mod file;
pub mod idle;
mod locate;
pub mod mount;
pub mod node;
mod options;
mod serve;
mod xattr;

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use lru::LruCache;
use rustix::fs::{Access, AtFlags, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid, openat};
use rustix::io::Errno as SysErrno;

use crate::content::{ContentCipher, FileHeader};
use crate::cryptfile::journal::Journal;
use crate::cryptfile::{CryptFile, CryptFileError};
use crate::names::{
    self, BackingName, DirIv, NameCipher, XATTR_ID_LEN, XATTR_ID_NAME, XattrVersion,
};
use crate::reclaim::Reclaimer;
use crate::store::{self, cstr};
use dir::symlink_plain_len;
use file::{STREAMING_WRITE, kill_suid_sgid};
use locate::{backing_path, child_backing_path, log_content_error, log_name};
use node::{FileData, Location, Node, NodeTable};
use serve::{Effect::*, Helpers};
use xattr::reply_xattr;

pub use options::FsOptions;

/// An open regular file.
struct Handle {
    node: Arc<Node>,
    fd: Arc<OwnedFd>,
    append: bool,
}

/// An open directory: its listing, taken at offset 0.
struct DirHandle {
    entries: Vec<(u64, FileType, OsString, String)>,
}

fn errno(e: SysErrno) -> Errno {
    Errno::from_i32(e.raw_os_error())
}

fn kind_of(st: &Stat) -> FileType {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn kind_of_dirent(t: rustix::fs::FileType) -> FileType {
    use rustix::fs::FileType as T;
    match t {
        T::Directory => FileType::Directory,
        T::Symlink => FileType::Symlink,
        T::Fifo => FileType::NamedPipe,
        T::Socket => FileType::Socket,
        T::CharacterDevice => FileType::CharDevice,
        T::BlockDevice => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs((-sec) as u64) + Duration::from_nanos(nsec as u64)
    }
}

pub struct VeilFs {
    content: ContentCipher,
    names: NameCipher,
    opts: FsOptions,
    root_fd: Arc<OwnedFd>,
    root_backing_ino: u64,
    nodes: NodeTable,
    dir_fds: Mutex<LruCache<u64, Arc<OwnedFd>>>,
    handles: RwLock<HashMap<u64, Arc<Handle>>>,
    dir_handles: Mutex<HashMap<u64, DirHandle>>,
    next_fh: AtomicU64,
    /// Whether new entries must be chowned to the caller (root daemon).
    chown_new: bool,
    /// Sync-client conflict copies seen while listing (docs/FORMAT.md §8).
    conflicts: conflicts::ConflictTable,
    /// Where fsync runs, so a long disk flush never holds up the thread
    /// that serves every other request.
    flushers: Helpers,
    /// Where streaming reads are decrypted (see `do_read`).
    readers: Helpers,
    /// Where deleted files' blocks are freed (see `do_unlink`).
    reclaimer: Reclaimer,
    /// Where new directories' IV files are flushed (see `durable`).
    ivs: durable::IvSyncer,
    /// The session's /dev/fuse descriptor, set once the session exists and
    /// only when one thread serves it (see `linger`).
    fuse_device: Arc<OnceLock<OwnedFd>>,
    /// Where chunk rewrites are recorded first (crate::cryptfile::journal); off on a
    /// read-only mount.
    journal: Journal,
    /// Requests and open handles, for `--idle`.
    activity: Arc<idle::Activity>,
}

type Res<T> = Result<T, Errno>;

impl VeilFs {
    /// Opens the backing root. `root` must be the vault's CIPHERDIR.
    pub fn new(
        root: &std::path::Path,
        content: ContentCipher,
        names: NameCipher,
        opts: FsOptions,
        journal: Journal,
    ) -> std::io::Result<Self> {
        let root_fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = store::stat_fd(&root_fd)?;
        let root_node = Arc::new(Node::new(INodeNo::ROOT.0, true, None));
        let _ = root_node.dir_iv.set(names.root_iv());
        // A quarter of the descriptor limit at most: the rest is for open
        // files, so a low limit never turns into EMFILE for mkdir or open.
        let cap = opts.dir_fd_cache.min(store::open_files_limit() / 4);
        let cap = std::num::NonZeroUsize::new(cap.max(16)).unwrap();
        Ok(VeilFs {
            content,
            names,
            root_fd: Arc::new(root_fd),
            root_backing_ino: st.st_ino,
            nodes: NodeTable::new(root_node),
            dir_fds: Mutex::new(LruCache::new(cap)),
            handles: RwLock::new(HashMap::new()),
            dir_handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            chown_new: rustix::process::geteuid().is_root(),
            conflicts: Default::default(),
            flushers: Helpers::new("fsync", 2),
            readers: Helpers::new("read", 2),
            reclaimer: Reclaimer::new(),
            // Like the reclaimer's pinned files: a share of the descriptor
            // limit (see `dir_fd_cache` above).
            ivs: durable::IvSyncer::new((store::open_files_limit() / 16).clamp(2, 64) as u64)?,
            fuse_device: Arc::new(OnceLock::new()),
            journal,
            activity: Arc::default(),
            opts,
        })
    }

    /// Where the mount puts the session's /dev/fuse descriptor once the
    /// session is created (the session owns this `VeilFs` by then).
    pub fn fuse_device_slot(&self) -> Arc<OnceLock<OwnedFd>> {
        self.fuse_device.clone()
    }

    /// The request and open-handle counters `--idle` watches.
    pub fn activity(&self) -> Arc<idle::Activity> {
        self.activity.clone()
    }

    /// Backing inode number → FUSE inode number. The root must be 1, so
    /// the root's backing number and 1 swap places; all else is identity,
    /// which keeps inode numbers stable for the life of the mount.
    fn fuse_ino(&self, backing: u64) -> u64 {
        if backing == self.root_backing_ino {
            INodeNo::ROOT.0
        } else if backing == INodeNo::ROOT.0 {
            self.root_backing_ino
        } else {
            backing
        }
    }

    /// See [`Node::generation_after_lookup`]; without the writeback cache
    /// the kernel revalidates sizes itself and the generation stays 0.
    fn lookup_generation(&self, node: &Node, st: &Stat) -> u64 {
        if self.opts.writeback_cache {
            let plain = self.content.layout().plain_size(st.st_size as u64);
            node.generation_after_lookup(st, plain)
        } else {
            0
        }
    }

    /// The generation of a known inode, for replies that hand it out again.
    fn generation_of(&self, ino: u64) -> Generation {
        Generation(self.nodes.get(ino).map_or(0, |n| n.current_generation()))
    }

    fn node(&self, ino: INodeNo) -> Res<Arc<Node>> {
        self.nodes.get(ino.0).ok_or(Errno::ENOENT)
    }

    /// Looks up `name`, registering one kernel reference to the result.
    fn do_lookup(&self, parent: &Arc<Node>, name: &OsStr) -> Res<(Arc<Node>, Stat)> {
        let (pfd, _, b) = self.child(parent, name)?;
        let st = match store::lstat_at(&*pfd, cstr(b.entry()).as_c_str()) {
            Ok(st) => st,
            // Perhaps the display name of a sync-client conflict copy.
            Err(SysErrno::NOENT) => return self.lookup_conflict(parent, &pfd, name),
            Err(e) => return Err(errno(e)),
        };
        Ok((self.remember(parent, &st, b, name.as_bytes()), st))
    }

    fn remember(
        &self,
        parent: &Arc<Node>,
        st: &Stat,
        backing: BackingName,
        plain: &[u8],
    ) -> Arc<Node> {
        let ino = self.fuse_ino(st.st_ino);
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        self.nodes.remember(
            ino,
            is_dir,
            Location {
                parent: parent.clone(),
                backing,
                plain: plain.into(),
            },
        )
    }

    /// Gives a new entry to the requesting user, as ext4 does, when the
    /// daemon runs as root on behalf of others (allow_other).
    fn chown_to_caller(&self, req: &Request, pfd: &OwnedFd, entry: &CString) -> Res<()> {
        if !self.chown_new || (req.uid() == 0 && req.gid() == 0) {
            return Ok(());
        }
        // A setgid parent passes its group on, as on ext4.
        let gid = match store::stat_fd(pfd) {
            Ok(p) if p.st_mode & libc::S_ISGID != 0 => p.st_gid,
            _ => req.gid(),
        };
        rustix::fs::chownat(
            pfd,
            entry.as_c_str(),
            Some(rustix::fs::Uid::from_raw(req.uid())),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno)
    }

    fn reply_new_entry(
        &self,
        parent: &Arc<Node>,
        pfd: &OwnedFd,
        b: BackingName,
        name: &OsStr,
    ) -> Res<(FileAttr, Arc<Node>)> {
        let st = store::lstat_at(pfd, cstr(b.entry()).as_c_str()).map_err(errno)?;
        let node = self.remember(parent, &st, b, name.as_bytes());
        Ok((self.attr(node.ino, &st), node))
    }

    /// Replies with a new entry's attributes.
    fn entry(&self, reply: ReplyEntry, attr: FileAttr) {
        reply.entry(&self.opts.ttl, &attr, self.generation_of(attr.ino.0));
    }

    fn parent_ino(&self, node: &Node) -> u64 {
        node.parent_and_entry()
            .map(|(p, _)| p.ino)
            .unwrap_or(INodeNo::ROOT.0)
    }
}

impl Filesystem for VeilFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let mut wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_AUTO_INVAL_DATA
            // The daemon clears setuid/setgid itself on write (the kernel
            // flags the WRITE) and on truncating open; in exchange the
            // kernel stops asking for `security.capability` before every
            // write() call, one round trip each (SB_NOSEC).
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2;
        if self.opts.writeback_cache {
            wanted |= InitFlags::FUSE_WRITEBACK_CACHE;
        }
        for flag in wanted.iter() {
            if let Err(unsupported) = config.add_capabilities(flag) {
                log::debug!("kernel lacks FUSE capability {unsupported:?}");
            }
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.answer(
            Reads,
            reply,
            || self.node(parent).and_then(|p| self.do_lookup(&p, name)),
            |r, (node, st)| {
                r.entry(
                    &self.opts.ttl,
                    &self.attr(node.ino, &st),
                    Generation(self.lookup_generation(&node, &st)),
                )
            },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.nodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let op = || {
            if let Some(h) = fh.and_then(|fh| self.handle(fh).ok()) {
                let st = store::stat_fd(&*h.fd).map_err(errno)?;
                return Ok(self.attr(h.node.ino, &st));
            }
            let node = self.node(ino)?;
            let st = self.stat_node(&node)?;
            Ok(self.attr(node.ino, &st))
        };
        self.answer(Reads, reply, op, |r, attr| r.attr(&self.opts.ttl, &attr));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let changes = attr::AttrChanges {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
        };
        let op = || self.retry_when_space_frees(|| self.do_setattr(ino, fh, &changes));
        self.answer(Changes, reply, op, |r, attr| r.attr(&self.opts.ttl, &attr));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.answer(Reads, reply, || self.do_readlink(ino), |r, t| r.data(&t));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let op = || self.do_mknod(req, parent, name, mode, rdev);
        self.answer(Changes, reply, op, |r, attr| self.entry(r, attr));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let op = || self.do_mkdir(req, parent, name, mode);
        self.answer(Changes, reply, op, |r, attr| self.entry(r, attr));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let op = || self.do_unlink(parent, name);
        self.answer(Changes, reply, op, |r, ()| r.ok());
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let op = || self.do_rmdir(parent, name);
        self.answer(Changes, reply, op, |r, ()| r.ok());
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let op = || self.do_symlink(req, parent, link_name, target);
        self.answer(Changes, reply, op, |r, attr| self.entry(r, attr));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let op = || self.do_rename(parent, name, newparent, newname, flags);
        self.answer(Changes, reply, op, |r, ()| r.ok());
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let op = || self.do_link(ino, newparent, newname);
        self.answer(Changes, reply, op, |r, attr| self.entry(r, attr));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // A read-only mount refuses only opens for writing (in do_open).
        let op = || self.do_open(req.uid(), ino, flags);
        self.answer(Reads, reply, op, |r, (fh, fl)| r.opened(FileHandle(fh), fl));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.do_read(fh, offset, size, reply);
        if (size as usize) < STREAMING_WRITE {
            self.linger();
        } else {
            self.activity.touch();
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.activity.touch();
        let op = || {
            let n = self.do_write(fh, offset, data)?;
            if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
                let handle = self.handle(fh)?;
                kill_suid_sgid(&handle.fd)?;
            }
            Ok(n)
        };
        self.answer_at_once(Changes, reply, op, |r, n| r.written(n));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes go straight to the backing file; nothing is buffered here.
        self.answer(Reads, reply, || self.do_flush(fh), |r, ()| r.ok());
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.answer(Reads, reply, || self.do_release(fh), |r, ()| r.ok());
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.activity.touch();
        self.do_fsync(fh, datasync, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let op = || self.do_opendir(ino);
        self.answer(Reads, reply, op, |r, fh| {
            r.opened(FileHandle(fh), FopenFlags::empty())
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let res = self.fill_readdir(ino, fh, offset, &mut reply);
        self.answer(Reads, reply, || res, |r, ()| r.ok());
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let res = self.fill_readdirplus(ino, fh, offset, &mut reply);
        self.answer(Reads, reply, || res, |r, ()| r.ok());
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.answer(Reads, reply, || self.do_releasedir(fh), |r, ()| r.ok());
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.activity.touch();
        self.do_fsyncdir(ino, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Space of files deleted a moment ago counts as free (crate::reclaim).
        self.reclaimer.drain();
        match rustix::fs::fstatvfs(&*self.root_fd) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                crate::names::MAX_NAME_LEN as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(errno(e)),
        }
        self.linger_uncounted();
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let op = || self.do_setxattr(ino, name, value, flags);
        self.answer(Changes, reply, op, |r, ()| r.ok());
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let op = || self.do_getxattr(ino, name);
        self.answer(Reads, reply, op, |r, v| reply_xattr(r, size, &v));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let op = || self.do_listxattr(ino);
        self.answer(Reads, reply, op, |r, v| reply_xattr(r, size, &v));
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let op = || self.do_removexattr(ino, name);
        self.answer(Changes, reply, op, |r, ()| r.ok());
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.answer(Reads, reply, || self.do_access(ino, mask), |r, ()| r.ok());
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let op = || self.retry_when_space_frees(|| self.do_create(req, parent, name, mode, flags));
        self.answer(Changes, reply, op, |r, (attr, fh)| {
            r.created(
                &self.opts.ttl,
                &attr,
                self.generation_of(attr.ino.0),
                FileHandle(fh),
                FopenFlags::empty(),
            )
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.activity.touch();
        let op = || self.retry_when_space_frees(|| self.do_fallocate(fh, offset, length, mode));
        self.answer_at_once(Changes, reply, op, |r, ()| r.ok());
    }

    // What veilfs does not offer. fuser's defaults answer these with a
    // warning per call; the kernel needs no help: it stops asking after
    // the first ENOSYS for lseek (then SEEK_DATA/SEEK_HOLE treat the file
    // as all data, which POSIX allows), copy_file_range (it copies
    // through read and write) and poll.

    fn lseek(&self, _: &Request, _: INodeNo, _: FileHandle, _: i64, _: i32, reply: ReplyLseek) {
        reply.error(Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _: &Request,
        _: INodeNo,
        _: FileHandle,
        _: u64,
        _: INodeNo,
        _: FileHandle,
        _: u64,
        _: u64,
        _: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn poll(
        &self,
        _: &Request,
        _: INodeNo,
        _: FileHandle,
        _: fuser::PollNotifier,
        _: fuser::PollEvents,
        _: fuser::PollFlags,
        reply: fuser::ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// No ioctl is veilfs's own. The kernel asks on every one (`lsattr`'s
    /// FS_IOC_GETFLAGS, for one), so each gets ENOTTY, the answer for a
    /// command a file system does not know, and no warning.
    fn ioctl(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        _: fuser::IoctlFlags,
        cmd: u32,
        _: &[u8],
        _: u32,
        reply: fuser::ReplyIoctl,
    ) {
        log::debug!("ioctl {cmd:#x} on inode {}: not supported", ino.0);
        reply.error(Errno::ENOTTY);
    }
}
