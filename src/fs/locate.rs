//! Where a node lives in the backing store: its directory's descriptor
//! and IV, its backing name and path, and how logs name it.

use super::*;

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
pub(super) fn log_name(node: &Node) -> String {
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
pub(super) fn log_content_error(node: &Node, what: &str, e: &CryptFileError) {
    match e {
        CryptFileError::Io(_) => log::debug!("{}: {what}: {e}", log_name(node)),
        _ => log::warn!("{}: {what} failed: {e}", log_name(node)),
    }
}

/// The backing path of entry `entry` of directory `parent`, relative to
/// CIPHERDIR.
pub(super) fn child_backing_path(parent: &Node, entry: &str) -> Vec<u8> {
    let mut p = backing_path(parent);
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(entry.as_bytes());
    p
}

/// The backing path of `node` relative to CIPHERDIR, as the journal
/// records it.
pub(super) fn backing_path(node: &Node) -> Vec<u8> {
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

impl VeilFs {
    /// An `O_PATH` descriptor of a directory node, from the cache or
    /// reopened through its parent.
    pub(super) fn dir_fd(&self, node: &Arc<Node>) -> Res<Arc<OwnedFd>> {
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
    pub(super) fn dir_iv(&self, node: &Arc<Node>) -> Res<DirIv> {
        self.dir_iv_with(node, false)
    }

    /// A directory's IV for creating entries in it: a missing IV file of
    /// an empty directory is written now, since names are about to depend
    /// on it.
    pub(super) fn dir_iv_for_write(&self, node: &Arc<Node>) -> Res<DirIv> {
        self.dir_iv_with(node, true)
    }

    pub(super) fn dir_iv_with(&self, node: &Arc<Node>, persist: bool) -> Res<DirIv> {
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
    pub(super) fn log_name(&self, node: &Node) -> String {
        log_name(node)
    }

    /// Parent descriptor and backing entry of a non-root node.
    pub(super) fn locate(&self, node: &Arc<Node>) -> Res<(Arc<OwnedFd>, CString)> {
        // The mount removed the node's last name: that name may be another
        // file's by now (see `Node::is_unlinked`).
        if node.is_unlinked() {
            return Err(Errno::ENOENT);
        }
        let (parent, entry) = node.parent_and_entry().ok_or(Errno::EINVAL)?;
        let pfd = self.dir_fd(&parent)?;
        Ok((pfd, cstr(entry.entry())))
    }

    /// Like [`VeilFs::child`], for creating `name` in `parent`.
    pub(super) fn new_child(
        &self,
        parent: &Arc<Node>,
        name: &OsStr,
    ) -> Res<(Arc<OwnedFd>, DirIv, BackingName)> {
        self.dir_iv_for_write(parent)?;
        self.child(parent, name)
    }

    /// Parent descriptor, IV and backing name of `name` in `parent`.
    pub(super) fn child(
        &self,
        parent: &Arc<Node>,
        name: &OsStr,
    ) -> Res<(Arc<OwnedFd>, DirIv, BackingName)> {
        let pfd = self.dir_fd(parent)?;
        let iv = self.dir_iv(parent)?;
        let b = store::backing_name(&self.names, &iv, name).map_err(errno)?;
        Ok((pfd, iv, b))
    }
}
