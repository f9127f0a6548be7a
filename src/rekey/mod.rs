//! `veilfs rekey`: re-encrypt a whole vault under a new master key, in
//! place, file by file, crash-safe and resumable (docs/FORMAT.md §11).
//!
//! The old generation is walked with the [`crate::tree`] walker (old key).
//! Each entry is rebuilt under the new key inside `veilfs.rekey.new/` (a
//! metadata name, never listed): written to a temporary name, fsync'd,
//! renamed into place; the new directory is fsync'd before the old entry is
//! removed. So every backing entry is either old (outside
//! `veilfs.rekey.new/`, under the old key) or new (inside it, under the new
//! key), never mixed. When the old tree is empty, the new tree's entries
//! are renamed into the root, the new config is installed atomically and
//! the state file `veilfs.rekey` is removed last.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, RenameFlags, XattrFlags};
use rustix::io::Errno;

use crate::content::ContentCipher;
use crate::keys::MasterKey;
use crate::names::{NameCipher, XATTR_ID_NAME};
use crate::offline::{Kind, Offline, OfflineError};
use crate::store;
use crate::tree::{self, Control, Entry, Totals, Visitor};
use crate::vault::{self, VaultConfig};

mod entries;
mod state;

pub(crate) use entries::*;
pub use state::*;

/// The state file of a rekey in progress, at the root of CIPHERDIR.
pub const STATE_FILE: &str = "veilfs.rekey";
/// The new generation while it is built.
pub const NEW_TREE: &str = "veilfs.rekey.new";
/// Old inode -> new path of hard-linked entries already rebuilt.
pub const LINKS_FILE: &str = "veilfs.rekey.links";
const STATE_FORMAT: &str = "veilfs-rekey";
const WRAP_LABEL: &[u8] = b"veilfs v1 rekey wrap key";
const MAC_LABEL: &[u8] = b"veilfs v1 rekey state mac key";
const WRAP_AD: &[u8] = b"veilfs v1 rekey wrap";
/// On a new directory while it is filled: the old directory's times
/// (mtime then atime, each i64 seconds and u32 nanoseconds, big-endian),
/// taken before any entry was moved out of it. Removed when the
/// directory is finished.
pub(crate) const TIMES_XATTR: &str = "user.veilfs.rekey-times";
/// Free space asked for beyond the largest file.
pub const SPACE_MARGIN: u64 = 64 << 20;

#[derive(Debug)]
pub struct RekeyError(pub String);

impl std::fmt::Display for RekeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RekeyError {}

type Result<T> = std::result::Result<T, RekeyError>;

pub(crate) fn err(what: impl std::fmt::Display) -> RekeyError {
    RekeyError(what.to_string())
}

fn io_at(path: &Path, e: impl Into<io::Error>) -> RekeyError {
    RekeyError(format!("{}: {}", path.display(), e.into()))
}

/// Where a rekey stands, for a progress display.
#[derive(Debug, Clone, Copy, Default)]
pub struct RekeyProgress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

pub type ProgressFn<'a> = Box<dyn FnMut(&RekeyProgress) + 'a>;

/// What the walk before the work found.
#[derive(Debug, Default, Clone)]
pub struct Survey {
    pub totals: Totals,
    /// The largest backing file, in bytes.
    pub largest: u64,
    /// Names or directories that do not decrypt (a rekey would stop there).
    pub problems: u64,
    pub first_problems: Vec<String>,
}

impl Visitor for Survey {
    fn visit(&mut self, off: &Offline, e: &Entry<'_>) -> crate::offline::Result<bool> {
        if e.kind == Kind::File {
            self.largest = self.largest.max(e.stat.st_size as u64);
        }
        self.totals.visit(off, e)
    }
    fn problem(&mut self, error: &OfflineError) -> Control {
        self.problems += 1;
        if self.first_problems.len() < 5 {
            self.first_problems.push(error.to_string());
        }
        Control::Continue
    }
}

/// Counts what is left to rekey (the old tree), for the space check and
/// the progress totals. Nothing to count once the copy phase is over.
pub fn survey(dir: &Path, phase: Phase, old: &MasterKey, config: &VaultConfig) -> Result<Survey> {
    let mut s = Survey::default();
    if phase == Phase::Swap {
        return Ok(s);
    }
    let (content, names) = ciphers(old, config);
    let off = Offline::new(dir, &content, &names).map_err(|e| io_at(dir, e))?;
    tree::walk(&off, Path::new("/"), &mut s).map_err(|e| err(e.to_string()))?;
    Ok(s)
}

/// Free bytes for an unprivileged writer on the file system of `dir`.
pub fn free_space(dir: &Path) -> Result<u64> {
    let st = rustix::fs::statvfs(dir).map_err(|e| io_at(dir, e))?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

fn ciphers(master: &MasterKey, config: &VaultConfig) -> (ContentCipher, NameCipher) {
    let keys = master.derive();
    (
        ContentCipher::new(&keys.content, config.layout()),
        NameCipher::new(&keys, config.long_name_threshold),
    )
}

/// What a rekey did.
pub type RekeyReport = EntryCounts;

/// The entries a rekey or an encryption built, by kind, and the bytes of
/// file content they hold.
#[derive(Debug, Default, Clone, Copy)]
pub struct EntryCounts {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub other: u64,
    pub hard_links: u64,
    pub bytes: u64,
}

/// Runs (or resumes) the rekey described by `state` to the end.
pub fn run(
    dir: &Path,
    state: &mut RekeyState,
    old: &MasterKey,
    new: &MasterKey,
    totals: &Survey,
    progress: Option<ProgressFn<'_>>,
) -> Result<RekeyReport> {
    state.verify(new, dir)?;
    // The chunk size and threshold stay those of the vault.
    let (old_content, old_names) = ciphers(old, &state.new_config);
    let (new_content, new_names) = ciphers(new, &state.new_config);
    let root = open_dir(rustix::fs::CWD, &store::cstr(&dir.to_string_lossy()))
        .map_err(|e| io_at(dir, e))?;
    let mut report = RekeyReport::default();
    if state.phase == Phase::Copy {
        let off = Offline::new(dir, &old_content, &old_names).map_err(|e| io_at(dir, e))?;
        let links_path = dir.join(LINKS_FILE);
        let links = load_links(&links_path)?;
        let links_file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&links_path)
            .map_err(|e| io_at(&links_path, e))?;
        let mut r = Rekeyer {
            dir,
            root: &root,
            new_names: &new_names,
            new_content: &new_content,
            stack: Vec::new(),
            links,
            links_file,
            as_root: rustix::process::geteuid().is_root(),
            progress: RekeyProgress {
                files_total: totals.totals.files,
                bytes_total: totals.totals.bytes,
                ..RekeyProgress::default()
            },
            on_progress: progress,
            report: &mut report,
            failure: None,
            since: 0,
        };
        let res = tree::walk(&off, Path::new("/"), &mut r);
        if let Some(f) = r.failure.take() {
            return Err(f);
        }
        res.map_err(|e| {
            err(format!(
                "{e}; the rekey stopped there (nothing is lost: the vault is half rekeyed). \
                 Repair the damage (`veilfs fsck --repair` before the rekey started, or remove \
                 the damaged entry from the backing directory), then run `veilfs rekey --resume {}`",
                dir.display()
            ))
        })?;
        drop(r);
        state.phase = Phase::Swap;
        state.save(dir, new)?;
    }
    swap(dir, &root, &old_names, &new_names)?;
    finish(dir, state)?;
    Ok(report)
}

fn load_links(path: &Path) -> Result<HashMap<u64, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(io_at(path, e)),
    };
    let mut map = HashMap::new();
    // A torn last line (a crash mid-append) is ignored: that link is
    // rebuilt as a copy, and linked again by the next one.
    for line in text.lines() {
        if let Some((ino, rel)) = line.split_once(' ')
            && let Ok(ino) = ino.parse::<u64>()
            && !rel.is_empty()
        {
            map.insert(ino, rel.to_string());
        }
    }
    Ok(map)
}

/// Moves the new tree into the root and the root's attributes over.
fn swap(dir: &Path, root: &OwnedFd, old_names: &NameCipher, new_names: &NameCipher) -> Result<()> {
    let new = match open_dir(root, &store::cstr(NEW_TREE)) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()), // swapped already
        Err(e) => return Err(io_at(&dir.join(NEW_TREE), e)),
    };
    unlink_quiet(&new, tmp())?;
    let mut names = Vec::new();
    {
        let d = store::open_dir_read(&new).map_err(|e| io_at(&dir.join(NEW_TREE), e))?;
        let mut d = rustix::fs::Dir::read_from(&d).map_err(|e| io_at(&dir.join(NEW_TREE), e))?;
        while let Some(ent) = d.read() {
            let ent = ent.map_err(|e| io_at(&dir.join(NEW_TREE), e))?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(CString::new(n).expect("no NUL"));
            }
        }
    }
    for n in names {
        rustix::fs::renameat_with(&new, &n, root, &n, RenameFlags::NOREPLACE).map_err(|e| {
            err(format!(
                "{}: moving the new entry {} into place: {e}",
                dir.display(),
                n.to_string_lossy()
            ))
        })?;
    }
    // The root's attributes: drop the old ones, copy the new ones.
    let root_path = proc_path(root, c".");
    if let Ok(list) = crate::store::xattr::list_names(root_path.as_c_str()) {
        for raw in crate::store::xattr::names(&list) {
            if let Ok(bname) = std::str::from_utf8(raw)
                && old_names.decrypt_xattr_name(bname).is_ok()
            {
                let _ = rustix::fs::lremovexattr(&root_path, bname);
            }
        }
    }
    let new_path = proc_path(&new, c".");
    let attrs = read_xattrs(new_names, &new_path)?;
    if !attrs.is_empty() {
        if let Some(id) = crate::store::xattr::entry_id(new_path.as_c_str()) {
            rustix::fs::lsetxattr(&root_path, XATTR_ID_NAME, &id, XattrFlags::empty())
                .map_err(|e| io_at(dir, e))?;
        }
        write_xattrs(new_names, &root_path, &attrs)?;
    }
    rustix::fs::fsync(root).map_err(|e| io_at(dir, e))?;
    drop(new);
    match rustix::fs::unlinkat(root, store::cstr(NEW_TREE), AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(io_at(&dir.join(NEW_TREE), e)),
    }
    rustix::fs::fsync(root).map_err(|e| io_at(dir, e))
}

/// Installs the new config and removes everything that opens the old
/// generation; the state file goes last.
fn finish(dir: &Path, state: &RekeyState) -> Result<()> {
    write_atomic(
        dir,
        vault::CONFIG_FILE,
        state.new_config.to_json().as_bytes(),
    )?;
    for entry in std::fs::read_dir(dir).map_err(|e| io_at(dir, e))? {
        let entry = entry.map_err(|e| io_at(dir, e))?;
        let name = entry.file_name();
        let n = name.as_bytes();
        if n == vault::CONFIG_BACKUP_FILE.as_bytes()
            || n.starts_with(vault::CONFIG_REPLACED_FILE.as_bytes())
            || n == b"veilfs.conf.tmp"
            || n == b"veilfs.rekey.tmp"
            || n == LINKS_FILE.as_bytes()
        {
            std::fs::remove_file(entry.path()).map_err(|e| io_at(&entry.path(), e))?;
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_at(dir, e))?;
    std::fs::remove_file(dir.join(STATE_FILE)).map_err(|e| io_at(&dir.join(STATE_FILE), e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_at(dir, e))
}
