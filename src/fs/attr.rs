//! Attributes: what the kernel is told of a file (`attr`, `stat_node`),
//! setattr (mode, owner, times, size) and access.

use super::*;

pub(super) fn to_timestamp(t: Option<TimeOrNow>) -> Timespec {
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

impl VeilFs {
    /// What the kernel is told of the file with backing `st`: plaintext
    /// sizes, the rest as the backing entry has it.
    pub(super) fn attr(&self, ino: u64, st: &Stat) -> FileAttr {
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
    pub(super) fn long_symlink_len(&self, ino: u64) -> Option<u64> {
        let node = self.nodes.get(ino)?;
        let (pfd, entry) = self.locate(&node).ok()?;
        let record = store::long_target_record_of(&*pfd, &entry)?;
        let st = store::lstat_at(&*pfd, &cstr(&record)).ok()?;
        Some(symlink_plain_len(st.st_size as u64))
    }

    /// The backing stat of `node`: by name, or through its open descriptor
    /// once the name is gone or holds another file.
    pub(super) fn stat_node(&self, node: &Arc<Node>) -> Res<Stat> {
        if node.is_dir {
            return store::stat_fd(&*self.dir_fd(node)?).map_err(errno);
        }
        let by_name = self
            .locate(node)
            .and_then(|(pfd, entry)| store::lstat_at(&*pfd, &entry).map_err(errno));
        match by_name {
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
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// access(2) and chdir. Without --allow-other the kernel leaves
    /// permission checks to the daemon (see mount.rs): the only caller is
    /// the daemon's own user, so the backing file system answers for it.
    /// With --allow-other the kernel has already checked the modes.
    pub(super) fn do_access(&self, ino: INodeNo, mask: AccessFlags) -> Res<()> {
        let node = self.node(ino)?;
        let access = Access::from_bits_truncate(mask.bits() as _);
        let r = if node.is_dir {
            let fd = self.dir_fd(&node)?;
            rustix::fs::accessat(&*fd, c".", access, AtFlags::EACCESS).map_err(errno)
        } else {
            self.locate(&node).and_then(|(pfd, entry)| {
                rustix::fs::accessat(
                    &*pfd,
                    entry.as_c_str(),
                    access,
                    AtFlags::EACCESS | AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(errno)
            })
        };
        match r {
            // Unlinked while open: it exists while the descriptor does.
            Err(Errno::ENOENT) if node.open.lock().unwrap().fd.is_some() => Ok(()),
            r => r,
        }
    }

    /// Changes a file that has no open descriptor by name (setattr on a
    /// directory or an open file goes through its descriptor instead).
    pub(super) fn set_mode_by_name(&self, node: &Arc<Node>, mode: Mode) -> Res<()> {
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

    pub(super) fn set_times_by_name(&self, node: &Arc<Node>, ts: &Timestamps) -> Res<()> {
        let (pfd, entry) = self.locate(node)?;
        rustix::fs::utimensat(&*pfd, &entry, ts, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)
    }

    pub(super) fn set_owner_by_name(
        &self,
        node: &Arc<Node>,
        uid: Option<Uid>,
        gid: Option<Gid>,
    ) -> Res<()> {
        let (pfd, entry) = self.locate(node)?;
        rustix::fs::chownat(&*pfd, &entry, uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)
    }

    pub(super) fn do_setattr(
        &self,
        ino: INodeNo,
        fh: Option<FileHandle>,
        changes: &AttrChanges,
    ) -> Res<FileAttr> {
        let handle = fh.and_then(|fh| self.handle(fh).ok());
        // Through a handle, truncate under the very node its writes lock.
        let node = match &handle {
            Some(h) => h.node.clone(),
            None => self.node(ino)?,
        };
        if let Some(size) = changes.size {
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
        let fd = if !changes.touch_inode() {
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
        if let Some(mode) = changes.mode {
            let mode = Mode::from_raw_mode(mode & 0o7777);
            match &fd {
                Some(fd) => rustix::fs::fchmod(&**fd, mode).map_err(errno)?,
                None => self.set_mode_by_name(&node, mode)?,
            }
        }
        if changes.uid.is_some() || changes.gid.is_some() {
            let uid = changes.uid.map(Uid::from_raw);
            let gid = changes.gid.map(Gid::from_raw);
            match &fd {
                Some(fd) => rustix::fs::fchown(&**fd, uid, gid).map_err(errno)?,
                None => self.set_owner_by_name(&node, uid, gid)?,
            }
        }
        if changes.atime.is_some() || changes.mtime.is_some() {
            let ts = Timestamps {
                last_access: to_timestamp(changes.atime),
                last_modification: to_timestamp(changes.mtime),
            };
            match &fd {
                Some(fd) => rustix::fs::futimens(&**fd, &ts).map_err(errno)?,
                None => self.set_times_by_name(&node, &ts)?,
            }
        }
        let st = self.stat_node(&node)?;
        if changes.size.is_some() {
            node.note_backing(&st);
        } else {
            node.note_attr_change(&st);
        }
        Ok(self.attr(node.ino, &st))
    }
}

/// What one SETATTR asks to change; `None` leaves that attribute alone.
#[derive(Debug, Clone, Copy)]
pub(super) struct AttrChanges {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
}

impl AttrChanges {
    /// Whether anything but the size changes: mode, owner or times, which
    /// go to the inode itself rather than through a truncation.
    fn touch_inode(&self) -> bool {
        self.mode.is_some()
            || self.uid.is_some()
            || self.gid.is_some()
            || self.atime.is_some()
            || self.mtime.is_some()
    }
}
