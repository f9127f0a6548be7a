//! Regular-file operations: open, read, write, fallocate, create, flush,
//! release, and the backing-descriptor checks they share.

use super::*;

/// A write request at least this big is part of a stream (the kernel
/// sends cached writes in requests of up to 1 MiB).
pub(super) const STREAMING_WRITE: usize = 128 << 10;

/// Start write-back of a stream's backing file every this many bytes.
/// (32 MiB, not 8: each step fdatasyncs the journal first; measured in
/// docs/PERFORMANCE.md, "Fourth round".)
pub(super) const WRITEBACK_STEP: u64 = 32 << 20;

/// Starts (does not wait for) write-back of the backing bytes a stream has
/// written since the last call, once there are `WRITEBACK_STEP` of them.
/// The backing filesystem would otherwise hold them all dirty until the
/// app's fsync and write them only then; started early, the disk works
/// while the daemon encrypts the next megabytes.
///
/// The range can hold chunks rewritten in place, and their records must
/// reach the disk before they do (docs/FORMAT.md §10): the journal is made
/// durable first, and when it cannot be, the write-back is left to the
/// kernel's own schedule.
pub(super) fn start_writeback(fd: &OwnedFd, started: &mut u64, end: u64, journal: &Journal) {
    if end < *started {
        *started = 0;
    }
    if end - *started < WRITEBACK_STEP {
        return;
    }
    if let Err(e) = journal.sync() {
        log::warn!("rewrite journal: fdatasync failed, write-back not started early: {e}");
        return;
    }
    if let Err(e) = store::start_write_back(fd, *started..end) {
        log::debug!("sync_file_range: {e}");
    }
    *started = end;
}

/// How far ahead of a streaming read the backing file is read, and in
/// what pieces: several requests in flight keep a disk busier than the
/// one stream the backing filesystem's own read-ahead makes.
pub(super) const READ_AHEAD_WINDOW: u64 = 16 << 20;

pub(super) const READ_AHEAD_PIECE: u64 = 2 << 20;

/// Asks the kernel to read the backing file ahead of a streaming read
/// (asynchronously: `POSIX_FADV_WILLNEED` starts I/O and returns).
pub(super) fn read_ahead(fd: &OwnedFd, ahead_to: &AtomicU64, end: u64) {
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
pub(super) fn kill_suid_sgid(fd: &OwnedFd) -> Res<()> {
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

/// Authenticates the file once before the first write or truncation
/// reuses its header (issue 13: "file ID poisoning"); `data` is the node's
/// content state, write-locked by the caller.
pub(super) fn authenticate_once<Fd: AsFd>(
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
pub(super) fn serve_read(
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

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The cached header of an open file if the backing file still starts
/// with it, else `None` (the file is read afresh). A sync client may
/// rewrite the file in place while it is open; a chunk written or cut
/// under the old header would not authenticate under the new one and
/// would damage the other device's version. One 18-byte pread from the
/// page cache per write or truncation.
pub(super) fn still_on_disk(fd: impl AsFd, cached: Option<FileHeader>) -> Option<FileHeader> {
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

impl VeilFs {
    /// The shared backing descriptor of a file node, opened on first use.
    /// For writing (and truncating) only if every hard link of the backing
    /// file is one the mount made (see [`VeilFs::refuse_planted_links`]).
    pub(super) fn open_backing(&self, node: &Arc<Node>, want_write: bool) -> Res<Arc<OwnedFd>> {
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
    pub(super) fn refuse_planted_links(&self, node: &Node, fd: &OwnedFd) -> Res<()> {
        let st = store::stat_fd(fd).map_err(errno)?;
        self.refuse_unvouched(node, &st, |buf| {
            rustix::fs::fgetxattr(fd, names::LINK_RECORD_XATTR, buf)
        })
    }

    /// [`VeilFs::refuse_planted_links`] for a file in state `st` whose
    /// link record `read_record` reads.
    pub(super) fn refuse_unvouched(
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

    pub(super) fn open_backing_fd(&self, node: &Arc<Node>, want_write: bool) -> Res<Arc<OwnedFd>> {
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
    pub(super) fn expect_regular(&self, node: &Node, st: &Stat) -> Res<()> {
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

    pub(super) fn new_handle(&self, node: Arc<Node>, fd: Arc<OwnedFd>, flags: i32) -> u64 {
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

    pub(super) fn handle(&self, fh: FileHandle) -> Res<Arc<Handle>> {
        self.handles
            .read()
            .unwrap()
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    pub(super) fn truncate_node(&self, node: &Arc<Node>, fd: &OwnedFd, size: u64) -> Res<()> {
        let path = backing_path(node);
        let mut data = node.data.write().unwrap();
        let header = still_on_disk(fd, data.header);
        if header.is_none() {
            // Read afresh (or changed on disk): authenticate it again.
            data.header_checked = false;
        }
        let mut recorded = std::mem::take(&mut data.recorded);
        let mut file = CryptFile::new(fd, &self.content, header).with_journal(
            &self.journal,
            node.ino,
            &path,
            &mut recorded,
        );
        if size > 0 {
            authenticate_once(node, &mut data, &mut file)?;
        }
        let res = file.truncate(size);
        data.header = file.header();

        data.recorded = recorded;
        data.written = true;
        data.kernel_size = Some(size);
        res.map_err(|e| {
            log_content_error(node, "truncate", &e);
            Errno::from_i32(e.errno())
        })
    }

    pub(super) fn do_read(&self, fh: FileHandle, offset: u64, size: u32, reply: ReplyData) {
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

    pub(super) fn do_write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Res<u32> {
        self.retry_when_space_frees(|| self.write_once(fh, offset, data))
    }

    /// Runs `op` again once deleted files' space is free, if it failed
    /// for want of space while some was still being reclaimed.
    pub(super) fn retry_when_space_frees<T>(&self, op: impl Fn() -> Res<T>) -> Res<T> {
        match op() {
            Err(Errno::ENOSPC) if self.reclaimer.is_busy() => {
                self.reclaimer.drain();
                op()
            }
            res => res,
        }
    }

    pub(super) fn write_once(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Res<u32> {
        let handle = self.handle(fh)?;
        // Where the file is now (renames are journaled too, so recovery
        // follows them).
        let path = backing_path(&handle.node);
        let mut state = handle.node.data.write().unwrap();
        let header = still_on_disk(&*handle.fd, state.header);
        if header.is_none() {
            state.header_checked = false;
        }
        let mut recorded = std::mem::take(&mut state.recorded);
        let mut file = CryptFile::new(&*handle.fd, &self.content, header).with_journal(
            &self.journal,
            handle.node.ino,
            &path,
            &mut recorded,
        );
        authenticate_once(&handle.node, &mut state, &mut file)?;
        let offset = if handle.append {
            file.plain_size().map_err(Errno::from)?
        } else {
            offset
        };
        let res = file.write_at(offset, data);
        state.header = file.header();

        state.recorded = recorded;
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
                    start_writeback(&handle.fd, &mut state.writeback_started, end, &self.journal);
                }
                Ok(data.len() as u32)
            }
            Err(e) => {
                log_content_error(&handle.node, &format!("write at offset {offset}"), &e);
                Err(Errno::from_i32(e.errno()))
            }
        }
    }

    pub(super) fn do_create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Res<(FileAttr, u64)> {
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

    pub(super) fn do_open(
        &self,
        req_uid: u32,
        ino: INodeNo,
        flags: OpenFlags,
    ) -> Res<(u64, FopenFlags)> {
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
    pub(super) fn do_flush(&self, fh: FileHandle) -> Res<()> {
        // A handle already gone has nothing to flush: never an error.
        let Ok(handle) = self.handle(fh) else {
            return Ok(());
        };
        let _open = handle.node.open.lock().unwrap();
        let mut data = handle.node.data.write().unwrap();
        self.note_own_writes(&handle, &mut data);
        Ok(())
    }

    /// Records the backing state the mount's own writes left (see
    /// [`Node::seen`]), unless the backing file's size is not the one the
    /// kernel holds: then a sync client changed it while it was open, and
    /// `seen` keeps the old state so the next lookup refreshes the kernel's
    /// view.
    pub(super) fn note_own_writes(&self, handle: &Handle, data: &mut node::FileData) {
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

    pub(super) fn do_release(&self, fh: FileHandle) -> Res<()> {
        let Some(handle) = self.handles.write().unwrap().remove(&fh.0) else {
            return Ok(());
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
        Ok(())
    }

    pub(super) fn do_fallocate(
        &self,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Res<()> {
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

    /// Flushes the file on a helper thread, which replies, so that a long
    /// disk flush never holds up the thread that serves every request.
    pub(super) fn do_fsync(&self, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let (fd, file, mark) = match self.handle(fh) {
            Ok(h) => {
                let mut data = h.node.data.write().unwrap();
                // Every rewrite after this point needs a record of its own:
                // what it may tear is about to be durable. Forgotten before
                // the flush starts, so a write racing with it errs on the
                // side of a record.
                data.recorded.forget();
                // No write of the file is under way (they hold this lock):
                // every record below the mark is of a write the flush
                // will make durable.
                let mark = self.journal.mark();
                (h.fd.clone(), h.node.ino, mark)
            }
            Err(e) => return reply.error(e),
        };
        let journal = self.journal.clone();
        let ivs = self.ivs.waiter();
        self.flushers.run(Box::new(move || {
            // New directories' IV files first: the file may be in one.
            if let Err(e) = ivs.wait() {
                return reply.error(errno(e));
            }
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
                Ok(()) => {
                    journal.synced(file, mark);
                    reply.ok()
                }
                Err(e) => reply.error(errno(e)),
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cryptfile::journal::NameOp;

    /// Early write-back of a stream can carry chunks rewritten in place to
    /// the disk: their records must be durable before it starts.
    #[test]
    fn early_write_back_makes_the_journal_durable_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::File::open(dir.path()).unwrap();
        let journal = Journal::open(&dir.path().join("state"), &root).unwrap();
        journal.note(b"f", &NameOp::Unlink).unwrap();
        assert!(journal.unsynced());
        let data = OwnedFd::from(std::fs::File::create(dir.path().join("data")).unwrap());
        let mut started = 0;
        start_writeback(&data, &mut started, WRITEBACK_STEP - 1, &journal);
        assert!(journal.unsynced(), "less than a step: nothing started");
        assert_eq!(started, 0);
        start_writeback(&data, &mut started, WRITEBACK_STEP, &journal);
        assert!(
            !journal.unsynced(),
            "write-back started before the records were durable"
        );
        assert_eq!(started, WRITEBACK_STEP);
    }
}
