//! Extended attributes: `user.*` names encrypted, values bound to their
//! entry (docs/FORMAT.md §7).

use super::*;

/// Where a node's extended attributes are read and written.
enum XattrTarget {
    /// `/proc/self/fd/N/entry` (see [`VeilFs::xattr_target`]) for the l*
    /// calls, which never follow a last component; `_dir` keeps N open.
    Path { path: CString, _dir: Arc<OwnedFd> },
    /// An open file whose last name is gone: its own descriptor.
    Open(Arc<OwnedFd>),
}

impl XattrTarget {
    fn get(&self, name: &CStr, buf: &mut [u8]) -> Result<usize, SysErrno> {
        match self {
            XattrTarget::Path { path, .. } => rustix::fs::lgetxattr(path.as_c_str(), name, buf),
            XattrTarget::Open(fd) => rustix::fs::fgetxattr(&**fd, name, buf),
        }
    }

    fn set(
        &self,
        name: &CStr,
        value: &[u8],
        flags: rustix::fs::XattrFlags,
    ) -> Result<(), SysErrno> {
        match self {
            XattrTarget::Path { path, .. } => {
                rustix::fs::lsetxattr(path.as_c_str(), name, value, flags)
            }
            XattrTarget::Open(fd) => rustix::fs::fsetxattr(&**fd, name, value, flags),
        }
    }

    fn remove(&self, name: &CStr) -> Result<(), SysErrno> {
        match self {
            XattrTarget::Path { path, .. } => rustix::fs::lremovexattr(path.as_c_str(), name),
            XattrTarget::Open(fd) => rustix::fs::fremovexattr(&**fd, name),
        }
    }

    fn list(&self) -> Result<Vec<u8>, SysErrno> {
        match self {
            XattrTarget::Path { path, .. } => crate::store::xattr::list_names(path.as_c_str()),
            XattrTarget::Open(fd) => crate::store::xattr::list_names_fd(&**fd),
        }
    }

    /// The entry ID its attribute values are bound to (docs/FORMAT.md §7),
    /// if it has one.
    fn entry_id(&self) -> Option<[u8; XATTR_ID_LEN]> {
        match self {
            XattrTarget::Path { path, .. } => crate::store::xattr::entry_id(path.as_c_str()),
            XattrTarget::Open(fd) => crate::store::xattr::entry_id_fd(&**fd),
        }
    }

    /// The entry's ID, created (16 random bytes) if it has none yet.
    fn ensure_entry_id(&self) -> Result<[u8; XATTR_ID_LEN], SysErrno> {
        if let Some(id) = self.entry_id() {
            return Ok(id);
        }
        let id: [u8; XATTR_ID_LEN] = crate::crypto::random::bytes();
        let name = cstr(XATTR_ID_NAME);
        match self.set(name.as_c_str(), &id, rustix::fs::XattrFlags::CREATE) {
            Ok(()) => Ok(id),
            // Set by a concurrent setxattr, or present but damaged: a
            // damaged ID is replaced, which the values bound to it then
            // report.
            Err(SysErrno::EXIST) => match self.entry_id() {
                Some(id) => Ok(id),
                None => {
                    self.set(name.as_c_str(), &id, rustix::fs::XattrFlags::REPLACE)?;
                    Ok(id)
                }
            },
            Err(e) => Err(e),
        }
    }
}

impl VeilFs {
    /// Where the node's attributes are: `/proc/self/fd/N[/entry]`, a path
    /// that resolves through our own descriptor of its directory; for a
    /// file that is still open after its last name went (FUSE names no
    /// descriptor in these requests), the open descriptor, as on ext4.
    fn xattr_target(&self, node: &Arc<Node>) -> Res<XattrTarget> {
        if node.is_dir {
            let fd = self.dir_fd(node)?;
            // `/.`: the l*xattr calls do not follow a last component, and
            // `/proc/self/fd/N` itself is a (magic) symlink: EPERM.
            let path = crate::store::xattr::entry_path(&*fd, c".");
            return Ok(XattrTarget::Path { path, _dir: fd });
        }
        if node.is_unlinked()
            && let Some(fd) = node.open.lock().unwrap().fd.clone()
        {
            return Ok(XattrTarget::Open(fd));
        }
        // `locate` refuses a node whose last name is gone.
        let (pfd, entry) = self.locate(node)?;
        let path = crate::store::xattr::entry_path(&*pfd, &entry);
        Ok(XattrTarget::Path { path, _dir: pfd })
    }

    pub(super) fn do_getxattr(&self, ino: INodeNo, name: &OsStr) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        let Some(user) = name.as_bytes().strip_prefix(b"user.") else {
            return Err(Errno::NO_XATTR);
        };
        let target = self.xattr_target(&node)?;
        let mut buf = vec![0u8; 65536 + 64];
        // Padded names (version 2) first; attributes written before
        // padding are found under their old names (docs/FORMAT.md §7).
        let bname = self.names.encrypt_xattr_name(user);
        let (bname, version, n) = match target.get(cstr(&bname).as_c_str(), &mut buf[..]) {
            Ok(n) => (bname, XattrVersion::V2, n),
            Err(SysErrno::NODATA) => {
                let old = self.names.encrypt_xattr_name_v1(user);
                let n = target
                    .get(cstr(&old).as_c_str(), &mut buf[..])
                    .map_err(errno)?;
                (old, XattrVersion::V1, n)
            }
            Err(e) => return Err(errno(e)),
        };
        buf.truncate(n);
        let id = match version {
            XattrVersion::V2 => target.entry_id(),
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

    pub(super) fn do_setxattr(
        &self,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Res<()> {
        let node = self.node(ino)?;
        let Some(user) = name.as_bytes().strip_prefix(b"user.") else {
            return Err(Errno::EOPNOTSUPP);
        };
        if user.is_empty() {
            return Err(Errno::EINVAL);
        }
        let bname = self.names.encrypt_xattr_name(user);
        let old = cstr(&self.names.encrypt_xattr_name_v1(user));
        let target = self.xattr_target(&node)?;
        let mut xflags = rustix::fs::XattrFlags::from_bits_truncate(flags as u32);
        // The attribute may exist under its unpadded name (written before
        // padding): it is replaced by the padded one.
        let old_exists = target.get(old.as_c_str(), &mut [0u8; 0][..]).is_ok();
        if old_exists {
            if xflags.contains(rustix::fs::XattrFlags::CREATE) {
                return Err(Errno::EEXIST);
            }
            xflags.remove(rustix::fs::XattrFlags::REPLACE);
        }
        let id = target.ensure_entry_id().map_err(errno)?;
        let enc = self.names.encrypt_xattr_value(&bname, &id, value);
        target
            .set(cstr(&bname).as_c_str(), &enc, xflags)
            .map_err(errno)?;
        if old_exists {
            match target.remove(old.as_c_str()) {
                Ok(()) | Err(SysErrno::NODATA) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        Ok(())
    }

    pub(super) fn do_listxattr(&self, ino: INodeNo) -> Res<Vec<u8>> {
        let node = self.node(ino)?;
        let list = self.xattr_target(&node)?.list().map_err(errno)?;
        let mut out = Vec::new();
        let mut seen: Vec<Vec<u8>> = Vec::new();
        for raw in crate::store::xattr::names(&list) {
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

    pub(super) fn do_removexattr(&self, ino: INodeNo, name: &OsStr) -> Res<()> {
        let node = self.node(ino)?;
        let Some(user) = name.as_bytes().strip_prefix(b"user.") else {
            return Err(Errno::NO_XATTR);
        };
        let bname = self.names.encrypt_xattr_name(user);
        let target = self.xattr_target(&node)?;
        match target.remove(cstr(&bname).as_c_str()) {
            Err(SysErrno::NODATA) => {
                let old = self.names.encrypt_xattr_name_v1(user);
                target.remove(cstr(&old).as_c_str()).map_err(errno)
            }
            r => r.map_err(errno),
        }
    }
}

/// Replies to getxattr or listxattr: the size of `value` when asked for
/// it (`size` 0), else `value` if it fits in `size`.
pub(super) fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32)
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE)
    } else {
        reply.data(value)
    }
}
