//! Directory operations: mknod, mkdir, rmdir, unlink, rename, link,
//! symlink, readlink and directory listing.

use super::*;

/// Whether `st` is a backing symlink with a long target (its record
/// beside it, docs/FORMAT.md §7) and no other hard link, so that the
/// record goes when this name goes.
pub(super) fn is_long_symlink(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
        && st.st_nlink == 1
        && st.st_size as usize == crate::names::LONG_TARGET_LINK_LEN
}

/// Plaintext length of a symlink target stored as base64url of
/// nonce || ciphertext || tag, computed without decrypting.
pub(super) fn symlink_plain_len(stored_len: u64) -> u64 {
    let decoded = stored_len / 4 * 3 + [0, 0, 1, 2][(stored_len % 4) as usize];
    decoded.saturating_sub(28)
}

impl VeilFs {
    /// Whether a backing directory holds anything but its IV file and
    /// long-name records left by deletions. When it does not, those
    /// leftover records are removed so the directory can go.
    pub(super) fn dir_has_entries(&self, dir: &OwnedFd) -> Res<bool> {
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

    pub(super) fn list(&self, node: &Arc<Node>) -> Res<Vec<(u64, FileType, OsString, String)>> {
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

    pub(super) fn do_mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> Res<FileAttr> {
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

    pub(super) fn do_mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
    ) -> Res<FileAttr> {
        let parent = self.node(parent)?;
        let (pfd, iv, b) = self.new_child(&parent, name)?;
        store::write_long_record(&*pfd, &b).map_err(errno)?;
        let entry = cstr(b.entry());
        rustix::fs::mkdirat(&*pfd, &entry, Mode::from_raw_mode(mode & 0o7777)).map_err(errno)?;
        let child_iv = self.names.new_dir_iv(&iv, name.as_bytes());
        let written = store::open_dir_path(&*pfd, &entry)
            .and_then(|dfd| store::write_dir_iv_unsynced(&dfd, &child_iv));
        match written {
            // Durable before any fsync through the mount returns.
            Ok(iv_file) => {
                if let Err(e) = self.ivs.submit(iv_file) {
                    let _ = rustix::fs::unlinkat(&*pfd, &entry, AtFlags::REMOVEDIR);
                    return Err(errno(e));
                }
            }
            Err(e) => {
                let _ = rustix::fs::unlinkat(&*pfd, &entry, AtFlags::REMOVEDIR);
                return Err(errno(e));
            }
        }
        self.chown_to_caller(req, &pfd, &entry)?;
        let (attr, node) = self.reply_new_entry(&parent, &pfd, b, name)?;
        // The IV just written is the directory's, whatever an earlier
        // directory on the same inode number left cached.
        node.dir_iv.replace(child_iv);
        Ok(attr)
    }

    pub(super) fn do_unlink(&self, parent: INodeNo, name: &OsStr) -> Res<()> {
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
        if let Some(st) = &st
            && st.st_nlink > 1
        {
            self.settle_records(st, &pfd, &entry)?;
        }
        rustix::fs::unlinkat(&*pfd, &entry, AtFlags::empty()).map_err(errno)?;
        if self.journal.is_on() && st.is_some() {
            let path = child_backing_path(&parent, b.entry());
            if let Err(e) = self
                .journal
                .note(&path, &crate::cryptfile::journal::NameOp::Unlink)
            {
                log::debug!("journal: cannot record an unlink: {e}");
            }
        }
        if let Some(record) = target_record {
            match rustix::fs::unlinkat(&*pfd, cstr(&record).as_c_str(), AtFlags::empty()) {
                Ok(()) | Err(SysErrno::NOENT) => {}
                Err(e) => log::warn!("could not remove long-target record {record}: {e}"),
            }
        }
        if let Some(st) = st.filter(|st| st.st_nlink <= 1) {
            self.nodes.last_link_removed(self.fuse_ino(st.st_ino));
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

    /// Before a name of a hard-linked file goes (an unlink, or a rename
    /// over it) and the journal forgets the records written under that
    /// name: recovery finds records by path, and the file lives on under
    /// another one. So the rewrites those records protect are made durable
    /// first, as the app's fsync would make them; then the records are
    /// moot. Nothing to do when no write since the file's last fsync was
    /// recorded, the usual case.
    fn settle_records(&self, st: &Stat, pfd: &OwnedFd, entry: &CStr) -> Res<()> {
        let ino = self.fuse_ino(st.st_ino);
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || !self.journal.holds_unsynced(ino) {
            return Ok(());
        }
        let fd = openat(
            pfd,
            entry,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let node = self.nodes.get(ino);
        // No write of the file runs meanwhile: each holds this lock from
        // its record to its last byte.
        let mut data = node.as_ref().map(|n| n.data.write().unwrap());
        if let Some(data) = data.as_mut() {
            data.recorded.forget();
        }
        let mark = self.journal.mark();
        let io = |e: std::io::Error| Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO));
        self.journal.sync().map_err(io)?;
        rustix::fs::fdatasync(&fd).map_err(errno)?;
        self.journal.synced(ino, mark);
        Ok(())
    }

    /// Removes an empty backing directory: its IV file first, put back if
    /// the directory turns out not to be removable.
    pub(super) fn remove_empty_dir(&self, pfd: &OwnedFd, entry: &CString) -> Res<u64> {
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

    pub(super) fn do_rmdir(&self, parent: INodeNo, name: &OsStr) -> Res<()> {
        let parent = self.node(parent)?;
        let (pfd, _, b) = self.child(&parent, name)?;
        let entry = cstr(b.entry());
        let st = store::lstat_at(&*pfd, &entry).map_err(errno)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(Errno::ENOTDIR);
        }
        let backing_ino = self.remove_empty_dir(&pfd, &entry)?;
        let ino = self.fuse_ino(backing_ino);
        self.dir_fds.lock().unwrap().pop(&ino);
        // The kernel may hold the inode a while yet; its number may come
        // back as another directory.
        if let Some(node) = self.nodes.get(ino) {
            node.dir_iv.clear();
        }
        // The long-name record stays (docs/FORMAT.md §5.3): see
        // check::ProblemKind::is_damage.
        Ok(())
    }

    pub(super) fn do_symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        target: &std::path::Path,
    ) -> Res<FileAttr> {
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

    pub(super) fn do_readlink(&self, ino: INodeNo) -> Res<Vec<u8>> {
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

    pub(super) fn do_rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Res<()> {
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
            let replaced = self.fuse_ino(dst.st_ino);
            self.dir_fds.lock().unwrap().pop(&replaced);
            if let Some(node) = self.nodes.get(replaced) {
                node.dir_iv.clear();
            }
        }
        // The file the rename replaces: a hard-linked one keeps its other
        // names usable, any other loses its last name.
        let replaced = if exchange || noreplace {
            None
        } else {
            store::lstat_at(&*npfd, &new)
                .ok()
                .filter(|st| st.st_ino != src.st_ino && st.st_mode & libc::S_IFMT != libc::S_IFDIR)
        };
        if let Some(st) = replaced.as_ref().filter(|st| st.st_nlink > 1) {
            self.settle_records(st, &npfd, &new)?;
        }
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
                crate::cryptfile::journal::NameOp::Exchange { with: to }
            } else {
                crate::cryptfile::journal::NameOp::Rename { to }
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
            match replaced {
                Some(dst) if dst.st_nlink > 1 => {
                    self.nodes
                        .unlinked(self.fuse_ino(dst.st_ino), newparent.ino, nb.entry());
                }
                Some(dst) => self.nodes.last_link_removed(self.fuse_ino(dst.st_ino)),
                None => {}
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

    pub(super) fn do_link(
        &self,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
    ) -> Res<FileAttr> {
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
    pub(super) fn entry_path(&self, dir: &OwnedFd, entry: &CString) -> CString {
        crate::store::xattr::entry_path(dir, entry)
    }

    /// Writes the link record of the regular file `entry` in `dir`, inode
    /// `ino`, which the link just made brought to `nlink` links. Refuses if
    /// it has more: a link added behind the mount's back meanwhile is not
    /// vouched for.
    pub(super) fn record_links(
        &self,
        dir: &OwnedFd,
        entry: &CString,
        ino: u64,
        nlink: u64,
    ) -> Res<()> {
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

    pub(super) fn do_readdir_list(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
    ) -> Res<Arc<Node>> {
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

    pub(super) fn do_opendir(&self, ino: INodeNo) -> Res<u64> {
        let n = self.node(ino)?;
        if !n.is_dir {
            return Err(Errno::ENOTDIR);
        }
        // Fail at opendir, as ext4 does, not at the first readdir.
        if !self.opts.kernel_checks_permissions {
            let fd = self.dir_fd(&n)?;
            rustix::fs::accessat(&*fd, c".", Access::READ_OK, AtFlags::EACCESS).map_err(errno)?;
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.activity.opened();
        self.dir_handles.lock().unwrap().insert(
            fh,
            DirHandle {
                entries: Vec::new(),
            },
        );
        Ok(fh)
    }

    /// Adds the entries of the listing from `offset` on to `reply`, until
    /// it is full.
    pub(super) fn fill_readdir(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: &mut ReplyDirectory,
    ) -> Res<()> {
        let node = self.do_readdir_list(ino, fh, offset)?;
        let handles = self.dir_handles.lock().unwrap();
        let Some(dh) = handles.get(&fh.0) else {
            return Err(Errno::EBADF);
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
                return Ok(());
            }
            i += 1;
        }
        for (k, (ino, kind, name, _)) in dh.entries.iter().enumerate().skip(i - dots.len()) {
            if reply.add(INodeNo(*ino), (k + dots.len() + 1) as u64, *kind, name) {
                break;
            }
        }
        Ok(())
    }

    /// [`VeilFs::fill_readdir`] with each entry's attributes; every entry
    /// added counts as a lookup.
    pub(super) fn fill_readdirplus(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: &mut ReplyDirectoryPlus,
    ) -> Res<()> {
        let node = self.do_readdir_list(ino, fh, offset)?;
        let dfd = self.dir_fd(&node)?;
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
                None => return Err(Errno::EBADF),
            }
        };
        let mut i = offset as usize;
        if i < 2 {
            let st = store::stat_fd(&*dfd).map_err(errno)?;
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
                    return Ok(());
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
        Ok(())
    }

    pub(super) fn do_releasedir(&self, fh: FileHandle) -> Res<()> {
        if self.dir_handles.lock().unwrap().remove(&fh.0).is_some() {
            self.activity.closed();
        }
        Ok(())
    }

    /// Flushes the directory on a helper thread, which replies.
    pub(super) fn do_fsyncdir(&self, ino: INodeNo, reply: ReplyEmpty) {
        let fd = self
            .node(ino)
            .and_then(|n| self.dir_fd(&n))
            .and_then(|fd| store::open_dir_read(&*fd).map_err(errno));
        let ivs = self.ivs.waiter();
        match fd {
            Ok(fd) => self.flushers.run(Box::new(move || {
                match ivs.wait().and_then(|()| rustix::fs::fsync(&fd)) {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(errno(e)),
                }
            })),
            Err(e) => reply.error(e),
        }
    }
}
