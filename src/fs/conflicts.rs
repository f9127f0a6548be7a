//! Sync-client conflict copies in a mount (docs/FORMAT.md §8): resolved
//! whenever a directory is listed, found again by name on lookup.
//!
//! On a writable mount each copy is renamed to the encrypted form of its
//! display name while its directory is listed, after which it is an
//! ordinary entry. A copy that is only shown (read-only mount, or the
//! rename failed) is remembered here so that a lookup of its display name
//! finds the backing entry.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};

use fuser::Errno;
use rustix::fs::Stat;

use super::node::{Location, Node};
use super::{Res, VeilFs, errno};
use crate::conflict;
use crate::names::{BackingName, DirIv};
use crate::store::resolve::{self, Mode};
use crate::store::{self, Listing, cstr};

/// Directories remembered at most; past this the table starts afresh
/// (which only costs an extra listing on the next conflict-name miss).
const MAX_DIRS: usize = 65536;

/// What the last listing of one directory found.
struct Scanned {
    /// Backing directory mtime and inode at that listing.
    stamp: (i64, i64, u64),
    /// Display name → backing entry of copies shown without renaming.
    shown: HashMap<Vec<u8>, String>,
}

/// Per-directory conflict state of a mount, by FUSE inode number.
#[derive(Default)]
pub struct ConflictTable(Mutex<HashMap<u64, Scanned>>);

fn stamp(st: &Stat) -> (i64, i64, u64) {
    (st.st_mtime, st.st_mtime_nsec as i64, st.st_ino)
}

impl VeilFs {
    /// Turns the conflict copies of a fresh listing of `node` into
    /// entries: renamed on a writable mount, shown as they are on a
    /// read-only one.
    pub(super) fn resolve_conflicts(
        &self,
        node: &Arc<Node>,
        fd: &OwnedFd,
        iv: &DirIv,
        listing: &mut Listing,
    ) {
        let mode = if self.opts.read_only {
            Mode::Show
        } else {
            Mode::Rename
        };
        let mut shown = HashMap::new();
        for r in resolve::resolve_listing(fd.as_fd(), iv, &self.names, listing, mode) {
            let plain = String::from_utf8_lossy(&r.plain);
            if r.renamed {
                log::info!(
                    "{}: sync-client conflict copy {} renamed",
                    self.log_name(node),
                    r.found
                );
                log::debug!("conflict copy {} is now shown as {plain:?}", r.found);
                if let Ok(backing) = self.names.backing_name(iv, &r.plain) {
                    self.nodes.relocate(
                        self.fuse_ino(r.ino),
                        Location {
                            parent: node.clone(),
                            backing,
                            plain: r.plain.clone().into(),
                        },
                    );
                }
            } else {
                log::debug!(
                    "{}: sync-client conflict copy {} shown as {plain:?}",
                    self.log_name(node),
                    r.found
                );
                shown.insert(r.plain, r.backing);
            }
        }
        let mut table = self.conflicts.0.lock().unwrap();
        if shown.is_empty() {
            // The common case: nothing to remember. A later miss on a
            // display name lists again and records the directory's stamp.
            table.remove(&node.ino);
            return;
        }
        drop(table);
        let Ok(st) = store::stat_fd(fd) else {
            return;
        };
        self.remember_scan(node.ino, &st, shown);
    }

    fn remember_scan(&self, ino: u64, st: &Stat, shown: HashMap<Vec<u8>, String>) {
        let mut table = self.conflicts.0.lock().unwrap();
        if table.len() >= MAX_DIRS && !table.contains_key(&ino) {
            table.clear();
        }
        table.insert(
            ino,
            Scanned {
                stamp: stamp(st),
                shown,
            },
        );
    }

    /// Lookup of a name that has no backing entry of its own: it may be
    /// the display name of a conflict copy. Lists the directory again
    /// (which resolves its copies) only when it changed since the last
    /// listing.
    pub(super) fn lookup_conflict(
        &self,
        parent: &Arc<Node>,
        pfd: &OwnedFd,
        name: &OsStr,
    ) -> Res<(Arc<Node>, Stat)> {
        let shown = |fs: &Self| -> (Option<String>, Option<(i64, i64, u64)>) {
            let table = fs.conflicts.0.lock().unwrap();
            match table.get(&parent.ino) {
                Some(s) => (s.shown.get(name.as_bytes()).cloned(), Some(s.stamp)),
                None => (None, None),
            }
        };
        let backing = match shown(self) {
            (Some(backing), _) => backing,
            // Only display names are searched for by listing again; an
            // entry under a copy of veilfs.diriv shown under its own name
            // (read-only mounts) is found once its directory was listed.
            (None, _) if !conflict::may_be_display_name(name.as_bytes()) => {
                return Err(Errno::ENOENT);
            }
            (None, last) => {
                let now = store::stat_fd(pfd).map_err(errno)?;
                if last == Some(stamp(&now)) {
                    return Err(Errno::ENOENT);
                }
                self.list(parent)?;
                // Misses are cheap until the directory changes again.
                let recorded = self.conflicts.0.lock().unwrap().contains_key(&parent.ino);
                if !recorded {
                    self.remember_scan(parent.ino, &now, HashMap::new());
                }
                match shown(self) {
                    (Some(backing), _) => backing,
                    // Renamed to its proper encrypted name by the listing.
                    (None, _) => {
                        let (pfd, _, b) = self.child(parent, name)?;
                        let st =
                            store::lstat_at(&*pfd, cstr(b.entry()).as_c_str()).map_err(errno)?;
                        return Ok((self.remember(parent, &st, b, name.as_bytes()), st));
                    }
                }
            }
        };
        let st = store::lstat_at(pfd, cstr(&backing).as_c_str()).map_err(errno)?;
        let node = self.remember(parent, &st, BackingName::Regular(backing), name.as_bytes());
        Ok((node, st))
    }
}
