//! The FUSE frontend: turns kernel requests into backing-store operations
//! with encrypted names and content.
//!
//! Invariants:
//! - Every backing access is `*at()` relative to a directory descriptor,
//!   with `O_NOFOLLOW` (see `store`).
//! - No handler panics on bad input; every error becomes an errno.
//! - A file's content lock (`Node::data`) is held shared by reads and
//!   exclusively by writes and truncation, so no reader sees a torn chunk.

mod conflicts;
pub mod daemon;
pub mod idle;
pub mod mount;
pub mod node;

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
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use lru::LruCache;
use rustix::fs::{Access, AtFlags, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid, openat};
use rustix::io::Errno as SysErrno;

use crate::content::{ContentCipher, FileHeader};
use crate::cryptfile::{CryptFile, CryptFileError};
use crate::journal::Journal;
use crate::names::{
    self, BackingName, DirIv, NameCipher, XATTR_ID_LEN, XATTR_ID_NAME, XattrVersion,
};
use crate::reclaim::Reclaimer;
use crate::store::{self, cstr};
use node::{FileData, Location, Node, NodeTable};

/// Tunables of a mount.
#[derive(Debug, Clone)]
pub struct FsOptions {
    pub read_only: bool,
    /// How long the kernel may cache attributes and names. Short, because
    /// a sync client may change CIPHERDIR behind the mount's back.
    pub ttl: Duration,
    /// Capacity of the directory descriptor cache.
    pub dir_fd_cache: usize,
    pub writeback_cache: bool,
    /// The kernel checks modes before each operation (default_permissions,
    /// needed with --allow-other). Without it the daemon's own user is the
    /// only caller and the backing file system checks for it.
    pub kernel_checks_permissions: bool,
    /// How long the serving thread watches /dev/fuse after a reply before
    /// it sleeps in read() (see `VeilFs::linger`); zero turns it off.
    pub linger: Duration,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            read_only: false,
            ttl: Duration::from_secs(1),
            dir_fd_cache: 4096,
            writeback_cache: true,
            kernel_checks_permissions: false,
            linger: Duration::ZERO,
        }
    }
}

/// A write request at least this big is part of a stream (the kernel
/// sends cached writes in requests of up to 1 MiB).
const STREAMING_WRITE: usize = 128 << 10;
/// Start write-back of a stream's backing file every this many bytes.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Starts (does not wait for) write-back of the backing bytes a stream has
/// written since the last call, once there are `WRITEBACK_STEP` of them.
/// The backing filesystem would otherwise hold them all dirty until the
/// app's fsync and write them only then; started early, the disk works
/// while the daemon encrypts the next megabytes.
fn start_writeback(fd: &OwnedFd, started: &mut u64, end: u64) {
    if end < *started {
        *started = 0;
    }
    if end - *started < WRITEBACK_STEP {
        return;
    }
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    let r = unsafe {
        libc::sync_file_range(
            fd.as_raw_fd(),
            *started as i64,
            (end - *started) as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if r != 0 {
        log::debug!("sync_file_range: {}", std::io::Error::last_os_error());
    }
    *started = end;
}

/// How far ahead of a streaming read the backing file is read, and in
/// what pieces: several requests in flight keep a disk busier than the
/// one stream the backing filesystem's own read-ahead makes.
const READ_AHEAD_WINDOW: u64 = 16 << 20;
const READ_AHEAD_PIECE: u64 = 2 << 20;

/// Asks the kernel to read the backing file ahead of a streaming read
/// (asynchronously: `POSIX_FADV_WILLNEED` starts I/O and returns).
fn read_ahead(fd: &OwnedFd, ahead_to: &AtomicU64, end: u64) {
    let from = ahead_to.load(Ordering::Relaxed);
    if from > end + READ_AHEAD_WINDOW / 2 && from < end + READ_AHEAD_WINDOW * 2 {
        return;
    }
    let start = from.max(end).min(end + READ_AHEAD_WINDOW);
    let to = end + READ_AHEAD_WINDOW;
    if ahead_to
        .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return; // another reader of the stream just did it
    }
    let mut at = start;
    while at < to {
        let len = READ_AHEAD_PIECE.min(to - at);
        let _ = rustix::fs::fadvise(
            fd,
            at,
            std::num::NonZeroU64::new(len),
            rustix::fs::Advice::WillNeed,
        );
        at += len;
    }
}

/// Clears setuid, and setgid where it means "setgid" (group-executable),
/// as the VFS does when someone without CAP_FSETID writes or truncates.
fn kill_suid_sgid(fd: &OwnedFd) -> Res<()> {
    let st = store::stat_fd(fd).map_err(errno)?;
    let mode = st.st_mode & 0o7777;
    let mut new = mode & !libc::S_ISUID;
    if mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID | libc::S_IXGRP {
        new &= !libc::S_ISGID;
    }
    if new != mode {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(new)).map_err(errno)?;
    }
    Ok(())
}

fn plain_path(node: &Node) -> String {
    let mut parts = Vec::new();
    let mut cur = node.parent_and_plain();
    let mut guard = 0;
    while let Some((parent, plain)) = cur {
        parts.push(String::from_utf8_lossy(&plain).into_owned());
        cur = parent.parent_and_plain();
        guard += 1;
        if guard > 4096 {
            break;
        }
    }
    parts.reverse();
    format!("/{}", parts.join("/"))
}

/// How log messages name a node: its inode number (the one `stat` shows in
/// the mount, the backing file's) and its backing name, which is all a
/// hostile cloud that triggers integrity warnings at will may learn from
/// the logs. The plaintext path is added only when debug logging is on.
fn log_name(node: &Node) -> String {
    let mut out = match node.parent_and_entry() {
        Some((_, backing)) => format!("inode {} (backing name {})", node.ino, backing.entry()),
        None => format!("inode {} (the vault root)", node.ino),
    };
    if log::log_enabled!(log::Level::Debug) {
        out.push_str(&format!(", path {:?}", plain_path(node)));
    }
    out
}

/// Logs a content error with the file's inode and backing name:
/// authentication failures as warnings, plain I/O errors (ENOSPC and the
/// like) at debug.
fn log_content_error(node: &Node, what: &str, e: &CryptFileError) {
    match e {
        CryptFileError::Io(_) => log::debug!("{}: {what}: {e}", log_name(node)),
        _ => log::warn!("{}: {what} failed: {e}", log_name(node)),
    }
}

/// Authenticates the file once before the first write or truncation
/// reuses its header (issue 13: "file ID poisoning"); `data` is the node's
/// content state, write-locked by the caller.
fn authenticate_once<Fd: AsFd>(
    node: &Node,
    data: &mut FileData,
    file: &mut CryptFile<'_, Fd>,
) -> Res<()> {
    if data.header_checked {
        return Ok(());
    }
    if let Err(e) = file.authenticate() {
        log_content_error(node, "authenticating the file before a write", &e);
        return Err(Errno::from_i32(e.errno()));
    }
    data.header = file.header();
    data.header_checked = true;
    Ok(())
}

/// Reads `size` bytes at `offset` through `handle` and replies.
/// Takes the handle by value so that it is dropped before the reply: once
/// the program has its data it may close and unlink the file, and a handle
/// still held here would keep the file's blocks from being freed.
fn serve_read(
    handle: Arc<Handle>,
    content: &ContentCipher,
    offset: u64,
    size: u32,
    reply: ReplyData,
) {
    READ_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.resize(size as usize, 0);
        let data = handle.node.data.read().unwrap();
        if size as usize >= STREAMING_WRITE {
            let end = content.layout().cipher_size(offset + size as u64);
            read_ahead(&handle.fd, &data.read_ahead_to, end);
        }
        let mut file = CryptFile::new(&*handle.fd, content, data.header);
        let res = file.read_at(offset, &mut buf);
        let (cached, loaded) = (data.header.is_some(), file.header());
        drop(data);
        if !cached && loaded.is_some() {
            // Keep the header the read loaded, so the next read does not
            // fetch it again; unless a write or truncation came between.
            let mut data = handle.node.data.write().unwrap();
            if data.header.is_none() {
                data.header = loaded;
            }
        }
        if let Err(e) = &res {
            log_content_error(&handle.node, &format!("read at offset {offset}"), e);
        }
        drop(handle);
        match res {
            Ok(n) => reply.data(&buf[..n]),
            Err(e) => reply.error(Errno::from_i32(e.errno())),
        }
    })
}

/// An open regular file.
struct Handle {
    node: Arc<Node>,
    fd: Arc<OwnedFd>,
    append: bool,
}

/// The backing path of entry `entry` of directory `parent`, relative to
/// CIPHERDIR.
fn child_backing_path(parent: &Node, entry: &str) -> Vec<u8> {
    let mut p = backing_path(parent);
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(entry.as_bytes());
    p
}

/// The backing path of `node` relative to CIPHERDIR, as the journal
/// records it.
fn backing_path(node: &Node) -> Vec<u8> {
    let mut parts = Vec::new();
    let mut cur = node.parent_and_entry();
    while let Some((parent, entry)) = cur {
        parts.push(entry);
        cur = parent.parent_and_entry();
        if parts.len() > 4096 {
            break;
        }
    }
    let mut out = Vec::new();
    for (k, p) in parts.iter().rev().enumerate() {
        if k > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(p.entry().as_bytes());
    }
    out
}

/// An open directory: its listing, taken at offset 0.
struct DirHandle {
    entries: Vec<(u64, FileType, OsString, String)>,
}

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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

/// The cached header of an open file if the backing file still starts
/// with it, else `None` (the file is read afresh). A sync client may
/// rewrite the file in place while it is open; a chunk written or cut
/// under the old header would not authenticate under the new one and
/// would damage the other device's version. One 18-byte pread from the
/// page cache per write or truncation.
fn still_on_disk(fd: impl AsFd, cached: Option<FileHeader>) -> Option<FileHeader> {
    let h = cached?;
    let mut buf = [0u8; crate::content::HEADER_LEN];
    match rustix::io::pread(fd, &mut buf, 0) {
        Ok(n) if n == buf.len() && &buf == h.as_bytes() => Some(h),
        _ => {
            log::debug!("a file's header changed behind the mount; reading it again");
            None
        }
    }
}

/// Whether `st` is a backing symlink with a long target (its record
/// beside it, docs/FORMAT.md §7) and no other hard link, so that the
/// record goes when this name goes.
fn is_long_symlink(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
        && st.st_nlink == 1
        && st.st_size as usize == crate::names::LONG_TARGET_LINK_LEN
}

/// Plaintext length of a symlink target stored as base64url of
/// nonce || ciphertext || tag, computed without decrypting.
fn symlink_plain_len(stored_len: u64) -> u64 {
    let decoded = stored_len / 4 * 3 + [0, 0, 1, 2][(stored_len % 4) as usize];
    decoded.saturating_sub(28)
}

fn to_timestamp(t: Option<TimeOrNow>) -> Timespec {
    match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => Timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: d.subsec_nanos() as i64,
            },
            Err(e) => {
                let d = e.duration();
                let (mut s, mut n) = (-(d.as_secs() as i64), -(d.subsec_nanos() as i64));
                if n < 0 {
                    s -= 1;
                    n += 1_000_000_000;
                }
                Timespec {
                    tv_sec: s,
                    tv_nsec: n,
                }
            }
        },
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
    /// The session's /dev/fuse descriptor, set once the session exists and
    /// only when one thread serves it (see `linger`).
    fuse_device: Arc<OnceLock<OwnedFd>>,
    /// Where chunk rewrites are recorded first (crate::journal); off on a
    /// read-only mount.
    journal: Journal,
    /// Requests and open handles, for `--idle`.
    activity: Arc<idle::Activity>,
}

type Res<T> = Result<T, Errno>;

type HelperJob = Box<dyn FnOnce() + Send>;

/// A few threads that run requests which may take long (fsync, streaming
/// reads) and send their replies themselves (fuser replies are `Send`).
struct Helpers {
    jobs: Mutex<std::sync::mpsc::Sender<HelperJob>>,
}

impl Helpers {
    fn new(name: &str, threads: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<HelperJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("veilfs-{name}-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap().recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the filesystem is gone
                        }
                    }
                })
                .expect("spawning a helper thread");
        }
        Helpers {
            jobs: Mutex::new(tx),
        }
    }

    /// Runs `job` on a helper thread (here, if none is left).
    fn run(&self, job: HelperJob) {
        if let Err(e) = self.jobs.lock().unwrap().send(job) {
            (e.0)();
        }
    }
}

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

    /// Keeps the serving thread awake for up to `opts.linger` after a
    /// reply, polling /dev/fuse, so that the next request of a program that
    /// sends them one after another is read at once instead of after a
    /// sleep and a wake-up. Measured on the project's 2-vCPU VM, where a
    /// wake-up is expensive: a getxattr round trip 16.7 µs -> 10-11 µs, a
    /// cold `ls -lR` of 20,000 files 1.15-1.40 s -> 1.06-1.24 s
    /// (PERFORMANCE.md).
    /// Not after reads and writes of streams: their helper threads need
    /// the CPU, and the kernel keeps several of those in flight anyway.
    /// Also counts the request for `--idle` (every request that does not
    /// linger counts itself).
    fn linger(&self) {
        self.activity.touch();
        self.linger_uncounted();
    }

    /// [`VeilFs::linger`] for a request that is no use of the mount:
    /// statfs, which `df` and desktop disk monitors send to every mount
    /// every few seconds and which must not keep `--idle` from unmounting.
    fn linger_uncounted(&self) {
        let Some(dev) = self.fuse_device.get() else {
            return;
        };
        if self.opts.linger.is_zero() {
            return;
        }
        let start = std::time::Instant::now();
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut fds = [rustix::event::PollFd::new(
            dev,
            rustix::event::PollFlags::IN,
        )];
        loop {
            // Ready means a request (or an error: the mount is gone), and
            // either way fuser's read() will not sleep.
            if !matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(0)) {
                return;
            }
            if start.elapsed() >= self.opts.linger {
                return;
            }
            std::hint::spin_loop();
        }
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

    /// An `O_PATH` descriptor of a directory node, from the cache or
    /// reopened through its parent.
    fn dir_fd(&self, node: &Arc<Node>) -> Res<Arc<OwnedFd>> {
        if node.ino == INodeNo::ROOT.0 {
            return Ok(self.root_fd.clone());
        }
        if !node.is_dir {
            return Err(Errno::ENOTDIR);
        }
        if let Some(fd) = self.dir_fds.lock().unwrap().get(&node.ino) {
            return Ok(fd.clone());
        }
        let (parent, entry) = node.parent_and_entry().ok_or(Errno::ENOENT)?;
        let pfd = self.dir_fd(&parent)?;
        let fd = store::open_dir_path(&*pfd, cstr(entry.entry()).as_c_str()).map_err(errno)?;
        let st = store::stat_fd(&fd).map_err(errno)?;
        if self.fuse_ino(st.st_ino) != node.ino {
            return Err(Errno::ENOENT);
        }
        let fd = Arc::new(fd);
        self.dir_fds.lock().unwrap().put(node.ino, fd.clone());
        Ok(fd)
    }

    /// A directory's IV for reading. An empty directory without its IV
    /// file (a crash right after mkdir, or a sync client that created the
    /// folder before its IV file arrived) gets a new IV in memory only
    /// (it has no names to decrypt): writing one now could conflict with
    /// the real file on its way.
    fn dir_iv(&self, node: &Arc<Node>) -> Res<DirIv> {
        self.dir_iv_with(node, false)
    }

    /// A directory's IV for creating entries in it: a missing IV file of
    /// an empty directory is written now, since names are about to depend
    /// on it.
    fn dir_iv_for_write(&self, node: &Arc<Node>) -> Res<DirIv> {
        self.dir_iv_with(node, true)
    }

    fn dir_iv_with(&self, node: &Arc<Node>, persist: bool) -> Res<DirIv> {
        if let Some(iv) = node.dir_iv.get() {
            return Ok(iv);
        }
        let fd = self.dir_fd(node)?;
        let expected = || {
            let loc = node.location.lock().unwrap();
            match loc.as_ref() {
                Some(l) => {
                    let parent_iv = l.parent.dir_iv.get().unwrap_or(self.names.root_iv());
                    self.names.new_dir_iv(&parent_iv, &l.plain)
                }
                None => self.names.root_iv(),
            }
        };
        let persist = persist && !self.opts.read_only;
        let iv = store::dir_iv_or_repair(fd.as_fd(), expected, persist);
        let iv = iv.map_err(|e| {
            log::warn!(
                "{}: directory IV missing or damaged ({e}); its entries cannot be decrypted",
                self.log_name(node)
            );
            Errno::EIO
        })?;
        let (iv, stored) = iv;
        if stored {
            let _ = node.dir_iv.set(iv);
        }
        Ok(iv)
    }

    /// How log messages name a node (see [`log_name`]).
    fn log_name(&self, node: &Node) -> String {
        log_name(node)
    }

    /// Parent descriptor and backing entry of a non-root node.
    fn locate(&self, node: &Arc<Node>) -> Res<(Arc<OwnedFd>, CString)> {
        let (parent, entry) = node.parent_and_entry().ok_or(Errno::EINVAL)?;
        let pfd = self.dir_fd(&parent)?;
        Ok((pfd, cstr(entry.entry())))
    }

    /// Like [`VeilFs::child`], for creating `name` in `parent`.
    fn new_child(
        &self,
        parent: &Arc<Node>,
        name: &OsStr,
    ) -> Res<(Arc<OwnedFd>, DirIv, BackingName)> {
        self.dir_iv_for_write(parent)?;
        self.child(parent, name)
    }

    /// Parent descriptor, IV and backing name of `name` in `parent`.
    fn child(&self, parent: &Arc<Node>, name: &OsStr) -> Res<(Arc<OwnedFd>, DirIv, BackingName)> {
        let pfd = self.dir_fd(parent)?;
        let iv = self.dir_iv(parent)?;
        let b = store::backing_name(&self.names, &iv, name).map_err(errno)?;
        Ok((pfd, iv, b))
    }

    fn attr(&self, ino: u64, st: &Stat) -> FileAttr {
        let kind = kind_of(st);
        let size = match kind {
            FileType::RegularFile => self.content.layout().plain_size(st.st_size as u64),
            FileType::Symlink if st.st_size as usize == crate::names::LONG_TARGET_LINK_LEN => self
                .long_symlink_len(ino)
                .unwrap_or_else(|| symlink_plain_len(st.st_size as u64)),
            FileType::Symlink => symlink_plain_len(st.st_size as u64),
            _ => st.st_size as u64,
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: st.st_blocks as u64,
            atime: time(st.st_atime, st.st_atime_nsec as i64),
            mtime: time(st.st_mtime, st.st_mtime_nsec as i64),
            ctime: time(st.st_ctime, st.st_ctime_nsec as i64),
            crtime: UNIX_EPOCH,
            kind,
            perm: (st.st_mode & 0o7777) as u16,
            nlink: st.st_nlink as u32,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Plaintext length of a symlink whose target is stored in a record
    /// (docs/FORMAT.md §7), from the record's size.
    fn long_symlink_len(&self, ino: u64) -> Option<u64> {
        let node = self.nodes.get(ino)?;
        let (pfd, entry) = self.locate(&node).ok()?;
        let record = store::long_target_record_of(&*pfd, &entry)?;
        let st = store::lstat_at(&*pfd, &cstr(&record)).ok()?;
        Some(symlink_plain_len(st.st_size as u64))
    }

    /// access(2) and chdir. Without --allow-other the kernel leaves
    /// permission checks to the daemon (see mount.rs): the only caller is
    /// the daemon's own user, so the backing file system answers for it.
    /// With --allow-other the kernel has already checked the modes.
    fn do_access(&self, ino: INodeNo, mask: AccessFlags) -> Res<()> {
        let node = self.node(ino)?;
        let access = Access::from_bits_truncate(mask.bits() as _);
        let r = if node.is_dir {
            let fd = self.dir_fd(&node)?;
            rustix::fs::accessat(&*fd, c".", access, AtFlags::EACCESS)
        } else {
            let (pfd, entry) = self.locate(&node)?;
            rustix::fs::accessat(
                &*pfd,
                entry.as_c_str(),
                access,
                AtFlags::EACCESS | AtFlags::SYMLINK_NOFOLLOW,
            )
        };
        match r {
            // Unlinked while open: it exists while the descriptor does.
            Err(rustix::io::Errno::NOENT) if node.open.lock().unwrap().fd.is_some() => Ok(()),
            r => r.map_err(errno),
        }
    }

    fn stat_node(&self, node: &Arc<Node>) -> Res<Stat> {
        if node.is_dir {
            return store::stat_fd(&*self.dir_fd(node)?).map_err(errno);
        }
        let (pfd, entry) = self.locate(node)?;
        match store::lstat_at(&*pfd, &entry) {
            Ok(st) if self.fuse_ino(st.st_ino) == node.ino => Ok(st),
            other => {
                // Renamed away or unlinked while open: the open descriptor
                // still knows the file.
                if let Some(fd) = node.open.lock().unwrap().fd.clone() {
                    return store::stat_fd(&*fd).map_err(errno);
                }
                match other {
                    // Replaced by another file (a sync client's rename):
                    // the kernel looks the name up again and retries.
                    Ok(_) => Err(Errno::ESTALE),
                    Err(e) => Err(errno(e)),
                }
            }
        }
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

    /// The shared backing descriptor of a file node, opened on first use.
    /// For writing (and truncating) only if every hard link of the backing
    /// file is one the mount made (see [`VeilFs::refuse_planted_links`]).
    fn open_backing(&self, node: &Arc<Node>, want_write: bool) -> Res<Arc<OwnedFd>> {
        let fd = self.open_backing_fd(node, want_write)?;
        if want_write {
            self.refuse_planted_links(node, &fd)?;
        }
        Ok(fd)
    }

    /// Refuses (EPERM, with a logged reason) to write to or truncate a
    /// regular backing file with more hard links than the mount made. A
    /// hostile local user can plant a hard link to a foreign file under a
    /// vault name; writing through it would fill, or truncating it empty,
    /// that foreign file. The links the mount makes (`link`) are vouched
    /// for by an authenticated link record on the backing file
    /// (docs/FORMAT.md, "Link records"); a planted link is not, because
    /// only the key holder can make a record, and a record names its inode.
    fn refuse_planted_links(&self, node: &Node, fd: &OwnedFd) -> Res<()> {
        let st = store::stat_fd(fd).map_err(errno)?;
        self.refuse_unvouched(node, &st, |buf| {
            rustix::fs::fgetxattr(fd, names::LINK_RECORD_XATTR, buf)
        })
    }

    /// [`VeilFs::refuse_planted_links`] for a file in state `st` whose
    /// link record `read_record` reads.
    fn refuse_unvouched(
        &self,
        node: &Node,
        st: &Stat,
        read_record: impl FnOnce(&mut [u8]) -> rustix::io::Result<usize>,
    ) -> Res<()> {
        if st.st_nlink <= 1 || st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Ok(());
        }
        let mut record = [0u8; names::LINK_RECORD_LEN + 1];
        let vouched = read_record(&mut record[..]).is_ok_and(|n| {
            self.names
                .link_record_covers(&record[..n], st.st_ino, st.st_nlink)
        });
        if vouched {
            return Ok(());
        }
        log::warn!(
            "{}: refusing to write or link: its backing file has {} hard links that this mount did not make \
             (one may have been planted in the vault directory to make veilfs write into a foreign file); \
             reading still works, and a copy of the file under a new name can be written",
            log_name(node),
            st.st_nlink
        );
        Err(Errno::EPERM)
    }

    fn open_backing_fd(&self, node: &Arc<Node>, want_write: bool) -> Res<Arc<OwnedFd>> {
        let mut open = node.open.lock().unwrap();
        if let Some(fd) = &open.fd
            && (open.writable || !want_write)
        {
            return Ok(fd.clone());
        }
        let (pfd, entry) = self.locate(node)?;
        // O_NONBLOCK: a FIFO swapped in for the file (by a hostile or
        // buggy sync client) must not stop this thread in open() waiting
        // for a writer; the fstat below then turns it away.
        let base = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let (fd, writable) = if self.opts.read_only {
            (
                openat(&*pfd, &entry, base | OFlags::RDONLY, Mode::empty()),
                false,
            )
        } else {
            match openat(&*pfd, &entry, base | OFlags::RDWR, Mode::empty()) {
                Err(SysErrno::ACCESS) if !want_write => (
                    openat(&*pfd, &entry, base | OFlags::RDONLY, Mode::empty()),
                    false,
                ),
                other => (other, true),
            }
        };
        let fd = fd.map_err(errno)?;
        let st = store::stat_fd(&fd).map_err(errno)?;
        self.expect_regular(node, &st)?;
        // The name now leads to another file (a sync client replaced it by
        // rename) or this one changed in place while the kernel kept its
        // cached size (writeback cache): ESTALE makes the kernel look the
        // name up again and retry the open once, on a fresh inode, so the
        // app reads the new file rather than ENOENT or a stale size.
        if self.fuse_ino(st.st_ino) != node.ino {
            log::debug!(
                "{}: replaced behind the mount; the kernel looks it up again",
                self.log_name(node)
            );
            return Err(Errno::ESTALE);
        }
        if self.opts.writeback_cache && open.handles == 0 && node.changed_behind(&st) {
            log::debug!(
                "{}: changed in place behind the mount; the kernel looks it up again",
                self.log_name(node)
            );
            return Err(Errno::ESTALE);
        }
        // Back to blocking I/O for what is now known to be a regular file.
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(errno)?;
        let fd = Arc::new(fd);
        open.fd = Some(fd.clone());
        open.writable = writable;
        Ok(fd)
    }

    /// EIO, logged, when a backing entry opened as a file is anything
    /// else (a FIFO, a device, a socket a sync client put there).
    fn expect_regular(&self, node: &Node, st: &Stat) -> Res<()> {
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFREG {
            return Ok(());
        }
        log::warn!(
            "{}: the backing entry is not a regular file (mode {:o}): refusing to open it",
            self.log_name(node),
            kind
        );
        Err(Errno::EIO)
    }

    fn new_handle(&self, node: Arc<Node>, fd: Arc<OwnedFd>, flags: i32) -> u64 {
        node.open.lock().unwrap().handles += 1;
        self.activity.opened();
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let append = flags & libc::O_APPEND != 0 && !self.opts.writeback_cache;
        self.handles
            .write()
            .unwrap()
            .insert(fh, Arc::new(Handle { node, fd, append }));
        fh
    }

    fn handle(&self, fh: FileHandle) -> Res<Arc<Handle>> {
        self.handles
            .read()
            .unwrap()
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    fn truncate_node(&self, node: &Arc<Node>, fd: &OwnedFd, size: u64) -> Res<()> {
        let path = backing_path(node);
        let mut data = node.data.write().unwrap();
        let header = still_on_disk(fd, data.header);
        if header.is_none() {
            // Read afresh (or changed on disk): authenticate it again.
            data.header_checked = false;
        }
        let mut file = CryptFile::new(fd, &self.content, header).with_journal(&self.journal, &path);
        if size > 0 {
            authenticate_once(node, &mut data, &mut file)?;
        }
        let res = file.truncate(size);
        data.header = file.header();
        data.written = true;
        data.kernel_size = Some(size);
        res.map_err(|e| {
            log_content_error(node, "truncate", &e);
            Errno::from_i32(e.errno())
        })
    }

    /// Whether a backing directory holds anything but its IV file and
    /// long-name records left by deletions. When it does not, those
    /// leftover records are removed so the directory can go.
    fn dir_has_entries(&self, dir: &OwnedFd) -> Res<bool> {
        let mut it =
            rustix::fs::Dir::new(store::open_dir_read(dir).map_err(errno)?).map_err(errno)?;
        let mut leftovers = Vec::new();
        while let Some(entry) = it.read() {
            let entry = entry.map_err(errno)?;
            let name = entry.file_name();
            match name.to_bytes() {
                b"." | b".." | b"veilfs.diriv" => {}
                raw => match std::str::from_utf8(raw) {
                    // Long-name and long-target records left by deletions,
                    // and copies of veilfs.diriv made when two devices
                    // created this directory (docs/FORMAT.md §6):
                    // veilfs's own files.
                    Ok(n)
                        if matches!(
                            crate::names::classify_entry(n),
                            crate::names::EntryKind::LongRecord
                                | crate::names::EntryKind::LongTargetRecord
                        ) || crate::conflict::is_dir_iv_copy(n) =>
                    {
                        leftovers.push(name.to_owned())
                    }
                    _ => return Ok(true),
                },
            }
        }
        for record in leftovers {
            rustix::fs::unlinkat(dir, record.as_c_str(), AtFlags::empty()).map_err(errno)?;
        }
        Ok(false)
    }

    fn list(&self, node: &Arc<Node>) -> Res<Vec<(u64, FileType, OsString, String)>> {
        let fd = self.dir_fd(node)?;
        let mut iv = self.dir_iv(node)?;
        let mut listing = store::list_dir(fd.as_fd(), &iv, &self.names).map_err(errno)?;
        // Another device's IV of this folder beside ours: the sync client
        // may have swapped veilfs.diriv since it was read (docs/FORMAT.md
        // §6). Follow the file, so that every mount renames to one IV.
        if listing.dir_iv_copies
            && node.ino != INodeNo::ROOT.0
            && let Ok(disk) = store::read_dir_iv(&*fd)
            && disk != iv
            && crate::names::same_birth(&iv, &disk)
        {
            log::info!(
                "{}: veilfs.diriv now holds another device's IV of this folder; using it",
                self.log_name(node)
            );
            node.dir_iv.replace(disk);
            iv = disk;
            listing = store::list_dir(fd.as_fd(), &iv, &self.names).map_err(errno)?;
        }
        self.resolve_conflicts(node, &fd, &iv, &mut listing);
        if !listing.bad.is_empty() {
            let path = self.log_name(node);
            for bad in &listing.bad {
                log::warn!(
                    "{path}: backing entry {} skipped: {}",
                    bad.backing,
                    bad.error
                );
            }
        }
        Ok(listing
            .entries
            .into_iter()
            .map(|e| {
                (
                    self.fuse_ino(e.ino),
                    kind_of_dirent(e.file_type),
                    OsString::from_vec(e.plain),
                    e.backing,
                )
            })
            .collect())
    }

    /// `/proc/self/fd/N[/entry]`: a path for the l*xattr calls that
    /// resolves through our own descriptor, never following the last
    /// component.
    fn xattr_path(&self, node: &Arc<Node>) -> Res<(Arc<OwnedFd>, CString)> {
        if node.is_dir {
            let fd = self.dir_fd(node)?;
            // `/.`: the l*xattr calls do not follow a last component, and
            // `/proc/self/fd/N` itself is a (magic) symlink: EPERM.
            let p = format!("/proc/self/fd/{}/.", fd.as_raw_fd());
            Ok((fd, cstr(&p)))
        } else {
            let (pfd, entry) = self.locate(node)?;
            let p = format!(
                "/proc/self/fd/{}/{}",
                pfd.as_raw_fd(),
                entry.to_str().unwrap_or("")
            );
            Ok((pfd, cstr(&p)))
        }
    }

    /// Changes a file that has no open descriptor by name (setattr on a
    /// directory or an open file goes through its descriptor instead).
    fn set_mode_by_name(&self, node: &Arc<Node>, mode: Mode) -> Res<()> {
        let (pfd, entry) = self.locate(node)?;
        // fchmodat2 (Linux 6.6) refuses to follow a symlink swapped in by
        // a hostile sync peer; older kernels fall back to the plain call
        // on what lstat saw as a non-symlink.
        let r = unsafe {
            libc::syscall(
                452,
                pfd.as_raw_fd(),
                entry.as_ptr(),
                mode.bits(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        if err != libc::ENOSYS {
            return Err(Errno::from_i32(err));
        }
        let st = store::lstat_at(&*pfd, &entry).map_err(errno)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(Errno::EOPNOTSUPP);
        }
        rustix::fs::chmodat(&*pfd, &entry, mode, AtFlags::empty()).map_err(errno)
    }

    fn set_times_by_name(&self, node: &Arc<Node>, ts: &Timestamps) -> Res<()> {
        let (pfd, entry) = self.locate(node)?;
        rustix::fs::utimensat(&*pfd, &entry, ts, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)
    }

    fn set_owner_by_name(&self, node: &Arc<Node>, uid: Option<Uid>, gid: Option<Gid>) -> Res<()> {
        let (pfd, entry) = self.locate(node)?;
        rustix::fs::chownat(&*pfd, &entry, uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)
    }

    // ---- request bodies, each returning a Result so `?` works ----

    #[allow(clippy::too_many_arguments)]
    fn do_setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Res<FileAttr> {
        let handle = fh.and_then(|fh| self.handle(fh).ok());
        // Through a handle, truncate under the very node its writes lock.
        let node = match &handle {
            Some(h) => h.node.clone(),
            None => self.node(ino)?,
        };
        if let Some(size) = size {
            if node.is_dir {
                return Err(Errno::EISDIR);
            }
            let fd = match &handle {
                Some(h) => h.fd.clone(),
                None => self.open_backing(&node, true)?,
            };
            self.truncate_node(&node, &fd, size)?;
        }
        // An open file is changed through its descriptor: it may have been
        // unlinked or renamed meanwhile (the writeback cache sends times at
        // fsync and close, by handle), and there is no name to resolve.
        // Everything else by name, without following symlinks.
        let changes_inode =
            mode.is_some() || uid.is_some() || gid.is_some() || atime.is_some() || mtime.is_some();
        let fd = if !changes_inode {
            None
        } else if node.is_dir {
            // A directory by name (its owner may chmod it even at mode
            // 000, when it cannot be opened); only the root has no name.
            if node.parent_and_entry().is_some() {
                None
            } else {
                Some(Arc::new(
                    store::open_dir_read(&*self.dir_fd(&node)?).map_err(errno)?,
                ))
            }
        } else {
            match &handle {
                Some(h) => Some(h.fd.clone()),
                None => node.open.lock().unwrap().fd.clone(),
            }
        };
        if let Some(mode) = mode {
            let mode = Mode::from_raw_mode(mode & 0o7777);
            match &fd {
                Some(fd) => rustix::fs::fchmod(&**fd, mode).map_err(errno)?,
                None => self.set_mode_by_name(&node, mode)?,
            }
        }
        if uid.is_some() || gid.is_some() {
            let (uid, gid) = (uid.map(Uid::from_raw), gid.map(Gid::from_raw));
            match &fd {
                Some(fd) => rustix::fs::fchown(&**fd, uid, gid).map_err(errno)?,
                None => self.set_owner_by_name(&node, uid, gid)?,
            }
        }
        if atime.is_some() || mtime.is_some() {
            let ts = Timestamps {
                last_access: to_timestamp(atime),
                last_modification: to_timestamp(mtime),
            };
            match &fd {
                Some(fd) => rustix::fs::futimens(&**fd, &ts).map_err(errno)?,
                None => self.set_times_by_name(&node, &ts)?,
            }
        }
        let st = self.stat_node(&node)?;
        if size.is_some() {
            node.note_backing(&st);
        } else {
            node.note_attr_change(&st);
        }
        Ok(self.attr(node.ino, &st))
    }

    fn do_read(&self, fh: FileHandle, offset: u64, size: u32, reply: ReplyData) {
        let handle = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        if size as usize >= STREAMING_WRITE {
            // A streaming read: decrypt on a helper thread, so the several
            // reads the kernel's read-ahead has in flight proceed together
            // and small requests are not queued behind them.
            let content = self.content.clone();
            self.readers.run(Box::new(move || {
                serve_read(handle, &content, offset, size, reply)
            }));
        } else {
            serve_read(handle, &self.content, offset, size, reply)
        }
    }

    fn do_write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Res<u32> {
        self.retry_when_space_frees(|| self.write_once(fh, offset, data))
    }

    /// Runs `op` again once deleted files' space is free, if it failed
    /// for want of space while some was still being reclaimed.
    fn retry_when_space_frees<T>(&self, op: impl Fn() -> Res<T>) -> Res<T> {
        match op() {
            Err(Errno::ENOSPC) if self.reclaimer.is_busy() => {
                self.reclaimer.drain();
                op()
            }
            res => res,
        }
    }

    fn write_once(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Res<u32> {
        let handle = self.handle(fh)?;
        // Where the file is now (renames are journaled too, so recovery
        // follows them).
        let path = backing_path(&handle.node);
        let mut state = handle.node.data.write().unwrap();
        let header = still_on_disk(&*handle.fd, state.header);
        if header.is_none() {
            state.header_checked = false;
        }
        let mut file =
            CryptFile::new(&*handle.fd, &self.content, header).with_journal(&self.journal, &path);
        authenticate_once(&handle.node, &mut state, &mut file)?;
        let offset = if handle.append {
            file.plain_size().map_err(Errno::from)?
        } else {
            offset
        };
        let res = file.write_at(offset, data);
        state.header = file.header();
        state.written = true;
        let end = offset.saturating_add(data.len() as u64);
        state.kernel_size = state.kernel_size.map(|k| k.max(end));
        match res {
            Ok(()) => {
                if data.len() >= STREAMING_WRITE {
                    let end = self
                        .content
                        .layout()
                        .cipher_size(offset + data.len() as u64);
                    start_writeback(&handle.fd, &mut state.writeback_started, end);
                }
                Ok(data.len() as u32)
            }
            Err(e) => {
                log_content_error(&handle.node, &format!("write at offset {offset}"), &e);
                Err(Errno::from_i32(e.errno()))
            }
        }
    }

    fn do_create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Res<(FileAttr, u64)> {
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        let parent = self.node(parent)?;
        let (pfd, _, b) = self.new_child(&parent, name)?;
        store::write_long_record(&*pfd, &b).map_err(errno)?;
        let entry = cstr(b.entry());
        let mut oflags =
            OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        if flags & libc::O_EXCL != 0 {
            oflags |= OFlags::EXCL;
        }
        let fd =
            openat(&*pfd, &entry, oflags, Mode::from_raw_mode(mode & 0o7777)).map_err(errno)?;
        self.chown_to_caller(req, &pfd, &entry)?;
        let mut st = store::stat_fd(&fd).map_err(errno)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            log::warn!(
                "create {:?}: the backing entry is not a regular file (mode {:o})",
                name,
                st.st_mode & libc::S_IFMT
            );
            return Err(Errno::EIO);
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(errno)?;
        let node = self.remember(&parent, &st, b, name.as_bytes());
        if st.st_nlink > 1 {
            // O_CREAT on an existing file opens it for writing.
            self.refuse_planted_links(&node, &fd)?;
        }
        let fd = {
            let mut open = node.open.lock().unwrap();
            match &open.fd {
                Some(existing) if open.writable => existing.clone(),
                _ => {
                    let fd = Arc::new(fd);
                    open.fd = Some(fd.clone());
                    open.writable = true;
                    fd
                }
            }
        };
        if flags & libc::O_TRUNC != 0 && st.st_size != 0 {
            self.truncate_node(&node, &fd, 0)?;
            st = store::stat_fd(&*fd).map_err(errno)?;
        }
        let fh = self.new_handle(node.clone(), fd, flags);
        node.note_backing(&st);
        node.data.write().unwrap().kernel_size =
            Some(self.content.layout().plain_size(st.st_size as u64));
        Ok((self.attr(node.ino, &st), fh))
    }

    fn do_mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> Res<FileAttr> {
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        let parent = self.node(parent)?;
        let (pfd, _, b) = self.new_child(&parent, name)?;
        store::write_long_record(&*pfd, &b).map_err(errno)?;
        let entry = cstr(b.entry());
        let perm = Mode::from_raw_mode(mode & 0o7777);
        match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => {
                openat(
                    &*pfd,
                    &entry,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    perm,
                )
                .map_err(errno)?;
            }
            fmt => {
                let ft = rustix::fs::FileType::from_raw_mode(fmt);
                rustix::fs::mknodat(&*pfd, &entry, ft, perm, rdev as u64).map_err(errno)?;
            }
        }
        self.chown_to_caller(req, &pfd, &entry)?;
        Ok(self.reply_new_entry(&parent, &pfd, b, name)?.0)
    }

    fn do_mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32) -> Res<FileAttr> {
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        let parent = self.node(parent)?;
        let (pfd, iv, b) = self.new_child(&parent, name)?;
        store::write_long_record(&*pfd, &b).map_err(errno)?;
        let entry = cstr(b.entry());
        rustix::fs::mkdirat(&*pfd, &entry, Mode::from_raw_mode(mode & 0o7777)).map_err(errno)?;
        let child_iv = self.names.new_dir_iv(&iv, name.as_bytes());
        let written = store::open_dir_path(&*pfd, &entry)
            .and_then(|dfd| store::write_dir_iv(&dfd, &child_iv));
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&*pfd, &entry, AtFlags::REMOVEDIR);
            return Err(errno(e));
        }
        self.chown_to_caller(req, &pfd, &entry)?;
        let (attr, node) = self.reply_new_entry(&parent, &pfd, b, name)?;
        let _ = node.dir_iv.set(child_iv);
        Ok(attr)
    }

    fn do_unlink(&self, parent: INodeNo, name: &OsStr) -> Res<()> {
        let parent = self.node(parent)?;
        let (pfd, _, b) = self.child(&parent, name)?;
        let entry = cstr(b.entry());
        // Pinning the inode moves the freeing of its blocks from unlinkat
        // to the reclaimer's close (crate::reclaim).
        let pinned = store::open_pinned(&*pfd, &entry).ok();
        let st = match &pinned {
            Some(fd) => store::stat_fd(fd),
            None => store::lstat_at(&*pfd, &entry),
        };
        let st = st.ok();
        // The record of a long symlink target goes with its last link.
        let target_record = st
            .filter(is_long_symlink)
            .and_then(|_| store::long_target_record_of(&*pfd, &entry));
        rustix::fs::unlinkat(&*pfd, &entry, AtFlags::empty()).map_err(errno)?;
        if self.journal.is_on() && st.as_ref().is_some_and(|st| st.st_nlink <= 1) {
            let path = child_backing_path(&parent, b.entry());
            if let Err(e) = self.journal.note(&path, &crate::journal::NameOp::Unlink) {
                log::debug!("journal: cannot record an unlink: {e}");
            }
        }
        if let Some(record) = target_record {
            match rustix::fs::unlinkat(&*pfd, cstr(&record).as_c_str(), AtFlags::empty()) {
                Ok(()) | Err(SysErrno::NOENT) => {}
                Err(e) => log::warn!("could not remove long-target record {record}: {e}"),
            }
        }
        match (st, pinned) {
            // A hard-linked inode keeps its other names usable.
            (Some(st), _) if st.st_nlink > 1 => {
                self.nodes
                    .unlinked(self.fuse_ino(st.st_ino), parent.ino, b.entry());
            }
            (st, Some(fd)) => {
                let allocated = st.map_or(u64::MAX, |st| st.st_blocks as u64 * 512);
                self.reclaimer.release(fd, allocated);
            }
            (_, None) => {}
        }
        // The long-name record stays (docs/FORMAT.md §5.3): see
        // check::ProblemKind::is_damage.
        Ok(())
    }

    /// Removes an empty backing directory: its IV file first, put back if
    /// the directory turns out not to be removable.
    fn remove_empty_dir(&self, pfd: &OwnedFd, entry: &CString) -> Res<u64> {
        let dfd = store::open_dir_path(pfd, entry).map_err(errno)?;
        let st = store::stat_fd(&dfd).map_err(errno)?;
        if self.dir_has_entries(&dfd)? {
            return Err(Errno::ENOTEMPTY);
        }
        let iv = store::read_dir_iv(&dfd).ok();
        if iv.is_some() {
            rustix::fs::unlinkat(&dfd, c"veilfs.diriv", AtFlags::empty()).map_err(errno)?;
        }
        if let Err(e) = rustix::fs::unlinkat(pfd, entry.as_c_str(), AtFlags::REMOVEDIR) {
            if let Some(iv) = iv {
                let _ = store::write_dir_iv(&dfd, &iv);
            }
            return Err(errno(e));
        }
        Ok(st.st_ino)
    }

    fn do_rmdir(&self, parent: INodeNo, name: &OsStr) -> Res<()> {
        let parent = self.node(parent)?;
        let (pfd, _, b) = self.child(&parent, name)?;
        let entry = cstr(b.entry());
        let st = store::lstat_at(&*pfd, &entry).map_err(errno)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        let backing_ino = self.remove_empty_dir(&pfd, &entry)?;
        self.dir_fds
            .lock()
            .unwrap()
            .pop(&self.fuse_ino(backing_ino));
        // The long-name record stays (docs/FORMAT.md §5.3): see
        // check::ProblemKind::is_damage.
        Ok(())
    }

    fn do_symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &std::path::Path,
    ) -> Res<FileAttr> {
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        let parent = self.node(parent)?;
        let (pfd, iv, b) = self.new_child(&parent, name)?;
        let target = target.as_os_str().as_bytes();
        if target.len() > crate::names::MAX_SYMLINK_TARGET {
            return Err(Errno::ENAMETOOLONG);
        }
        // A long target goes to a record beside the symlink (FORMAT.md §7).
        let stored = self.names.store_symlink_target(&iv, target);
        store::write_long_record(&*pfd, &b).map_err(errno)?;
        store::write_long_target_record(&*pfd, &stored).map_err(errno)?;
        let entry = cstr(b.entry());
        rustix::fs::symlinkat(cstr(stored.link()).as_c_str(), &*pfd, &entry).map_err(errno)?;
        self.chown_to_caller(req, &pfd, &entry)?;
        Ok(self.reply_new_entry(&parent, &pfd, b, name)?.0)
    }

    fn do_readlink(&self, ino: INodeNo) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        let (parent, _) = node.parent_and_entry().ok_or(Errno::EINVAL)?;
        let iv = self.dir_iv(&parent)?;
        let (pfd, entry) = self.locate(&node)?;
        let stored = store::read_symlink_sealed(&*pfd, &entry).map_err(|e| {
            if e == SysErrno::IO {
                log::warn!(
                    "{}: the record of its long symlink target is damaged",
                    self.log_name(&node)
                );
            }
            errno(e)
        })?;
        self.names
            .decrypt_symlink_target(&iv, &stored)
            .map_err(|e| {
                log::warn!("{}: symlink target: {e}", self.log_name(&node));
                Errno::EIO
            })
    }

    fn do_rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Res<()> {
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        let parent = self.node(parent)?;
        let newparent = self.node(newparent)?;
        let (pfd, _, ob) = self.child(&parent, name)?;
        let (npfd, _, nb) = self.new_child(&newparent, newname)?;
        let old = cstr(ob.entry());
        let new = cstr(nb.entry());
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        if flags.bits() & !(libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE) != 0 {
            return Err(Errno::EINVAL);
        }
        let src = store::lstat_at(&*pfd, &old).map_err(errno)?;
        if parent.ino == newparent.ino && ob.entry() == nb.entry() {
            return Ok(());
        }
        // A directory renamed over an empty directory: the target still
        // holds its IV file, which must go first.
        let mut restore_iv: Option<(OwnedFd, DirIv)> = None;
        if !exchange
            && !noreplace
            && src.st_mode & libc::S_IFMT == libc::S_IFDIR
            && let Ok(dst) = store::lstat_at(&*npfd, &new)
        {
            if dst.st_mode & libc::S_IFMT != libc::S_IFDIR {
                return Err(Errno::ENOTDIR);
            }
            if dst.st_ino == src.st_ino {
                return Ok(());
            }
            let dfd = store::open_dir_path(&*npfd, &new).map_err(errno)?;
            if self.dir_has_entries(&dfd)? {
                return Err(Errno::ENOTEMPTY);
            }
            if let Ok(iv) = store::read_dir_iv(&dfd) {
                rustix::fs::unlinkat(&dfd, c"veilfs.diriv", AtFlags::empty()).map_err(errno)?;
                restore_iv = Some((dfd, iv));
            }
            self.dir_fds.lock().unwrap().pop(&self.fuse_ino(dst.st_ino));
        }
        // A replaced hard-linked file keeps its other names usable.
        let replaced = if exchange || noreplace {
            None
        } else {
            store::lstat_at(&*npfd, &new)
                .ok()
                .filter(|st| st.st_nlink > 1 && st.st_ino != src.st_ino)
        };
        store::write_long_record(&*npfd, &nb).map_err(errno)?;
        // A symlink with a long target finds its record in its new
        // directory, and its record goes from the old one, as does the
        // record of a long-target symlink the rename replaces.
        let moved_record = if parent.ino != newparent.ino
            && src.st_mode & libc::S_IFMT == libc::S_IFLNK
            && src.st_size as usize == crate::names::LONG_TARGET_LINK_LEN
        {
            store::copy_long_target_record(&*pfd, &old, &*npfd).map_err(errno)?;
            store::long_target_record_of(&*pfd, &old).filter(|_| !exchange && is_long_symlink(&src))
        } else {
            None
        };
        if exchange && parent.ino != newparent.ino {
            store::copy_long_target_record(&*npfd, &new, &*pfd).map_err(errno)?;
        }
        let replaced_record = if exchange || noreplace {
            None
        } else {
            store::lstat_at(&*npfd, &new)
                .ok()
                .filter(|st| is_long_symlink(st) && st.st_ino != src.st_ino)
                .and_then(|_| store::long_target_record_of(&*npfd, &new))
        };
        let mut rflags = rustix::fs::RenameFlags::empty();
        if exchange {
            rflags |= rustix::fs::RenameFlags::EXCHANGE;
        }
        if noreplace {
            rflags |= rustix::fs::RenameFlags::NOREPLACE;
        }
        if let Err(e) = rustix::fs::renameat_with(&*pfd, &old, &*npfd, &new, rflags) {
            if let Some((dfd, iv)) = restore_iv {
                let _ = store::write_dir_iv(&dfd, &iv);
            }
            return Err(errno(e));
        }
        if self.journal.is_on() {
            let from = child_backing_path(&parent, ob.entry());
            let to = child_backing_path(&newparent, nb.entry());
            let op = if exchange {
                crate::journal::NameOp::Exchange { with: to }
            } else {
                crate::journal::NameOp::Rename { to }
            };
            if let Err(e) = self.journal.note(&from, &op) {
                log::warn!("journal: cannot record a rename: {e}");
            }
        }
        for (dir, record) in [(&pfd, moved_record), (&npfd, replaced_record)] {
            if let Some(record) = record {
                let _ = rustix::fs::unlinkat(&**dir, cstr(&record).as_c_str(), AtFlags::empty());
            }
        }
        if exchange {
            store::write_long_record(&*pfd, &ob).map_err(errno)?;
            if let Ok(st) = store::lstat_at(&*pfd, &old) {
                self.nodes.moved(
                    self.fuse_ino(st.st_ino),
                    newparent.ino,
                    nb.entry(),
                    Location {
                        parent: parent.clone(),
                        backing: ob.clone(),
                        plain: name.as_bytes().into(),
                    },
                );
            }
        } else {
            // The old long-name record stays (docs/FORMAT.md §5.3).
            if let Some(dst) = replaced {
                self.nodes
                    .unlinked(self.fuse_ino(dst.st_ino), newparent.ino, nb.entry());
            }
        }
        self.nodes.moved(
            self.fuse_ino(src.st_ino),
            parent.ino,
            ob.entry(),
            Location {
                parent: newparent.clone(),
                backing: nb,
                plain: newname.as_bytes().into(),
            },
        );
        Ok(())
    }

    fn do_link(&self, ino: INodeNo, newparent: INodeNo, newname: &OsStr) -> Res<FileAttr> {
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        let node = self.node(ino)?;
        if node.is_dir {
            return Err(Errno::EPERM);
        }
        let (opfd, old) = self.locate(&node)?;
        let newparent = self.node(newparent)?;
        let (npfd, _, nb) = self.new_child(&newparent, newname)?;
        // Never vouch for links planted before this one. Only regular files
        // are written through, so only they carry link records (a symlink
        // cannot hold a user attribute).
        let st = store::lstat_at(&*opfd, &old).map_err(errno)?;
        let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
        if regular {
            self.refuse_unvouched(&node, &st, |buf| {
                rustix::fs::lgetxattr(
                    self.entry_path(&opfd, &old).as_c_str(),
                    names::LINK_RECORD_XATTR,
                    buf,
                )
            })?;
        }
        store::write_long_record(&*npfd, &nb).map_err(errno)?;
        store::copy_long_target_record(&*opfd, &old, &*npfd).map_err(errno)?;
        let new = cstr(nb.entry());
        rustix::fs::linkat(&*opfd, &old, &*npfd, new.as_c_str(), AtFlags::empty())
            .map_err(errno)?;
        // Vouch for the new link count, or take the link back: a link the
        // mount made must stay writable (see `refuse_planted_links`).
        if regular && let Err(e) = self.record_links(&npfd, &new, st.st_ino, st.st_nlink + 1) {
            log::warn!(
                "{}: cannot record the new hard link ({e:?}); link refused",
                log_name(&node)
            );
            let _ = rustix::fs::unlinkat(&*npfd, new.as_c_str(), AtFlags::empty());
            return Err(e);
        }
        Ok(self.reply_new_entry(&newparent, &npfd, nb, newname)?.0)
    }

    /// A path to `entry` in `dir` for the calls that have no `*at` form
    /// (the xattr calls): through /proc, so nothing is resolved by name
    /// outside the directory descriptor; the `l` calls do not follow a
    /// final symlink.
    fn entry_path(&self, dir: &OwnedFd, entry: &CString) -> CString {
        cstr(&format!(
            "/proc/self/fd/{}/{}",
            dir.as_raw_fd(),
            entry.to_str().unwrap_or("")
        ))
    }

    /// Writes the link record of the regular file `entry` in `dir`, inode
    /// `ino`, which the link just made brought to `nlink` links. Refuses if
    /// it has more: a link added behind the mount's back meanwhile is not
    /// vouched for.
    fn record_links(&self, dir: &OwnedFd, entry: &CString, ino: u64, nlink: u64) -> Res<()> {
        let st = store::lstat_at(dir, entry).map_err(errno)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_ino != ino || st.st_nlink > nlink {
            return Err(Errno::EPERM);
        }
        let record = self.names.link_record(ino, nlink);
        rustix::fs::lsetxattr(
            self.entry_path(dir, entry).as_c_str(),
            names::LINK_RECORD_XATTR,
            &record,
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(errno)
    }

    fn do_open(&self, req_uid: u32, ino: INodeNo, flags: OpenFlags) -> Res<(u64, FopenFlags)> {
        let node = self.node(ino)?;
        if node.is_dir {
            return Err(Errno::EISDIR);
        }
        let flags = flags.0;
        let want_write = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if want_write && self.opts.read_only {
            return Err(Errno::EROFS);
        }
        // Read-modify-write needs to read even a write-only file, so the
        // backing file is always opened for reading too.
        let fd = self.open_backing(&node, want_write)?;
        if flags & libc::O_TRUNC != 0 {
            self.truncate_node(&node, &fd, 0)?;
            // As the VFS does for a truncation by someone without
            // CAP_FSETID (the kernel leaves it to us: HANDLE_KILLPRIV_V2).
            if req_uid != 0 {
                kill_suid_sgid(&fd)?;
            }
        }
        Ok((self.new_handle(node, fd, flags), FopenFlags::empty()))
    }

    /// At close(), after the kernel wrote back its cached pages: records
    /// the backing state the mount's own writes left, while the app still
    /// waits in close(). Release comes later, asynchronously, and a sync
    /// client may change the file in between; that change must not be
    /// taken for the mount's own (see [`Node::seen`]).
    fn do_flush(&self, fh: FileHandle) {
        let Ok(handle) = self.handle(fh) else {
            return;
        };
        let _open = handle.node.open.lock().unwrap();
        let mut data = handle.node.data.write().unwrap();
        self.note_own_writes(&handle, &mut data);
    }

    /// Records the backing state the mount's own writes left (see
    /// [`Node::seen`]), unless the backing file's size is not the one the
    /// kernel holds: then a sync client changed it while it was open, and
    /// `seen` keeps the old state so the next lookup refreshes the kernel's
    /// view.
    fn note_own_writes(&self, handle: &Handle, data: &mut node::FileData) {
        if !std::mem::take(&mut data.written) {
            return;
        }
        let Ok(st) = store::stat_fd(&*handle.fd) else {
            return;
        };
        let plain = self.content.layout().plain_size(st.st_size as u64);
        match data.kernel_size {
            Some(k) if self.opts.writeback_cache && k != plain => log::debug!(
                "{}: changed behind the mount while open ({plain} bytes, the kernel has {k})",
                self.log_name(&handle.node)
            ),
            _ => handle.node.note_backing(&st),
        }
    }

    fn do_release(&self, fh: FileHandle) {
        let Some(handle) = self.handles.write().unwrap().remove(&fh.0) else {
            return;
        };
        self.activity.closed();
        let mut open = handle.node.open.lock().unwrap();
        open.handles = open.handles.saturating_sub(1);
        if open.handles == 0 {
            let mut data = handle.node.data.write().unwrap();
            // What the mount itself wrote is not a change behind its back;
            // a file it only read is left as the kernel last saw it, so a
            // change a sync client made meanwhile is still found.
            self.note_own_writes(&handle, &mut data);
            open.fd = None;
            open.writable = false;
            // The next open reads the header afresh: a sync client may
            // replace the file while nobody has it open.
            data.header = None;
            data.header_checked = false;
        }
    }

    fn do_readdir_list(&self, ino: INodeNo, fh: FileHandle, offset: u64) -> Res<Arc<Node>> {
        let node = self.node(ino)?;
        if offset == 0 {
            let entries = self.list(&node)?;
            self.dir_handles
                .lock()
                .unwrap()
                .insert(fh.0, DirHandle { entries });
        }
        Ok(node)
    }

    fn parent_ino(&self, node: &Node) -> u64 {
        node.parent_and_entry()
            .map(|(p, _)| p.ino)
            .unwrap_or(INodeNo::ROOT.0)
    }

    fn do_getxattr(&self, ino: INodeNo, name: &OsStr) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        let Some(user) = name.as_bytes().strip_prefix(b"user.") else {
            return Err(Errno::NO_XATTR);
        };
        let (_keep, path) = self.xattr_path(&node)?;
        let mut buf = vec![0u8; 65536 + 64];
        // Padded names (version 2) first; attributes written before
        // padding are found under their old names (docs/FORMAT.md §7).
        let bname = self.names.encrypt_xattr_name(user);
        let (bname, version, n) =
            match rustix::fs::lgetxattr(path.as_c_str(), cstr(&bname).as_c_str(), &mut buf[..]) {
                Ok(n) => (bname, XattrVersion::V2, n),
                Err(SysErrno::NODATA) => {
                    let old = self.names.encrypt_xattr_name_v1(user);
                    let n =
                        rustix::fs::lgetxattr(path.as_c_str(), cstr(&old).as_c_str(), &mut buf[..])
                            .map_err(errno)?;
                    (old, XattrVersion::V1, n)
                }
                Err(e) => return Err(errno(e)),
            };
        buf.truncate(n);
        let id = match version {
            XattrVersion::V2 => xattr_entry_id(&path),
            XattrVersion::V1 => None,
        };
        self.names
            .decrypt_xattr_value(&bname, version, id.as_ref(), buf)
            .map_err(|e| {
                log::warn!(
                    "{}: extended attribute {name:?}: {e} (tampered, or copied from another \
                     entry)",
                    self.log_name(&node)
                );
                Errno::EIO
            })
    }

    fn do_setxattr(&self, ino: INodeNo, name: &OsStr, value: &[u8], flags: i32) -> Res<()> {
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        let node = self.node(ino)?;
        let Some(user) = name.as_bytes().strip_prefix(b"user.") else {
            return Err(Errno::EOPNOTSUPP);
        };
        if user.is_empty() {
            return Err(Errno::EINVAL);
        }
        let bname = self.names.encrypt_xattr_name(user);
        let old = cstr(&self.names.encrypt_xattr_name_v1(user));
        let (_keep, path) = self.xattr_path(&node)?;
        let mut xflags = rustix::fs::XattrFlags::from_bits_truncate(flags as u32);
        // The attribute may exist under its unpadded name (written before
        // padding): it is replaced by the padded one.
        let old_exists =
            rustix::fs::lgetxattr(path.as_c_str(), old.as_c_str(), &mut [0u8; 0][..]).is_ok();
        if old_exists {
            if xflags.contains(rustix::fs::XattrFlags::CREATE) {
                return Err(Errno::EEXIST);
            }
            xflags.remove(rustix::fs::XattrFlags::REPLACE);
        }
        let id = ensure_xattr_entry_id(&path).map_err(errno)?;
        let enc = self.names.encrypt_xattr_value(&bname, &id, value);
        rustix::fs::lsetxattr(path.as_c_str(), cstr(&bname).as_c_str(), &enc, xflags)
            .map_err(errno)?;
        if old_exists {
            match rustix::fs::lremovexattr(path.as_c_str(), old.as_c_str()) {
                Ok(()) | Err(SysErrno::NODATA) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        Ok(())
    }

    fn do_listxattr(&self, ino: INodeNo) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        let (_keep, path) = self.xattr_path(&node)?;
        let mut buf = vec![0u8; 65536];
        let n = rustix::fs::llistxattr(path.as_c_str(), &mut buf[..]).map_err(errno)?;
        let mut out = Vec::new();
        let mut seen: Vec<Vec<u8>> = Vec::new();
        for raw in buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
            let Ok(s) = std::str::from_utf8(raw) else {
                continue;
            };
            if let Ok((plain, _)) = self.names.decrypt_xattr_name(s) {
                // Both forms of one name exist only if a crash interrupted
                // the replacement of an unpadded name in setxattr.
                if seen.contains(&plain) {
                    continue;
                }
                out.extend_from_slice(b"user.");
                out.extend_from_slice(&plain);
                out.push(0);
                seen.push(plain);
            }
        }
        Ok(out)
    }

    fn do_removexattr(&self, ino: INodeNo, name: &OsStr) -> Res<()> {
        if self.opts.read_only {
            return Err(Errno::EROFS);
        }
        let node = self.node(ino)?;
        let Some(user) = name.as_bytes().strip_prefix(b"user.") else {
            return Err(Errno::NO_XATTR);
        };
        let bname = self.names.encrypt_xattr_name(user);
        let (_keep, path) = self.xattr_path(&node)?;
        match rustix::fs::lremovexattr(path.as_c_str(), cstr(&bname).as_c_str()) {
            Err(SysErrno::NODATA) => {
                let old = self.names.encrypt_xattr_name_v1(user);
                rustix::fs::lremovexattr(path.as_c_str(), cstr(&old).as_c_str()).map_err(errno)
            }
            r => r.map_err(errno),
        }
    }

    fn do_fallocate(&self, fh: FileHandle, offset: u64, length: u64, mode: i32) -> Res<()> {
        let handle = self.handle(fh)?;
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
        if mode & libc::FALLOC_FL_KEEP_SIZE != 0 {
            return Ok(());
        }
        let size = CryptFile::new(&*handle.fd, &self.content, None)
            .plain_size()
            .map_err(Errno::from)?;
        if end > size {
            self.truncate_node(&handle.node, &handle.fd, end)?;
        }
        Ok(())
    }
}

/// The entry ID its attribute values are bound to (docs/FORMAT.md §7), if
/// it has one. `path` is an [`VeilFs::xattr_path`].
fn xattr_entry_id(path: &CStr) -> Option<[u8; XATTR_ID_LEN]> {
    let mut id = [0u8; XATTR_ID_LEN + 1];
    match rustix::fs::lgetxattr(path, cstr(XATTR_ID_NAME).as_c_str(), &mut id[..]) {
        Ok(XATTR_ID_LEN) => id[..XATTR_ID_LEN].try_into().ok(),
        _ => None,
    }
}

/// The entry's ID, created (16 random bytes) if it has none yet.
fn ensure_xattr_entry_id(path: &CStr) -> Result<[u8; XATTR_ID_LEN], SysErrno> {
    if let Some(id) = xattr_entry_id(path) {
        return Ok(id);
    }
    let mut id = [0u8; XATTR_ID_LEN];
    getrandom::fill(&mut id).expect("the OS random number generator failed");
    let name = cstr(XATTR_ID_NAME);
    match rustix::fs::lsetxattr(path, name.as_c_str(), &id, rustix::fs::XattrFlags::CREATE) {
        Ok(()) => Ok(id),
        // Set by a concurrent setxattr, or present but damaged: a damaged
        // ID is replaced, which the values bound to it then report.
        Err(SysErrno::EXIST) => match xattr_entry_id(path) {
            Some(id) => Ok(id),
            None => {
                rustix::fs::lsetxattr(path, name.as_c_str(), &id, rustix::fs::XattrFlags::REPLACE)?;
                Ok(id)
            }
        },
        Err(e) => Err(e),
    }
}

impl Node {
    fn parent_and_plain(&self) -> Option<(Arc<Node>, Box<[u8]>)> {
        let loc = self.location.lock().unwrap();
        loc.as_ref().map(|l| (l.parent.clone(), l.plain.clone()))
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
        let res = self.node(parent).and_then(|p| self.do_lookup(&p, name));
        match res {
            Ok((node, st)) => reply.entry(
                &self.opts.ttl,
                &self.attr(node.ino, &st),
                Generation(self.lookup_generation(&node, &st)),
            ),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.nodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let res = (|| {
            if let Some(h) = fh.and_then(|fh| self.handle(fh).ok()) {
                let st = store::stat_fd(&*h.fd).map_err(errno)?;
                return Ok(self.attr(h.node.ino, &st));
            }
            let node = self.node(ino)?;
            let st = self.stat_node(&node)?;
            Ok(self.attr(node.ino, &st))
        })();
        match res {
            Ok(attr) => reply.attr(&self.opts.ttl, &attr),
            Err(e) => reply.error(e),
        }
        self.linger();
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
        if self.opts.read_only {
            return reply.error(Errno::EROFS);
        }
        let res = self.retry_when_space_frees(|| {
            self.do_setattr(ino, mode, uid, gid, size, atime, mtime, fh)
        });
        match res {
            Ok(attr) => reply.attr(&self.opts.ttl, &attr),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.do_readlink(ino) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
        self.linger();
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
        match self.do_mknod(req, parent, name, mode, rdev) {
            Ok(attr) => reply.entry(&self.opts.ttl, &attr, self.generation_of(attr.ino.0)),
            Err(e) => reply.error(e),
        }
        self.linger();
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
        match self.do_mkdir(req, parent, name, mode) {
            Ok(attr) => reply.entry(&self.opts.ttl, &attr, self.generation_of(attr.ino.0)),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if self.opts.read_only {
            return reply.error(Errno::EROFS);
        }
        match self.do_unlink(parent, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if self.opts.read_only {
            return reply.error(Errno::EROFS);
        }
        match self.do_rmdir(parent, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        match self.do_symlink(req, parent, link_name, target) {
            Ok(attr) => reply.entry(&self.opts.ttl, &attr, self.generation_of(attr.ino.0)),
            Err(e) => reply.error(e),
        }
        self.linger();
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
        match self.do_rename(parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.do_link(ino, newparent, newname) {
            Ok(attr) => reply.entry(&self.opts.ttl, &attr, self.generation_of(attr.ino.0)),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.do_open(req.uid(), ino, flags) {
            Ok((fh, fl)) => reply.opened(FileHandle(fh), fl),
            Err(e) => reply.error(e),
        }
        self.linger();
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
        let res = self.do_write(fh, offset, data).and_then(|n| {
            if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
                let handle = self.handle(fh)?;
                kill_suid_sgid(&handle.fd)?;
            }
            Ok(n)
        });
        match res {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
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
        self.do_flush(fh);
        reply.ok();
        self.linger();
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
        self.do_release(fh);
        reply.ok();
        self.linger();
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
        let fd = match self.handle(fh) {
            Ok(h) => h.fd.clone(),
            Err(e) => return reply.error(e),
        };
        let journal = self.journal.clone();
        self.flushers.run(Box::new(move || {
            // The records of the rewrites this fsync flushes reach the disk
            // first: a power cut during the flush must find them there.
            if let Err(e) = journal.sync() {
                log::warn!("fsync: cannot make the rewrite journal durable: {e}");
                return reply.error(Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO)));
            }
            let res = if datasync {
                rustix::fs::fdatasync(&*fd)
            } else {
                rustix::fs::fsync(&*fd)
            };
            // Not held past the reply: the program may close and unlink
            // the file next, and this descriptor would keep its blocks.
            drop(fd);
            match res {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        }));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self
            .node(ino)
            .and_then(|n| if n.is_dir { Ok(n) } else { Err(Errno::ENOTDIR) })
            .and_then(|n| {
                // Fail at opendir, as ext4 does, not at the first readdir.
                if !self.opts.kernel_checks_permissions {
                    let fd = self.dir_fd(&n)?;
                    rustix::fs::accessat(&*fd, c".", Access::READ_OK, AtFlags::EACCESS)
                        .map_err(errno)?;
                }
                Ok(n)
            }) {
            Ok(_) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.activity.opened();
                self.dir_handles.lock().unwrap().insert(
                    fh,
                    DirHandle {
                        entries: Vec::new(),
                    },
                );
                reply.opened(FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let node = match self.do_readdir_list(ino, fh, offset) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let handles = self.dir_handles.lock().unwrap();
        let Some(dh) = handles.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let dots = [(node.ino, "."), (self.parent_ino(&node), "..")];
        let mut i = offset as usize;
        while i < dots.len() {
            if reply.add(
                INodeNo(dots[i].0),
                (i + 1) as u64,
                FileType::Directory,
                dots[i].1,
            ) {
                return reply.ok();
            }
            i += 1;
        }
        for (k, (ino, kind, name, _)) in dh.entries.iter().enumerate().skip(i - dots.len()) {
            if reply.add(INodeNo(*ino), (k + dots.len() + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
        self.linger();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let node = match self.do_readdir_list(ino, fh, offset) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let dfd = match self.dir_fd(&node) {
            Ok(fd) => fd,
            Err(e) => return reply.error(e),
        };
        let entries: Vec<(u64, FileType, OsString, String)> = {
            let handles = self.dir_handles.lock().unwrap();
            match handles.get(&fh.0) {
                Some(dh) => dh
                    .entries
                    .iter()
                    .skip((offset as usize).saturating_sub(2))
                    .take(512)
                    .cloned()
                    .collect(),
                None => return reply.error(Errno::EBADF),
            }
        };
        let mut i = offset as usize;
        if i < 2 {
            let st = match store::stat_fd(&*dfd) {
                Ok(st) => st,
                Err(e) => return reply.error(errno(e)),
            };
            let attr = self.attr(node.ino, &st);
            let parent = self.parent_ino(&node);
            // The kernel takes no reference for "." and "..".
            for (k, (ino, name)) in [(node.ino, "."), (parent, "..")]
                .into_iter()
                .enumerate()
                .skip(i)
            {
                let mut a = attr;
                a.ino = INodeNo(ino);
                if reply.add(
                    INodeNo(ino),
                    (k + 1) as u64,
                    name,
                    &Duration::ZERO,
                    &a,
                    Generation(0),
                ) {
                    return reply.ok();
                }
            }
            i = 2;
        }
        for (k, (_, _, name, backing)) in entries.into_iter().enumerate() {
            let off = (i + k + 1) as u64;
            let Ok(st) = store::lstat_at(&*dfd, cstr(&backing).as_c_str()) else {
                continue;
            };
            // Not a suffix test: a conflict copy shown as is may end in .vln.
            let backing_name = if matches!(
                crate::names::classify_entry(&backing),
                crate::names::EntryKind::Long(_)
            ) {
                match store::read_long_record(&*dfd, &backing) {
                    Ok(full) => BackingName::Long {
                        entry: backing,
                        full,
                    },
                    Err(_) => continue,
                }
            } else {
                BackingName::Regular(backing)
            };
            // Every entry handed out counts as a lookup for the kernel, so
            // it is remembered before it is added, and given back if the
            // reply is full.
            let child = self.remember(&node, &st, backing_name, name.as_bytes());
            let attr = self.attr(child.ino, &st);
            let generation = Generation(self.lookup_generation(&child, &st));
            if reply.add(
                INodeNo(child.ino),
                off,
                &name,
                &self.opts.ttl,
                &attr,
                generation,
            ) {
                self.nodes.forget(child.ino, 1);
                break;
            }
        }
        reply.ok();
        self.linger();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        if self.dir_handles.lock().unwrap().remove(&fh.0).is_some() {
            self.activity.closed();
        }
        reply.ok();
        self.linger();
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
        let fd = self
            .node(ino)
            .and_then(|n| self.dir_fd(&n))
            .and_then(|fd| store::open_dir_read(&*fd).map_err(errno));
        match fd {
            Ok(fd) => self
                .flushers
                .run(Box::new(move || match rustix::fs::fsync(&fd) {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(errno(e)),
                })),
            Err(e) => reply.error(e),
        }
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
        match self.do_setxattr(ino, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.do_getxattr(ino, name) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.do_listxattr(ino) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.do_removexattr(ino, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
        self.linger();
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.do_access(ino, mask) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
        self.linger();
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
        match self.retry_when_space_frees(|| self.do_create(req, parent, name, mode, flags)) {
            Ok((attr, fh)) => reply.created(
                &self.opts.ttl,
                &attr,
                self.generation_of(attr.ino.0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
        self.linger();
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
        if self.opts.read_only {
            return reply.error(Errno::EROFS);
        }
        match self.retry_when_space_frees(|| self.do_fallocate(fh, offset, length, mode)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
