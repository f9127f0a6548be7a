//! The inode table: what the kernel knows by inode number, and where each
//! inode lives in the backing store.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, RwLock};

use crate::content::FileHeader;
use crate::names::{BackingName, DirIv};

/// Where an inode was last seen: its parent directory, backing entry name
/// and plaintext name. Hard links keep the most recently used name.
pub struct Location {
    pub parent: Arc<Node>,
    pub backing: BackingName,
    pub plain: Box<[u8]>,
}

/// Content state of a regular file, shared by all its open handles. The
/// lock serialises read-modify-write: reads share it, writes and
/// truncation take it exclusively.
#[derive(Default)]
pub struct FileData {
    pub header: Option<FileHeader>,
    /// Backing offset up to which write-back of a streaming write has
    /// been started (see `VeilFs::start_writeback`).
    pub writeback_started: u64,
    /// Backing offset up to which read-ahead of a streaming read has been
    /// requested (see `VeilFs::read_ahead`); atomic because reads share
    /// the lock.
    pub read_ahead_to: std::sync::atomic::AtomicU64,
}

/// The backing descriptor shared by all open handles of one file.
#[derive(Default)]
pub struct OpenState {
    pub fd: Option<Arc<OwnedFd>>,
    pub writable: bool,
    pub handles: u32,
}

/// Every name an inode is known under, most recently used first. Usually
/// one; hard links add more, so unlinking one name leaves the others
/// usable.
#[derive(Default)]
pub struct Links(Vec<Location>);

/// Hard links remembered per inode; older names are dropped beyond this.
const MAX_LINKS: usize = 16;

impl Links {
    /// The most recently used name, or `None` for the root.
    pub fn as_ref(&self) -> Option<&Location> {
        self.0.first()
    }

    fn add(&mut self, location: Location) {
        self.remove(location.parent.ino, location.backing.entry());
        self.0.insert(0, location);
        self.0.truncate(MAX_LINKS);
    }

    fn remove(&mut self, parent: u64, entry: &str) {
        self.0
            .retain(|l| !(l.parent.ino == parent && l.backing.entry() == entry));
    }
}

/// A directory IV that lookups read without taking a lock (a sequence
/// lock: readers retry while the rare writer is at work).
#[derive(Default)]
pub struct IvCell {
    /// 0: unset; odd: being written; even: set.
    seq: AtomicU64,
    hi: AtomicU64,
    lo: AtomicU64,
    writer: Mutex<()>,
}

impl IvCell {
    pub fn get(&self) -> Option<DirIv> {
        loop {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 == 0 {
                return None;
            }
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let hi = self.hi.load(Ordering::Relaxed);
            let lo = self.lo.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == s1 {
                let mut iv = [0u8; 16];
                iv[..8].copy_from_slice(&hi.to_be_bytes());
                iv[8..].copy_from_slice(&lo.to_be_bytes());
                return Some(DirIv(iv));
            }
        }
    }

    /// Sets the IV if none is set yet; returns whether it did.
    pub fn set(&self, iv: DirIv) -> bool {
        self.store(iv, false)
    }

    /// Replaces the IV.
    pub fn replace(&self, iv: DirIv) {
        self.store(iv, true);
    }

    fn store(&self, iv: DirIv, replace: bool) -> bool {
        let _w = self.writer.lock().unwrap();
        let s = self.seq.load(Ordering::Relaxed);
        if s != 0 && !replace {
            return false;
        }
        self.seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let (hi, lo) = iv.0.split_at(8);
        self.hi.store(
            u64::from_be_bytes(hi.try_into().unwrap()),
            Ordering::Relaxed,
        );
        self.lo.store(
            u64::from_be_bytes(lo.try_into().unwrap()),
            Ordering::Relaxed,
        );
        self.seq.store(s + 2, Ordering::Release);
        true
    }
}

pub struct Node {
    pub ino: u64,
    pub is_dir: bool,
    pub lookups: AtomicU64,
    /// Empty only for the root.
    pub location: Mutex<Links>,
    /// A directory's IV, read once (a rename keeps the stored IV) and
    /// replaced only when a sync client swapped `veilfs.diriv` for another
    /// device's IV of the same folder (docs/FORMAT.md §6).
    pub dir_iv: IvCell,
    pub data: RwLock<FileData>,
    pub open: Mutex<OpenState>,
    /// FUSE generation: bumped when the backing file changed in place
    /// behind the mount, so the kernel drops its cached size and pages.
    pub generation: AtomicU64,
    /// Backing (size, mtime s, mtime ns) as of the last change made or
    /// seen through the mount.
    pub seen: Mutex<Option<(i64, i64, i64)>>,
}

impl Node {
    pub fn new(ino: u64, is_dir: bool, location: Option<Location>) -> Self {
        Node {
            ino,
            is_dir,
            lookups: AtomicU64::new(0),
            location: Mutex::new(Links(location.into_iter().collect())),
            dir_iv: IvCell::default(),
            data: RwLock::new(FileData::default()),
            open: Mutex::new(OpenState::default()),
            generation: AtomicU64::new(0),
            seen: Mutex::new(None),
        }
    }

    /// Records `st` as the backing file's state as this mount knows it.
    pub fn note_backing(&self, st: &rustix::fs::Stat) {
        *self.seen.lock().unwrap() = Some(backing_state(st));
    }

    /// The generation to give the kernel for this node, now that a lookup
    /// found the backing file in state `st`. With the writeback cache the
    /// kernel trusts its own size of a cached file, so a change a sync
    /// client made in place (same inode, new size or mtime) while nothing
    /// had the file open must come with a new generation: the kernel then
    /// drops the cached inode and reads the file afresh. While the file is
    /// open, the change is only recorded (the kernel keeps its view until
    /// the file is closed, as documented).
    pub fn generation_after_lookup(&self, st: &rustix::fs::Stat) -> u64 {
        if self.is_dir {
            return 0;
        }
        let now = backing_state(st);
        let mut seen = self.seen.lock().unwrap();
        if let Some(before) = *seen
            && before != now
            && self.open.lock().unwrap().handles == 0
        {
            log::debug!(
                "inode {}: changed behind the mount; new generation",
                self.ino
            );
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        *seen = Some(now);
        self.generation.load(Ordering::Relaxed)
    }

    pub fn current_generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Parent node and backing entry name, cloned out of the lock.
    pub fn parent_and_entry(&self) -> Option<(Arc<Node>, BackingName)> {
        let loc = self.location.lock().unwrap();
        loc.as_ref().map(|l| (l.parent.clone(), l.backing.clone()))
    }

    pub fn set_location(&self, location: Location) {
        self.location.lock().unwrap().add(location);
    }

    /// Forgets one name of this inode (unlinked, or renamed away).
    pub fn drop_location(&self, parent: u64, entry: &str) {
        let mut links = self.location.lock().unwrap();
        // Keep the last known name: an open file may still need it for
        // log messages, and a stale name only yields ENOENT.
        if links.0.len() > 1 {
            links.remove(parent, entry);
        }
    }
}

fn backing_state(st: &rustix::fs::Stat) -> (i64, i64, i64) {
    (st.st_size, st.st_mtime, st.st_mtime_nsec as i64)
}

/// Inode number → node, for every inode the kernel holds a reference to.
///
/// Invariant: at most one `Node` exists per backing file that has open
/// handles. Its locks serialise every read, write and truncation of the
/// file, so a second node for the same file would let an `O_APPEND`
/// write race a truncation and leave a hole. A node forgotten by the
/// kernel while a handle still holds it (a FORGET overtaken by a new
/// LOOKUP, or a lookup count that drifted) is therefore kept in
/// `detached` and brought back by the next lookup of its inode. Its
/// backing file is pinned by the open descriptor, so the inode number
/// cannot have been reused for another file.
pub struct NodeTable {
    nodes: RwLock<HashMap<u64, Arc<Node>>>,
    detached: Mutex<HashMap<u64, std::sync::Weak<Node>>>,
}

impl NodeTable {
    pub fn new(root: Arc<Node>) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(root.ino, root);
        NodeTable {
            nodes: RwLock::new(nodes),
            detached: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Node>> {
        self.nodes.read().unwrap().get(&ino).cloned()
    }

    /// Records one more kernel reference to the inode at `location`,
    /// creating the node on first sight.
    pub fn remember(&self, ino: u64, is_dir: bool, location: Location) -> Arc<Node> {
        let mut nodes = self.nodes.write().unwrap();
        if let Some(node) = nodes.get(&ino)
            && node.is_dir == is_dir
        {
            node.set_location(location);
            node.lookups.fetch_add(1, Ordering::Relaxed);
            return node.clone();
        }
        let revived = {
            let mut detached = self.detached.lock().unwrap();
            detached
                .remove(&ino)
                .and_then(|w| w.upgrade())
                .filter(|n| !is_dir && !n.is_dir && n.open.lock().unwrap().handles > 0)
        };
        if let Some(node) = revived {
            log::debug!("inode {ino}: lookup revives a forgotten node with open handles");
            node.set_location(location);
            node.lookups.store(1, Ordering::Relaxed);
            nodes.insert(ino, node.clone());
            return node;
        }
        let node = Arc::new(Node::new(ino, is_dir, Some(location)));
        node.lookups.store(1, Ordering::Relaxed);
        nodes.insert(ino, node.clone());
        node
    }

    /// Updates where a known inode lives after a rename, if we know it.
    pub fn relocate(&self, ino: u64, location: Location) {
        if let Some(node) = self.get(ino) {
            node.set_location(location);
        }
    }

    /// After a rename: the inode left `(parent, entry)` for `location`.
    pub fn moved(&self, ino: u64, parent: u64, entry: &str, location: Location) {
        if let Some(node) = self.get(ino) {
            let mut links = node.location.lock().unwrap();
            links.remove(parent, entry);
            links.add(location);
        }
    }

    /// After an unlink of `(parent, entry)`.
    pub fn unlinked(&self, ino: u64, parent: u64, entry: &str) {
        if let Some(node) = self.get(ino) {
            node.drop_location(parent, entry);
        }
    }

    /// Drops `n` kernel references; forgets the node at zero.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == fuser::INodeNo::ROOT.0 {
            return;
        }
        let mut nodes = self.nodes.write().unwrap();
        if let Some(node) = nodes.get(&ino) {
            let before = node.lookups.fetch_sub(
                n.min(node.lookups.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            if before <= n
                && let Some(node) = nodes.remove(&ino)
                && !node.is_dir
                && node.open.lock().unwrap().handles > 0
            {
                let mut detached = self.detached.lock().unwrap();
                // Dead entries go when the map has doubled since the last sweep.
                if detached.len() >= 64 && detached.len().is_power_of_two() {
                    detached.retain(|_, w| w.strong_count() > 0);
                }
                detached.insert(ino, Arc::downgrade(&node));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::BackingName;

    fn table() -> (NodeTable, Arc<Node>) {
        let root = Arc::new(Node::new(fuser::INodeNo::ROOT.0, true, None));
        (NodeTable::new(root.clone()), root)
    }

    fn at(root: &Arc<Node>, name: &str) -> Location {
        Location {
            parent: root.clone(),
            backing: BackingName::Regular(name.into()),
            plain: name.as_bytes().into(),
        }
    }

    #[test]
    fn forgotten_file_with_open_handle_is_revived_not_duplicated() {
        let (t, root) = table();
        let a = t.remember(7, false, at(&root, "f"));
        a.open.lock().unwrap().handles = 1;
        // A FORGET that overtook the lookup count drops the node...
        t.forget(7, 1);
        assert!(t.get(7).is_none());
        // ...but the next lookup must find the same node, with its locks.
        let b = t.remember(7, false, at(&root, "f"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(b.lookups.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn forgotten_file_without_handles_starts_afresh() {
        let (t, root) = table();
        let a = t.remember(7, false, at(&root, "f"));
        t.forget(7, 1);
        let b = t.remember(7, false, at(&root, "f"));
        assert!(!Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn forget_counts_lookups() {
        let (t, root) = table();
        let a = t.remember(9, false, at(&root, "g"));
        t.remember(9, false, at(&root, "g"));
        t.forget(9, 1);
        assert!(t.get(9).is_some_and(|n| Arc::ptr_eq(&n, &a)));
        t.forget(9, 1);
        assert!(t.get(9).is_none());
        // The root is never forgotten.
        t.forget(fuser::INodeNo::ROOT.0, 100);
        assert!(t.get(fuser::INodeNo::ROOT.0).is_some());
    }
}
