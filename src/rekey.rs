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
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::content::ContentCipher;
use crate::cryptfile::ChunkWriter;
use crate::crypto::aead::nonce_at;
use crate::crypto::{self, Aead, NONCE_LEN, TAG_LEN};
use crate::keys::{KEY_LEN, MasterKey};
use crate::names::{DirIv, NameCipher, XATTR_ID_LEN, XATTR_ID_NAME, XattrVersion};
use crate::offline::{Kind, Offline, OfflineError};
use crate::store;
use crate::tree::{self, Control, Entry, Totals, Visitor};
use crate::vault::{self, VaultConfig};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Entries move from the old tree into `veilfs.rekey.new/`.
    Copy,
    /// The old tree is empty: the new tree moves into the root and the new
    /// config is installed.
    Swap,
}

/// `veilfs.rekey` (docs/FORMAT.md §11).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyState {
    pub format: String,
    pub version: u32,
    pub phase: Phase,
    pub old_key_id: String,
    pub new_key_id: String,
    /// The config that replaces `veilfs.conf` at the end (MAC'd by the new
    /// key, with the new password slot).
    pub new_config: VaultConfig,
    /// The new master key sealed under the old one, and the reverse.
    pub new_key_under_old: String,
    pub old_key_under_new: String,
    /// HMAC-SHA256 under a key derived from the new master key.
    pub mac: String,
}

fn wrap(under: &MasterKey, key: &MasterKey) -> String {
    let aead = Aead::new(&under.derive_raw(WRAP_LABEL));
    let nonce = crypto::nonce::fresh();
    let mut buf = zeroize::Zeroizing::new(*key.expose_secret());
    let tag = aead.seal_in_place(&nonce, WRAP_AD, &mut buf[..]);
    B64.encode([&nonce[..], &buf[..], &tag[..]].concat())
}

fn unwrap(under: &MasterKey, sealed: &str) -> Result<MasterKey> {
    let raw = B64
        .decode(sealed)
        .map_err(|_| err("the rekey state file is damaged (bad wrapped key)"))?;
    if raw.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
        return Err(err("the rekey state file is damaged (bad wrapped key)"));
    }
    let aead = Aead::new(&under.derive_raw(WRAP_LABEL));
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(KEY_LEN);
    MasterKey::try_fill_with(|key| {
        aead.open_into(nonce_at(nonce), WRAP_AD, body, tag, &mut key[..])
    })
    .map_err(|_| err("the rekey state file is damaged or was tampered with"))
}

impl RekeyState {
    fn compute_mac(&self, new: &MasterKey) -> String {
        let k = new.derive_raw(MAC_LABEL);
        let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&k[..]).expect("any length");
        m.update(b"veilfs v1 rekey state");
        for part in [
            self.format.as_bytes(),
            &self.version.to_be_bytes(),
            match self.phase {
                Phase::Copy => b"copy",
                Phase::Swap => b"swap",
            },
            self.old_key_id.as_bytes(),
            self.new_key_id.as_bytes(),
            &self.new_config.canonical_bytes(),
            &self.new_config.mac,
            self.new_key_under_old.as_bytes(),
            self.old_key_under_new.as_bytes(),
        ] {
            m.update(&(part.len() as u64).to_be_bytes());
            m.update(part);
        }
        B64.encode(m.finalize().into_bytes())
    }

    /// Checks the MAC and the new config against the new key.
    pub fn verify(&self, new: &MasterKey, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let ok = self.format == STATE_FORMAT
            && self.version == 1
            && self.new_key_id == B64.encode(new.key_id())
            && constant_eq(self.mac.as_bytes(), self.compute_mac(new).as_bytes());
        if !ok {
            return Err(err(format!(
                "{}: the rekey state does not authenticate (damaged or tampered with)",
                path.display()
            )));
        }
        self.new_config
            .verify(new, &path)
            .map_err(|e| err(format!("{}: the new config in it: {e}", path.display())))
    }

    fn save(&mut self, dir: &Path, new: &MasterKey) -> Result<()> {
        self.mac = self.compute_mac(new);
        let text = serde_json::to_string_pretty(self).expect("serializable");
        write_atomic(dir, STATE_FILE, text.as_bytes())
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes `name` in `dir` atomically (temp file, fsync, rename, fsync dir).
pub(crate) fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| io_at(&tmp, e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_at(&tmp, e))?;
    std::fs::rename(&tmp, dir.join(name)).map_err(|e| io_at(&dir.join(name), e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_at(dir, e))
}

/// Whether a rekey is in progress in `dir`.
pub fn in_progress(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(STATE_FILE)).is_ok()
}

/// Reads `veilfs.rekey`, if there is one (not yet authenticated: see
/// [`RekeyState::verify`]).
pub fn read_state(dir: &Path) -> Result<Option<RekeyState>> {
    let path = dir.join(STATE_FILE);
    let mut text = String::new();
    match File::open(&path) {
        Ok(f) => f
            .take(vault::MAX_CONFIG_LEN * 2)
            .read_to_string(&mut text)
            .map_err(|e| io_at(&path, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(&path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| err(format!("{}: not a rekey state file: {e}", path.display())))
}

/// Starts a rekey: writes the state file. Refuses if one exists.
pub fn begin(
    dir: &Path,
    old: &MasterKey,
    new: &MasterKey,
    new_config: VaultConfig,
) -> Result<RekeyState> {
    if in_progress(dir) {
        return Err(err(format!(
            "{} is already being rekeyed: run `veilfs rekey --resume {}`",
            dir.display(),
            dir.display()
        )));
    }
    let mut state = RekeyState {
        format: STATE_FORMAT.into(),
        version: 1,
        phase: Phase::Copy,
        old_key_id: B64.encode(old.key_id()),
        new_key_id: B64.encode(new.key_id()),
        new_config,
        new_key_under_old: wrap(old, new),
        old_key_under_new: wrap(new, old),
        mac: String::new(),
    };
    state.save(dir, new)?;
    Ok(state)
}

/// What unlocks a half-rekeyed vault.
pub enum StateSecret<'a> {
    Key(MasterKey),
    Password(&'a [u8]),
}

/// Both keys of a rekey in progress, from either the old or the new
/// secret. Returns (old, new).
pub fn unlock_state(
    dir: &Path,
    state: &RekeyState,
    secret: StateSecret<'_>,
) -> std::result::Result<(MasterKey, MasterKey), vault::VaultError> {
    let path = dir.join(STATE_FILE);
    let other = |e: RekeyError| vault::VaultError::InvalidOption(e.0);
    let (old, new) = match secret {
        StateSecret::Key(k) => {
            let id = B64.encode(k.key_id());
            if id == state.old_key_id {
                let new = unwrap(&k, &state.new_key_under_old).map_err(other)?;
                (k, new)
            } else if id == state.new_key_id {
                let old = unwrap(&k, &state.old_key_under_new).map_err(other)?;
                (old, k)
            } else {
                return Err(vault::VaultError::WrongKey {
                    path: dir.to_path_buf(),
                });
            }
        }
        StateSecret::Password(pw) => {
            if let Some(new) = state.new_config.open_slots(pw, &path)? {
                let old = unwrap(&new, &state.old_key_under_new).map_err(other)?;
                (old, new)
            } else {
                let config = vault::load_config(dir)?;
                if B64.encode(config.key_id) != state.old_key_id || config.key_slots.is_empty() {
                    return Err(vault::VaultError::WrongPassword { config: path });
                }
                let old = vault::unlock_with_password(dir, pw)?.master;
                let new = unwrap(&old, &state.new_key_under_old).map_err(other)?;
                (old, new)
            }
        }
    };
    state.verify(&new, dir).map_err(other)?;
    Ok((old, new))
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
#[derive(Debug, Default, Clone, Copy)]
pub struct RekeyReport {
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

/// One directory level: the old directory being emptied and its new
/// counterpart being filled.
struct Level {
    old: OwnedFd,
    old_iv: Option<DirIv>,
    new: OwnedFd,
    new_iv: DirIv,
    /// The new directory's path below `veilfs.rekey.new` (backing names).
    new_rel: String,
    /// Old entries rebuilt but not yet removed: removed once the new
    /// directory is fsync'd.
    pending: Vec<CString>,
    /// Backing bytes of `pending`: the extra space in use.
    pending_bytes: u64,
}

struct Rekeyer<'a> {
    dir: &'a Path,
    root: &'a OwnedFd,
    new_names: &'a NameCipher,
    new_content: &'a ContentCipher,
    stack: Vec<Level>,
    links: HashMap<u64, String>,
    links_file: File,
    as_root: bool,
    progress: RekeyProgress,
    on_progress: Option<ProgressFn<'a>>,
    report: &'a mut RekeyReport,
    failure: Option<RekeyError>,
    since: u64,
}

/// Entries rebuilt before their old forms are removed in one batch.
const PENDING_MAX: usize = 256;
/// ... or as many backing bytes: the extra space a rekey needs is the
/// largest file plus this (well inside [`SPACE_MARGIN`]).
const PENDING_BYTES: u64 = 32 << 20;

pub(crate) fn proc_path(fd: &impl AsRawFd, name: &CStr) -> CString {
    let mut p = format!("/proc/self/fd/{}/", fd.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.to_bytes());
    CString::new(p).expect("no NUL in a name")
}

pub(crate) fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    }
}

pub(crate) fn times_of(st: &rustix::fs::Stat) -> Timestamps {
    Timestamps {
        last_access: ts(st.st_atime, st.st_atime_nsec as i64),
        last_modification: ts(st.st_mtime, st.st_mtime_nsec as i64),
    }
}

/// Opens a directory for `*at()` calls, fsync, fchmod and listing.
pub(crate) fn open_dir<Fd: rustix::fd::AsFd>(
    parent: Fd,
    name: &CStr,
) -> std::result::Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The temporary name an entry is built under, in its new directory.
pub(crate) fn tmp() -> &'static CStr {
    c"veilfs.rekey.tmp"
}

pub(crate) fn unlink_quiet(dir: &OwnedFd, name: &CStr) -> Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(err(format!("removing {}: {e}", name.to_string_lossy()))),
    }
}

/// The vault's `user.*` attributes of a backing entry, decrypted with
/// `names`: (plaintext name without `user.`, value).
fn read_xattrs(names: &NameCipher, path: &CStr) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut list = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut list[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => list.resize(list.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(err(format!("listing attributes: {e}"))),
        }
    };
    let mut id = [0u8; XATTR_ID_LEN + 1];
    let id: Option<[u8; XATTR_ID_LEN]> =
        match rustix::fs::lgetxattr(path, XATTR_ID_NAME, &mut id[..]) {
            Ok(XATTR_ID_LEN) => id[..XATTR_ID_LEN].try_into().ok(),
            _ => None,
        };
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for raw in list[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let Ok(bname) = std::str::from_utf8(raw) else {
            continue;
        };
        let Ok((plain_name, version)) = names.decrypt_xattr_name(bname) else {
            continue; // not the vault's (a sync client's, the system's)
        };
        let mut value = vec![0u8; 65536 + 64];
        let len = rustix::fs::lgetxattr(path, bname, &mut value[..]).map_err(|e| {
            err(format!(
                "reading attribute user.{}: {e}",
                lossy(&plain_name)
            ))
        })?;
        value.truncate(len);
        let idref = match version {
            XattrVersion::V2 => id.as_ref(),
            XattrVersion::V1 => None,
        };
        let plain = names
            .decrypt_xattr_value(bname, version, idref, value)
            .map_err(|e| {
                err(format!(
                    "extended attribute user.{} does not decrypt: {e}",
                    lossy(&plain_name)
                ))
            })?;
        // A version-1 and a version-2 copy of one name (a crash while
        // upgrading): the version-2 one is the newer.
        if let Some(slot) = out.iter_mut().find(|(n, _)| *n == plain_name) {
            if version == XattrVersion::V2 {
                slot.1 = plain;
            }
        } else {
            out.push((plain_name, plain));
        }
    }
    Ok(out)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes `attrs` in version 2 under `names` onto the entry at `path`,
/// with its entry ID (an existing one is kept, so a redo is idempotent).
pub(crate) fn write_xattrs(
    names: &NameCipher,
    path: &CStr,
    attrs: &[(Vec<u8>, Vec<u8>)],
) -> Result<()> {
    if attrs.is_empty() {
        return Ok(());
    }
    let mut buf = [0u8; XATTR_ID_LEN + 1];
    let id: [u8; XATTR_ID_LEN] = match rustix::fs::lgetxattr(path, XATTR_ID_NAME, &mut buf[..]) {
        Ok(XATTR_ID_LEN) => buf[..XATTR_ID_LEN].try_into().expect("16 bytes"),
        _ => {
            let id: [u8; XATTR_ID_LEN] = crypto::random::bytes();
            rustix::fs::lsetxattr(path, XATTR_ID_NAME, &id, XattrFlags::empty())
                .map_err(|e| err(format!("writing the entry ID: {e}")))?;
            id
        }
    };
    for (name, value) in attrs {
        let bname = names.encrypt_xattr_name(name);
        let sealed = names.encrypt_xattr_value(&bname, &id, value);
        rustix::fs::lsetxattr(path, bname.as_str(), &sealed, XattrFlags::empty())
            .map_err(|e| err(format!("writing attribute user.{}: {e}", lossy(name))))?;
    }
    Ok(())
}

impl Rekeyer<'_> {
    fn top(&self) -> &Level {
        self.stack.last().expect("inside the root")
    }

    fn tick(&mut self, force: bool) {
        if (force || self.since >= 8 << 20)
            && let Some(cb) = self.on_progress.as_mut()
        {
            self.since = 0;
            cb(&self.progress);
        }
    }

    /// Makes the rebuilt entries of the top level durable, then removes
    /// their old forms.
    fn flush(&mut self) -> Result<()> {
        let level = self.stack.last_mut().expect("inside the root");
        if level.pending.is_empty() {
            return Ok(());
        }
        // One syncfs makes every rebuilt entry of the batch durable (its
        // content, attributes and name): far cheaper than an fsync per
        // small file.
        rustix::fs::syncfs(&level.new).map_err(|e| err(format!("syncfs: {e}")))?;
        level.pending_bytes = 0;
        for name in level.pending.drain(..) {
            unlink_quiet(&level.old, &name)?;
        }
        Ok(())
    }

    fn enter_dir(&mut self, off: &Offline, e: &Entry<'_>) -> Result<()> {
        let is_root = e.rel.as_os_str().is_empty();
        let (old, new, new_iv, new_rel) = if is_root {
            match rustix::fs::mkdirat(self.root, NEW_TREE, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(err(format!("creating {NEW_TREE}: {e}"))),
            }
            let new = open_dir(self.root, &store::cstr(NEW_TREE))
                .map_err(|e| err(format!("{NEW_TREE}: {e}")))?;
            rustix::fs::fsync(self.root).map_err(|e| err(format!("fsync: {e}")))?;
            let old = open_dir(self.root, c".").map_err(err)?;
            (old, new, self.new_names.root_iv(), String::new())
        } else {
            let plain = e.rel.file_name().expect("a named entry").as_bytes();
            let parent = self.top();
            let bn = self
                .new_names
                .backing_name(&parent.new_iv, plain)
                .map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
            store::write_long_record(&parent.new, &bn)
                .map_err(|x| err(format!("{}: long-name record: {x}", e.plain_path)))?;
            let name = store::cstr(bn.entry());
            match rustix::fs::mkdirat(&parent.new, &name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(x) => return Err(err(format!("{}: mkdir: {x}", e.plain_path))),
            }
            let new =
                open_dir(&parent.new, &name).map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
            // The new directory's IV file is written after the record of
            // the old directory's times, and nothing enters or leaves
            // either directory before it exists. So without an IV file
            // the old directory is untouched: (re)record its times; with
            // one and no record, an earlier run finished the directory
            // (times included) and removed the record.
            let new_iv = match read_new_dir_iv(&new) {
                Ok(iv) => iv,
                Err(Errno::NOENT) => {
                    record_times(&new, e.stat)
                        .map_err(|x| err(format!("{}: recording its times: {x}", e.plain_path)))?;
                    let iv = self.new_names.new_dir_iv(&parent.new_iv, plain);
                    store::write_dir_iv(&new, &iv)
                        .map_err(|x| err(format!("{}: writing its IV: {x}", e.plain_path)))?;
                    iv
                }
                Err(x) => return Err(err(format!("{}: reading its new IV: {x}", e.plain_path))),
            };
            rustix::fs::fsync(&new).map_err(|x| err(format!("fsync: {x}")))?;
            rustix::fs::fsync(&parent.new).map_err(|x| err(format!("fsync: {x}")))?;
            let old =
                open_dir(e.parent, e.name).map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
            let new_rel = if parent.new_rel.is_empty() {
                bn.entry().to_string()
            } else {
                format!("{}/{}", parent.new_rel, bn.entry())
            };
            (old, new, new_iv, new_rel)
        };
        let old_iv = off.dir_iv_of(&old, e.plain_path, is_root).ok();
        let attrs = read_xattrs(off.names(), &proc_path(&old, c"."))
            .map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
        write_xattrs(self.new_names, &proc_path(&new, c"."), &attrs)
            .map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
        self.stack.push(Level {
            old,
            old_iv,
            new,
            new_iv,
            new_rel,
            pending: Vec::new(),
            pending_bytes: 0,
        });
        self.report.dirs += 1;
        Ok(())
    }

    fn leave_dir(&mut self, e: &Entry<'_>) -> Result<()> {
        self.flush()?;
        let is_root = e.rel.as_os_str().is_empty();
        let level = self.stack.pop().expect("inside a directory");
        // What is left in the old directory was never listed: its IV file
        // and copies, long-name and long-target records (rebuilt with the
        // entries), and foreign files (a sync client's), which move along.
        let mut names = Vec::new();
        {
            let d = store::open_dir_read(&level.old).map_err(err)?;
            let mut d = rustix::fs::Dir::read_from(&d).map_err(err)?;
            while let Some(ent) = d.read() {
                let ent = ent.map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
                let n = ent.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(n.to_vec());
                }
            }
        }
        for n in names {
            let record = n.ends_with(b".vln.name") || n.ends_with(b".vlink");
            let meta = n.starts_with(b"veilfs");
            let c = CString::new(n.clone()).expect("no NUL");
            if is_root {
                if record {
                    unlink_quiet(&level.old, &c)?;
                }
            } else if record || meta {
                unlink_quiet(&level.old, &c)?;
            } else {
                match rustix::fs::renameat_with(
                    &level.old,
                    &c,
                    &level.new,
                    &c,
                    RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => {}
                    Err(x) => {
                        return Err(err(format!(
                            "{}: moving the foreign file {} along: {x}",
                            e.plain_path,
                            lossy(&n)
                        )));
                    }
                }
            }
        }
        if is_root {
            return Ok(());
        }
        let st = e.stat;
        if self.as_root {
            rustix::fs::fchown(
                &level.new,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
            )
            .map_err(|x| err(format!("{}: chown: {x}", e.plain_path)))?;
        }
        rustix::fs::fchmod(&level.new, Mode::from_raw_mode(st.st_mode & 0o7777))
            .map_err(|x| err(format!("{}: chmod: {x}", e.plain_path)))?;
        let mut rec = [0u8; 24];
        if rustix::fs::fgetxattr(&level.new, TIMES_XATTR, &mut rec[..]) == Ok(24) {
            let n = |a: usize, b: usize| i64::from_be_bytes(rec[a..b].try_into().expect("8"));
            let m = |a: usize, b: usize| u32::from_be_bytes(rec[a..b].try_into().expect("4"));
            let times = Timestamps {
                last_modification: ts(n(0, 8), m(8, 12) as i64),
                last_access: ts(n(12, 20), m(20, 24) as i64),
            };
            // Times first, then the record: without the record the times
            // are final (see enter_dir).
            rustix::fs::futimens(&level.new, &times)
                .map_err(|x| err(format!("{}: times: {x}", e.plain_path)))?;
            rustix::fs::fsync(&level.new).map_err(|x| err(format!("fsync: {x}")))?;
            rustix::fs::fremovexattr(&level.new, TIMES_XATTR)
                .map_err(|x| err(format!("{}: {x}", e.plain_path)))?;
        }
        rustix::fs::fsync(&level.new).map_err(|x| err(format!("fsync: {x}")))?;
        drop(level);
        let parent = self.top();
        match rustix::fs::unlinkat(&parent.old, e.name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(x) => Err(err(format!(
                "{}: removing the old directory: {x}",
                e.plain_path
            ))),
        }
    }

    fn entry(&mut self, off: &Offline, e: &Entry<'_>) -> Result<()> {
        let plain = e.rel.file_name().expect("a named entry").as_bytes();
        let top = self.stack.last().expect("inside the root");
        let bn = self
            .new_names
            .backing_name(&top.new_iv, plain)
            .map_err(err)?;
        store::write_long_record(&top.new, &bn)
            .map_err(|x| err(format!("long-name record: {x}")))?;
        let final_name = store::cstr(bn.entry());
        let tmp = tmp();
        unlink_quiet(&top.new, tmp)?;
        let ino = e.stat.st_ino;
        let linked = e.stat.st_nlink > 1 || self.links.contains_key(&ino);
        // A further link of an entry already rebuilt: link the new one.
        if let Some(rel) = self.links.get(&ino) {
            let first = CString::new(format!("{NEW_TREE}/{rel}")).expect("no NUL");
            match rustix::fs::linkat(self.root, &first, &top.new, tmp, AtFlags::empty()) {
                Ok(()) => {
                    if e.kind == Kind::Symlink {
                        // A long target's record goes with every link.
                        copy_target_record(self.root, &first, &top.new)?;
                    }
                    self.install(&final_name, e.kind == Kind::File)?;
                    self.report.hard_links += 1;
                    return Ok(());
                }
                // Not durable before a crash: rebuild it anew.
                Err(Errno::NOENT) => {}
                Err(x) => return Err(err(format!("linking: {x}"))),
            }
        }
        let top = self.stack.last().expect("inside the root");
        let mut file: Option<File> = None;
        match e.kind {
            Kind::File => {
                let fd = rustix::fs::openat(
                    &top.new,
                    tmp,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|x| err(format!("creating: {x}")))?;
                let mut w = ChunkWriter::new(File::from(fd), self.new_content);
                off.cat_at(e.parent, e.name, e.plain_path, &mut w, false)
                    .map_err(err)?;
                let bytes = w.bytes;
                file = Some(w.finish().map_err(|x| err(format!("writing: {x}")))?);
                self.report.files += 1;
                self.report.bytes += bytes;
                self.progress.files_done += 1;
                self.progress.bytes_done += bytes;
                self.since += bytes;
            }
            Kind::Symlink => {
                let stored = store::read_symlink_sealed(e.parent, e.name)
                    .map_err(|x| err(format!("reading the symlink: {x}")))?;
                let iv = top.old_iv.ok_or_else(|| err("its directory has no IV"))?;
                let target = off
                    .names()
                    .decrypt_symlink_target(&iv, &stored)
                    .map_err(|x| err(format!("symlink target does not decrypt: {x}")))?;
                let st = self.new_names.store_symlink_target(&top.new_iv, &target);
                store::write_long_target_record(&top.new, &st)
                    .map_err(|x| err(format!("long target record: {x}")))?;
                rustix::fs::symlinkat(st.link(), &top.new, tmp)
                    .map_err(|x| err(format!("symlink: {x}")))?;
                self.report.symlinks += 1;
            }
            Kind::Dir => unreachable!("directories are entered"),
            _ => {
                rustix::fs::mknodat(
                    &top.new,
                    tmp,
                    rustix::fs::FileType::from_raw_mode(e.stat.st_mode),
                    Mode::from_raw_mode(0o600),
                    e.stat.st_rdev,
                )
                .map_err(|x| err(format!("mknod: {x}")))?;
                self.report.other += 1;
            }
        }
        let top = self.stack.last().expect("inside the root");
        let st = e.stat;
        if self.as_root {
            rustix::fs::chownat(
                &top.new,
                tmp,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|x| err(format!("chown: {x}")))?;
        }
        if e.kind != Kind::Symlink {
            rustix::fs::chmodat(
                &top.new,
                tmp,
                Mode::from_raw_mode(st.st_mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|x| err(format!("chmod: {x}")))?;
            let attrs = read_xattrs(off.names(), &proc_path(e.parent, e.name))?;
            if !attrs.is_empty() {
                write_xattrs(self.new_names, &proc_path(&top.new, tmp), &attrs)?;
            }
        }
        rustix::fs::utimensat(&top.new, tmp, &times_of(st), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|x| err(format!("times: {x}")))?;
        // Made durable with its batch (`flush`), before its old form goes.
        drop(file);
        self.install(&final_name, false)?;
        if linked {
            // Durable at its new name before the journal names it.
            let top = self.stack.last().expect("inside the root");
            rustix::fs::syncfs(&top.new).map_err(|x| err(format!("syncfs: {x}")))?;
            let rel = if top.new_rel.is_empty() {
                bn.entry().to_string()
            } else {
                format!("{}/{}", top.new_rel, bn.entry())
            };
            let line = format!("{ino} {rel}\n");
            self.links_file
                .write_all(line.as_bytes())
                .and_then(|()| self.links_file.sync_data())
                .map_err(|x| err(format!("{LINKS_FILE}: {x}")))?;
            self.links.insert(ino, rel);
        }
        Ok(())
    }

    /// Renames the temporary entry to its new name (replacing a copy left
    /// by an interrupted run) and, for a further hard link of a regular
    /// file, writes its link record (docs/FORMAT.md §1.1).
    fn install(&mut self, final_name: &CStr, link_record: bool) -> Result<()> {
        let top = self.stack.last().expect("inside the root");
        rustix::fs::renameat(&top.new, tmp(), &top.new, final_name)
            .map_err(|x| err(format!("rename: {x}")))?;
        // Renaming a link onto the same inode does nothing: drop it.
        unlink_quiet(&top.new, tmp())?;
        if link_record {
            let fd = rustix::fs::openat(
                &top.new,
                final_name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|x| err(format!("opening the new link: {x}")))?;
            let st = store::stat_fd(&fd).map_err(err)?;
            let rec = self.new_names.link_record(st.st_ino, st.st_nlink);
            rustix::fs::fsetxattr(
                &fd,
                crate::names::LINK_RECORD_XATTR,
                &rec,
                XattrFlags::empty(),
            )
            .map_err(|x| err(format!("writing the link record: {x}")))?;
        }
        Ok(())
    }
}

impl Visitor for Rekeyer<'_> {
    fn visit(&mut self, off: &Offline, e: &Entry<'_>) -> crate::offline::Result<bool> {
        let res = if e.kind == Kind::Dir {
            if !e.rel.as_os_str().is_empty() && only_leftovers(e) {
                // An old directory whose entries have all moved and whose IV
                // file is gone already (a run killed while finishing it), or
                // one a crash left without an IV right after mkdir: it is
                // empty, so finish it here.
                let done = self.enter_dir(off, e).and_then(|()| self.leave_dir(e));
                return match done {
                    Ok(()) => Ok(false),
                    Err(x) => {
                        self.failure = Some(err(format!(
                            "{}: {}: {x}. The rekey stopped; nothing is lost: fix the cause, \
                             then run `veilfs rekey --resume {}`",
                            self.dir.display(),
                            e.plain_path,
                            self.dir.display()
                        )));
                        Err(OfflineError::io(
                            e.plain_path,
                            io::Error::other("rekey stopped"),
                        ))
                    }
                };
            }
            self.enter_dir(off, e)
        } else {
            self.entry(off, e).and_then(|()| {
                let level = self.stack.last_mut().expect("inside the root");
                level.pending.push(e.name.to_owned());
                level.pending_bytes += e.stat.st_size as u64;
                if level.pending.len() >= PENDING_MAX || level.pending_bytes >= PENDING_BYTES {
                    self.flush()?;
                }
                self.tick(false);
                Ok(())
            })
        };
        match res {
            Ok(()) => Ok(true),
            Err(x) => {
                let msg = format!(
                    "{}: {}: {x}",
                    self.dir.display(),
                    if e.plain_path.is_empty() {
                        "/"
                    } else {
                        e.plain_path
                    }
                );
                self.failure = Some(err(format!(
                    "{msg}. The rekey stopped; the vault is half rekeyed and nothing is lost: \
                     fix the cause, then run `veilfs rekey --resume {}`",
                    self.dir.display()
                )));
                Err(OfflineError::io(
                    e.plain_path,
                    io::Error::other("rekey stopped"),
                ))
            }
        }
    }

    fn leave(&mut self, _off: &Offline, e: &Entry<'_>) -> crate::offline::Result<()> {
        match self.leave_dir(e) {
            Ok(()) => {
                self.tick(true);
                Ok(())
            }
            Err(x) => {
                self.failure = Some(err(format!(
                    "{}: {}: {x}. The rekey stopped; nothing is lost: fix the cause, then run \
                     `veilfs rekey --resume {}`",
                    self.dir.display(),
                    e.plain_path,
                    self.dir.display()
                )));
                Err(OfflineError::io(
                    e.plain_path,
                    io::Error::other("rekey stopped"),
                ))
            }
        }
    }

    fn problem(&mut self, _error: &OfflineError) -> Control {
        Control::Stop
    }
}

/// The IV of a directory of the new generation. An IV file cut short by a
/// kill between its creation and its write (nothing is in the directory
/// yet then) is removed and reported as missing (`NOENT`).
pub(crate) fn read_new_dir_iv(dir: &OwnedFd) -> std::result::Result<DirIv, Errno> {
    match store::read_dir_iv(dir) {
        Ok(iv) => Ok(iv),
        Err(Errno::NOENT) => Err(Errno::NOENT),
        Err(e) => {
            let name = c"veilfs.diriv";
            match store::lstat_at(dir, name) {
                Ok(st)
                    if st.st_mode & libc::S_IFMT == libc::S_IFREG
                        && (st.st_size as usize) < crate::names::DIR_IV_LEN =>
                {
                    rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
                    Err(Errno::NOENT)
                }
                _ => Err(e),
            }
        }
    }
}

/// Copies the long-target record (docs/FORMAT.md §7) of the symlink at
/// `first` (a path below `root`) into `to`, if it has one.
pub(crate) fn copy_target_record(root: &OwnedFd, first: &CStr, to: &OwnedFd) -> Result<()> {
    let path = first.to_bytes();
    let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b"."[..], path),
    };
    let dir = CString::new(dir).expect("no NUL");
    let name = CString::new(name).expect("no NUL");
    let from = open_dir(root, &dir).map_err(|x| err(format!("linking: {x}")))?;
    store::copy_long_target_record(&from, &name, to)
        .map_err(|x| err(format!("copying the long target record: {x}")))
}

/// Records `st`'s times on the new directory `dir` ([`TIMES_XATTR`]).
pub(crate) fn record_times(dir: &OwnedFd, st: &rustix::fs::Stat) -> std::result::Result<(), Errno> {
    let mut rec = Vec::with_capacity(24);
    rec.extend_from_slice(&st.st_mtime.to_be_bytes());
    rec.extend_from_slice(&(st.st_mtime_nsec as u32).to_be_bytes());
    rec.extend_from_slice(&st.st_atime.to_be_bytes());
    rec.extend_from_slice(&(st.st_atime_nsec as u32).to_be_bytes());
    rustix::fs::fsetxattr(dir, TIMES_XATTR, &rec, XattrFlags::empty())?;
    rustix::fs::fsync(dir)
}

/// Whether the old directory `e` has no IV file and holds nothing but
/// metadata and records (nothing that could need its IV).
fn only_leftovers(e: &Entry<'_>) -> bool {
    let Ok(dir) = open_dir(e.parent, e.name) else {
        return false;
    };
    match store::read_dir_iv(&dir) {
        Err(Errno::NOENT) => {}
        _ => return false,
    }
    let Ok(mut d) = rustix::fs::Dir::read_from(&dir) else {
        return false;
    };
    while let Some(Ok(ent)) = d.read() {
        let n = ent.file_name().to_bytes();
        let leftover = n == b"."
            || n == b".."
            || n.starts_with(b"veilfs")
            || n.ends_with(b".vln.name")
            || n.ends_with(b".vlink");
        if !leftover {
            return false;
        }
    }
    true
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
    let mut list = vec![0u8; 65536];
    if let Ok(n) = rustix::fs::llistxattr(&root_path, &mut list[..]) {
        for raw in list[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
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
        let mut id = [0u8; XATTR_ID_LEN + 1];
        if let Ok(XATTR_ID_LEN) = rustix::fs::lgetxattr(&new_path, XATTR_ID_NAME, &mut id[..]) {
            rustix::fs::lsetxattr(
                &root_path,
                XATTR_ID_NAME,
                &id[..XATTR_ID_LEN],
                XattrFlags::empty(),
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The state file's wrapped keys: nonce, key sealed under the other
    /// master key's wrap subkey, tag. They open under that key only, and
    /// any changed byte is refused.
    #[test]
    fn wrapped_keys_open_under_their_key_only() {
        let old = MasterKey::from_bytes([1u8; KEY_LEN]);
        let new = MasterKey::from_bytes([2u8; KEY_LEN]);
        let sealed = wrap(&old, &new);
        let raw = B64.decode(&sealed).unwrap();
        assert_eq!(raw.len(), NONCE_LEN + KEY_LEN + TAG_LEN);
        assert_ne!(&raw[NONCE_LEN..][..KEY_LEN], &[2u8; KEY_LEN][..]);
        assert_eq!(
            unwrap(&old, &sealed).unwrap().expose_secret(),
            new.expose_secret()
        );
        // Fresh nonce each time: two wraps of one key differ.
        assert_ne!(wrap(&old, &new), sealed);
        assert!(unwrap(&new, &sealed).is_err());
        for i in [0, NONCE_LEN, NONCE_LEN + KEY_LEN] {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            assert!(unwrap(&old, &B64.encode(&bad)).is_err(), "byte {i}");
        }
        assert!(unwrap(&old, &B64.encode(&raw[1..])).is_err());
    }
}
