//! Rebuilding a lost or destroyed `veilfs.conf` from the 64-digit key and
//! the backing files (docs/FORMAT.md §2: nothing a reader needs lives only
//! in the config).
//!
//! - The chunk size is read from file headers, and confirmed by opening a
//!   chunk with the key.
//! - The root directory IV derives from the key; every other directory
//!   stores its IV.
//! - The long-name threshold is inferred from the names: every regular
//!   name is at most the threshold, every long name's full encoded form is
//!   longer.
//! - At least one name must decrypt with the key, else it is the wrong key.
//!
//! The walk never follows symlinks and never leaves the filesystem of the
//! CIPHERDIR.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{Dir, Mode, OFlags};
use rustix::io::Errno;

use super::config::{MAX_CONFIG_LEN, VaultConfig};
use super::fsio::{self, Replace};
use super::{CONFIG_BACKUP_FILE, CONFIG_FILE, CONFIG_REPLACED_FILE, VaultError, now_rfc3339};
use crate::content::{
    ChunkLayout, ContentCipher, DEFAULT_CHUNK_SIZE, FileHeader, HEADER_LEN, Opened,
};
use crate::keys::{ContentKey, MasterKey};
use crate::names::{
    DEFAULT_LONG_NAME_THRESHOLD, DIR_IV_FILE, DirIv, EntryKind, MAX_LONG_NAME_THRESHOLD,
    MIN_LONG_NAME_THRESHOLD, NameCipher, classify_entry,
};
use crate::store;

/// Stop reading file headers once this many files confirmed a chunk size.
const ENOUGH_CONFIRMED: usize = 16;
/// Never read the headers of more files than this.
const MAX_FILES_INSPECTED: usize = 256;

#[derive(Debug, Clone, Copy, Default)]
pub struct RecoverOptions {
    /// Replace an existing `veilfs.conf` (kept as
    /// `veilfs.conf.before-recovery`).
    pub force: bool,
}

/// Where the recovered chunk size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSizeSource {
    /// Headers of this many files, each with a chunk that opened with the
    /// key.
    Verified { files: usize },
    /// A `veilfs.conf.bak` whose MAC verified with the key.
    Backup,
    /// Headers of this many files, none of whose chunks opened.
    Unverified { files: usize },
    /// No non-empty file: the default (any size reads an empty vault).
    Default,
}

/// Where the recovered long-name threshold came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdSource {
    /// The default, consistent with every name found.
    Default,
    /// The value of a verified `veilfs.conf.bak`, consistent with every
    /// name found.
    Backup,
    /// The smallest value consistent with the names (the default is not).
    Inferred,
    /// No value fits every name (damage, or foreign files): the backup's
    /// or the default.
    Inconsistent,
}

/// The result of [`recover_config_with`].
#[derive(Debug)]
pub struct Recovery {
    /// The key-only config that was written.
    pub config: VaultConfig,
    pub chunk_size_source: ChunkSizeSource,
    pub threshold_source: ThresholdSource,
    /// Names that decrypted with the key.
    pub names_verified: usize,
    /// Encrypted-looking names that did not (damaged, or moved).
    pub names_failed: usize,
    /// Where the replaced config went (with `force`).
    pub replaced: Option<PathBuf>,
    /// Things the user should know; none is fatal.
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Votes {
    confirmed: usize,
    unconfirmed: usize,
}

struct Walker {
    names: NameCipher,
    content_key: ContentKey,
    root_dev: u64,
    names_ok: usize,
    names_bad: usize,
    max_regular: usize,
    min_long: Option<usize>,
    dirs_without_iv: usize,
    other_filesystems: usize,
    unreadable_dirs: usize,
    votes: BTreeMap<u8, Votes>,
    files_inspected: usize,
    pending: Vec<PendingDir>,
    /// Runs right before a queued directory is opened: where a racing
    /// symlink swap would strike.
    #[cfg(test)]
    before_descend: Option<DescendHook>,
}

/// Test hook: runs with a directory's name right before it is opened.
#[cfg(test)]
type DescendHook = Box<dyn FnMut(&CStr)>;

/// A directory still to walk: its name in its (already open) parent.
struct PendingDir {
    parent: Rc<OwnedFd>,
    entry: CString,
}

impl Walker {
    fn for_key(key: &MasterKey) -> Self {
        let derived = key.derive();
        Walker {
            names: NameCipher::new(&derived, DEFAULT_LONG_NAME_THRESHOLD),
            content_key: derived.content.clone(),
            root_dev: 0,
            names_ok: 0,
            names_bad: 0,
            max_regular: 0,
            min_long: None,
            dirs_without_iv: 0,
            other_filesystems: 0,
            unreadable_dirs: 0,
            votes: BTreeMap::new(),
            files_inspected: 0,
            pending: Vec::new(),
            #[cfg(test)]
            before_descend: None,
        }
    }

    /// Walks CIPHERDIR the way `veilfs fsck` does (crate::check): every
    /// directory is opened relative to its parent's descriptor with
    /// `O_NOFOLLOW | O_DIRECTORY`, every file relative to its directory's
    /// descriptor with `O_NOFOLLOW`, so an entry swapped for a symlink
    /// between listing and opening is never followed out of CIPHERDIR.
    fn walk(&mut self, root: &Path) -> Result<(), VaultError> {
        let root_fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| VaultError::io(root, store::io_err(e)))?;
        self.root_dev = store::stat_fd(&root_fd)
            .map_err(|e| VaultError::io(root, store::io_err(e)))?
            .st_dev;
        self.list(Rc::new(root_fd), self.names.root_iv())
            .map_err(|e| VaultError::io(root, store::io_err(e)))?;
        while let Some(p) = self.pending.pop() {
            #[cfg(test)]
            if let Some(hook) = self.before_descend.as_mut() {
                hook(&p.entry);
            }
            let fd = match store::open_dir_path(&*p.parent, &p.entry) {
                Ok(fd) => fd,
                Err(e) => {
                    log::warn!("recover-config: cannot open directory {:?}: {e}", p.entry);
                    self.unreadable_dirs += 1;
                    continue;
                }
            };
            if store::stat_fd(&fd).map_or(true, |st| st.st_dev != self.root_dev) {
                self.other_filesystems += 1;
                continue;
            }
            let Ok(iv) = store::read_dir_iv(&fd) else {
                self.dirs_without_iv += 1;
                continue;
            };
            if let Err(e) = self.list(Rc::new(fd), iv) {
                log::warn!("recover-config: cannot list directory {:?}: {e}", p.entry);
                self.unreadable_dirs += 1;
            }
        }
        Ok(())
    }

    /// Examines the entries of one directory; queues its subdirectories.
    fn list(&mut self, dir: Rc<OwnedFd>, iv: DirIv) -> Result<(), Errno> {
        let mut reader = Dir::new(store::open_dir_read(&*dir)?)?;
        while let Some(entry) = reader.read() {
            let entry = entry?;
            let Ok(name) = std::str::from_utf8(entry.file_name().to_bytes()) else {
                continue;
            };
            let authentic = match classify_entry(name) {
                EntryKind::Regular(encoded) => {
                    let ok = self.names.decrypt_name(&iv, encoded).is_ok();
                    if ok {
                        self.max_regular = self.max_regular.max(encoded.len());
                    }
                    ok
                }
                EntryKind::Long(entry_name) => self.check_long(&dir, entry_name, &iv),
                EntryKind::LongRecord
                | EntryKind::LongTargetRecord
                | EntryKind::Metadata
                | EntryKind::Foreign => continue,
            };
            if !authentic {
                self.names_bad += 1;
                continue;
            }
            self.names_ok += 1;
            let entry = store::cstr(name);
            let Ok(st) = store::lstat_at(&*dir, &entry) else {
                continue;
            };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => self.pending.push(PendingDir {
                    parent: dir.clone(),
                    entry,
                }),
                libc::S_IFREG => self.inspect_file(&dir, &entry, st.st_size as u64),
                _ => {}
            }
        }
        Ok(())
    }

    fn check_long(&mut self, dir: &OwnedFd, entry_name: &str, iv: &DirIv) -> bool {
        let Ok(full) = store::read_long_record(dir, entry_name) else {
            return false;
        };
        if self.names.decrypt_name(iv, &full).is_err() {
            return false;
        }
        self.min_long = Some(self.min_long.map_or(full.len(), |m| m.min(full.len())));
        true
    }

    fn confirmed_total(&self) -> usize {
        self.votes.values().map(|v| v.confirmed).sum()
    }

    /// Reads the header of a backing file and tries to open its first
    /// chunk with the chunk size the header declares.
    fn inspect_file(&mut self, dir: &OwnedFd, entry: &CStr, size: u64) {
        if size < HEADER_LEN as u64
            || self.files_inspected >= MAX_FILES_INSPECTED
            || self.confirmed_total() >= ENOUGH_CONFIRMED
        {
            return;
        }
        self.files_inspected += 1;
        let Ok(fd) = rustix::fs::openat(
            dir,
            entry,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            return;
        };
        let mut file = fs::File::from(fd);
        let mut header = [0u8; HEADER_LEN];
        if !matches!(fsio::read_prefix(&mut file, &mut header), Ok(HEADER_LEN)) {
            return;
        }
        let Some(layout) = FileHeader::declared_layout(&header) else {
            return;
        };
        let confirmed =
            Self::opens_first_chunk(&self.content_key, layout, &header, &mut file, size);
        let votes = self.votes.entry(layout.shift()).or_default();
        if confirmed {
            votes.confirmed += 1;
        } else {
            votes.unconfirmed += 1;
        }
    }

    fn opens_first_chunk(
        key: &ContentKey,
        layout: ChunkLayout,
        header: &[u8; HEADER_LEN],
        file: &mut fs::File,
        size: u64,
    ) -> bool {
        let Ok(header) = FileHeader::parse(header, layout) else {
            return false;
        };
        let body = size - HEADER_LEN as u64;
        if body == 0 {
            return false;
        }
        let stored_len = body.min(layout.stored_chunk_len() as u64) as usize;
        let mut stored = vec![0u8; stored_len];
        if !matches!(fsio::read_prefix(file, &mut stored), Ok(n) if n == stored_len) {
            return false;
        }
        let last = layout.chunk_count(layout.plain_size(size)) <= 1;
        let mut out = vec![0u8; layout.chunk_size()];
        let cipher = ContentCipher::new(key, layout);
        matches!(
            cipher.open_chunk(&header, 0, last, &stored, &mut out),
            Ok(Opened::Data(_))
        )
    }
}

/// Rebuilds `dir/veilfs.conf` from the 64-digit key. Refuses to replace an
/// existing config; see [`recover_config_with`] for `force` and details.
pub fn recover_config(dir: &Path, key: &MasterKey) -> Result<VaultConfig, VaultError> {
    recover_config_with(dir, key, &RecoverOptions::default()).map(|r| r.config)
}

/// A `veilfs.conf.bak` that verifies with `key`, if there is one.
fn verified_backup(dir: &Path, key: &MasterKey, warnings: &mut Vec<String>) -> Option<VaultConfig> {
    let path = dir.join(CONFIG_BACKUP_FILE);
    let bytes = match fsio::read_bounded(&path, MAX_CONFIG_LEN) {
        Ok(Some(bytes)) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        _ => {
            warnings.push(format!("ignored unreadable {}", path.display()));
            return None;
        }
    };
    let parsed = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| VaultConfig::from_json(text, &path).ok());
    match parsed {
        Some(config) if config.key_id == key.key_id() && config.verify(key, &path).is_ok() => {
            Some(config)
        }
        _ => {
            warnings.push(format!(
                "ignored {}: it does not verify with this key",
                path.display()
            ));
            None
        }
    }
}

/// The key id stored in whatever is left of an existing config, if any.
fn existing_key_id(path: &Path) -> Option<Vec<u8>> {
    use base64::Engine;
    let bytes = fsio::read_bounded(path, MAX_CONFIG_LEN).ok()??;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let id = value.get("key_id")?.as_str()?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .ok()
}

/// Moves the config that `--force` replaces to
/// `veilfs.conf.before-recovery`, or, if an earlier recovery left one
/// there, to the first free `veilfs.conf.before-recovery.N` (N = 2, 3,
/// ...): a second recovery never destroys what the first one kept.
fn set_aside(dir: &Path, config_path: &Path) -> Result<PathBuf, VaultError> {
    const MAX_KEPT: u32 = 100;
    for n in 1..=MAX_KEPT {
        let name = match n {
            1 => CONFIG_REPLACED_FILE.to_string(),
            n => format!("{CONFIG_REPLACED_FILE}.{n}"),
        };
        let aside = dir.join(&name);
        let moved = rustix::fs::renameat_with(
            rustix::fs::CWD,
            config_path,
            rustix::fs::CWD,
            &aside,
            rustix::fs::RenameFlags::NOREPLACE,
        );
        match moved {
            Ok(()) => return Ok(aside),
            Err(Errno::EXIST) => continue,
            // No RENAME_NOREPLACE here (some FUSE and network file
            // systems): check, then rename.
            Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {
                if fs::symlink_metadata(&aside).is_ok() {
                    continue;
                }
                fs::rename(config_path, &aside).map_err(|e| VaultError::io(config_path, e))?;
                return Ok(aside);
            }
            Err(e) => return Err(VaultError::io(config_path, store::io_err(e))),
        }
    }
    Err(VaultError::RecoveryFailed {
        dir: dir.to_path_buf(),
        reason: format!(
            "{MAX_KEPT} configs replaced by earlier recoveries are kept as {CONFIG_REPLACED_FILE}*; \
             delete the ones you no longer need and run recover-config again"
        ),
    })
}

/// Rebuilds `dir/veilfs.conf` as a key-only config from the key and the
/// backing tree. Writes nothing unless at least one name decrypts with the
/// key (or the vault holds no encrypted name at all).
pub fn recover_config_with(
    dir: &Path,
    key: &MasterKey,
    opts: &RecoverOptions,
) -> Result<Recovery, VaultError> {
    let root_meta = fs::metadata(dir).map_err(|e| VaultError::io(dir, e))?;
    if !root_meta.is_dir() {
        return Err(VaultError::io(
            dir,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let config_path = dir.join(CONFIG_FILE);
    let config_exists = fs::symlink_metadata(&config_path).is_ok();
    if config_exists && !opts.force {
        return Err(VaultError::AlreadyExists(config_path));
    }
    let mut warnings = Vec::new();
    let backup = verified_backup(dir, key, &mut warnings);

    let mut walker = Walker::for_key(key);
    walker.walk(dir)?;

    if walker.names_ok == 0 {
        if walker.names_bad > 0 {
            return Err(VaultError::WrongKey {
                path: dir.to_path_buf(),
            });
        }
        if config_exists
            && existing_key_id(&config_path).is_some_and(|id| id != key.key_id().as_slice())
        {
            return Err(VaultError::WrongKey {
                path: dir.to_path_buf(),
            });
        }
        if backup.is_none() {
            warnings.push(
                "the vault holds no encrypted names, so the key could not be checked against it"
                    .into(),
            );
        }
    }
    let no_iv =
        format!("directories have no readable {DIR_IV_FILE}; their contents were not examined");
    let counted: [(usize, &str); 4] = [
        (
            walker.names_bad,
            "encrypted-looking names did not decrypt with the key (damaged, or moved between directories); `veilfs fsck` lists them",
        ),
        (walker.dirs_without_iv, &no_iv),
        (
            walker.other_filesystems,
            "directories on other filesystems (mount points) were skipped",
        ),
        (walker.unreadable_dirs, "directories could not be listed"),
    ];
    for (count, what) in counted {
        if count > 0 {
            warnings.push(format!("{count} {what}"));
        }
    }

    let (chunk_size, chunk_size_source) =
        choose_chunk_size(&walker, backup.as_ref(), &mut warnings);
    let (long_name_threshold, threshold_source) =
        choose_threshold(&walker, backup.as_ref(), &mut warnings);
    let created = backup
        .as_ref()
        .map_or_else(now_rfc3339, |b| b.created.clone());
    let config = VaultConfig::seal(key, chunk_size, long_name_threshold, created, None)?;

    let mut replaced = None;
    if config_exists {
        replaced = Some(set_aside(dir, &config_path)?);
    }
    fsio::write_atomic(dir, CONFIG_FILE, config.to_json().as_bytes(), Replace::No)?;
    Ok(Recovery {
        config,
        chunk_size_source,
        threshold_source,
        names_verified: walker.names_ok,
        names_failed: walker.names_bad,
        replaced,
        warnings,
    })
}

fn choose_chunk_size(
    walker: &Walker,
    backup: Option<&VaultConfig>,
    warnings: &mut Vec<String>,
) -> (u32, ChunkSizeSource) {
    let size = |shift: u8| 1u32 << shift;
    let confirmed: Vec<(u8, usize)> = walker
        .votes
        .iter()
        .filter(|(_, v)| v.confirmed > 0)
        .map(|(s, v)| (*s, v.confirmed))
        .collect();
    if let Some(&(shift, files)) = confirmed.iter().max_by_key(|(_, n)| *n) {
        if confirmed.len() > 1 {
            let all: Vec<String> = confirmed
                .iter()
                .map(|(s, n)| format!("{} ({n} files)", size(*s)))
                .collect();
            warnings.push(format!(
                "files declare different chunk sizes: {}; using the most common",
                all.join(", ")
            ));
        }
        if let Some(b) = backup.filter(|b| b.chunk_size != size(shift)) {
            warnings.push(format!(
                "{CONFIG_BACKUP_FILE} says chunk size {} but the files use {}; using the files'",
                b.chunk_size,
                size(shift)
            ));
        }
        return (size(shift), ChunkSizeSource::Verified { files });
    }
    if let Some(b) = backup {
        return (b.chunk_size, ChunkSizeSource::Backup);
    }
    if let Some((&shift, votes)) = walker.votes.iter().max_by_key(|(_, v)| v.unconfirmed) {
        warnings.push(format!(
            "no file chunk opened with the key; chunk size {} is taken from unverified headers",
            size(shift)
        ));
        return (
            size(shift),
            ChunkSizeSource::Unverified {
                files: votes.unconfirmed,
            },
        );
    }
    (DEFAULT_CHUNK_SIZE, ChunkSizeSource::Default)
}

fn choose_threshold(
    walker: &Walker,
    backup: Option<&VaultConfig>,
    warnings: &mut Vec<String>,
) -> (u32, ThresholdSource) {
    // Every regular name <= t < every long name's full encoded length.
    let lo = (walker.max_regular as u32).max(MIN_LONG_NAME_THRESHOLD);
    let hi = walker
        .min_long
        .map_or(MAX_LONG_NAME_THRESHOLD, |l| (l as u32).saturating_sub(1))
        .min(MAX_LONG_NAME_THRESHOLD);
    let fits = |t: u32| lo <= t && t <= hi;
    if let Some(b) = backup.filter(|b| fits(b.long_name_threshold)) {
        return (b.long_name_threshold, ThresholdSource::Backup);
    }
    if fits(DEFAULT_LONG_NAME_THRESHOLD) {
        return (DEFAULT_LONG_NAME_THRESHOLD, ThresholdSource::Default);
    }
    if lo <= hi {
        return (lo, ThresholdSource::Inferred);
    }
    let fallback = backup.map_or(DEFAULT_LONG_NAME_THRESHOLD, |b| b.long_name_threshold);
    warnings.push(format!(
        "no long-name threshold fits every name (longest regular name {}, shortest long name {}); using {fallback}",
        walker.max_regular,
        walker.min_long.map_or("none".into(), |l| l.to_string())
    ));
    (fallback, ThresholdSource::Inconsistent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::CHUNK_OVERHEAD;
    use crate::vault::{CreateOptions, create_vault, unlock_with_key};

    fn key_only(dir: &Path, chunk_size: u32) -> crate::vault::UnlockedVault {
        create_vault(
            dir,
            &CreateOptions {
                chunk_size,
                ..CreateOptions::default()
            },
        )
        .unwrap()
    }

    fn sealed_file(key: &MasterKey, layout: ChunkLayout, plain: &[u8]) -> Vec<u8> {
        let c = ContentCipher::new(&key.derive().content, layout);
        let h = FileHeader::generate(layout);
        let mut out = h.as_bytes().to_vec();
        let mut chunk = vec![0u8; plain.len() + CHUNK_OVERHEAD];
        c.seal_chunk(&h, 0, true, plain, &mut chunk);
        out.extend_from_slice(&chunk);
        out
    }

    #[test]
    fn empty_vault_recovers_with_defaults_and_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let v = key_only(tmp.path(), 16384);
        fs::remove_file(tmp.path().join(CONFIG_FILE)).unwrap();
        fs::create_dir(tmp.path().join(".stfolder")).unwrap();
        let r = recover_config_with(tmp.path(), &v.master, &RecoverOptions::default()).unwrap();
        assert_eq!(r.chunk_size_source, ChunkSizeSource::Default);
        assert_eq!(r.config.chunk_size, DEFAULT_CHUNK_SIZE);
        assert_eq!(r.threshold_source, ThresholdSource::Default);
        assert_eq!(r.names_verified, 0);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("could not be checked"))
        );
        unlock_with_key(tmp.path(), v.master).unwrap();
    }

    #[test]
    fn verified_backup_supplies_what_the_files_cannot() {
        let tmp = tempfile::tempdir().unwrap();
        let v = key_only(tmp.path(), 16384);
        fs::rename(
            tmp.path().join(CONFIG_FILE),
            tmp.path().join(CONFIG_BACKUP_FILE),
        )
        .unwrap();
        let r = recover_config_with(tmp.path(), &v.master, &RecoverOptions::default()).unwrap();
        assert_eq!(r.chunk_size_source, ChunkSizeSource::Backup);
        assert_eq!(r.config.chunk_size, 16384);
        assert_eq!(r.config.created, v.config.created);
        // A backup from another vault is ignored, and an empty vault with
        // another vault's backup is not opened by this key.
        let other = MasterKey::generate();
        fs::remove_file(tmp.path().join(CONFIG_FILE)).unwrap();
        let r = recover_config_with(tmp.path(), &other, &RecoverOptions::default()).unwrap();
        assert_eq!(r.chunk_size_source, ChunkSizeSource::Default);
        assert!(r.warnings.iter().any(|w| w.contains("does not verify")));
    }

    #[test]
    fn symlinks_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let v = key_only(tmp.path(), 4096);
        let names = v.name_cipher();
        // A valid 64 KiB-chunk file outside the vault, reachable only
        // through a symlink whose name is authentic.
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("f");
        fs::write(
            &target,
            sealed_file(&v.master, ChunkLayout::new(65536).unwrap(), b"x"),
        )
        .unwrap();
        let link = names.backing_name(&names.root_iv(), b"link").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join(link.entry())).unwrap();
        // And one real file with 4 KiB chunks.
        let file = names.backing_name(&names.root_iv(), b"real").unwrap();
        fs::write(
            tmp.path().join(file.entry()),
            sealed_file(&v.master, v.layout(), b"y"),
        )
        .unwrap();
        fs::remove_file(tmp.path().join(CONFIG_FILE)).unwrap();
        let r = recover_config_with(tmp.path(), &v.master, &RecoverOptions::default()).unwrap();
        assert_eq!(r.names_verified, 2);
        assert_eq!(r.chunk_size_source, ChunkSizeSource::Verified { files: 1 });
        assert_eq!(r.config.chunk_size, 4096);
    }

    #[test]
    fn force_keeps_the_replaced_config() {
        let tmp = tempfile::tempdir().unwrap();
        let v = key_only(tmp.path(), 4096);
        assert!(matches!(
            recover_config(tmp.path(), &v.master),
            Err(VaultError::AlreadyExists(_))
        ));
        fs::write(tmp.path().join(CONFIG_FILE), "garbage").unwrap();
        let r =
            recover_config_with(tmp.path(), &v.master, &RecoverOptions { force: true }).unwrap();
        assert_eq!(fs::read_to_string(r.replaced.unwrap()).unwrap(), "garbage");
        unlock_with_key(tmp.path(), v.master).unwrap();
    }

    /// Issue 13, finding 11: a second `--force` keeps what the first one
    /// set aside.
    #[test]
    fn a_second_force_never_overwrites_the_first_replaced_config() {
        let tmp = tempfile::tempdir().unwrap();
        let v = key_only(tmp.path(), 4096);
        let force = RecoverOptions { force: true };
        fs::write(tmp.path().join(CONFIG_FILE), "first garbage").unwrap();
        let first = recover_config_with(tmp.path(), &v.master, &force).unwrap();
        assert_eq!(
            first.replaced.as_deref(),
            Some(tmp.path().join(CONFIG_REPLACED_FILE).as_path())
        );
        fs::write(tmp.path().join(CONFIG_FILE), "second garbage").unwrap();
        let second = recover_config_with(tmp.path(), &v.master, &force).unwrap();
        let kept = second.replaced.unwrap();
        assert_ne!(kept, tmp.path().join(CONFIG_REPLACED_FILE));
        assert_eq!(fs::read_to_string(kept).unwrap(), "second garbage");
        assert_eq!(
            fs::read_to_string(tmp.path().join(CONFIG_REPLACED_FILE)).unwrap(),
            "first garbage"
        );
        unlock_with_key(tmp.path(), v.master).unwrap();
    }

    /// Issue 13, finding 11: a directory swapped for a symlink after it was
    /// listed, right before the walk descends into it (the race a hostile
    /// local user can win against a path walk), is not followed out of
    /// CIPHERDIR. Here the symlink leads to a copy of the directory, whose
    /// names would all decrypt.
    #[test]
    fn a_directory_swapped_for_a_symlink_mid_walk_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let v = key_only(tmp.path(), 4096);
        let names = v.name_cipher();
        let root = names.root_iv();
        let sub = names.backing_name(&root, b"sub").unwrap();
        let sub_path = tmp.path().join(sub.entry());
        fs::create_dir(&sub_path).unwrap();
        let sub_iv = names.child_dir_iv(&root, b"sub");
        fs::write(sub_path.join(DIR_IV_FILE), sub_iv.0).unwrap();
        for i in 0..5 {
            let f = names
                .backing_name(&sub_iv, format!("f{i}").as_bytes())
                .unwrap();
            fs::write(
                sub_path.join(f.entry()),
                sealed_file(&v.master, v.layout(), b"z"),
            )
            .unwrap();
        }
        // The copy outside CIPHERDIR.
        let outside = tempfile::tempdir().unwrap();
        let copy = outside.path().join("copy");
        fs::create_dir(&copy).unwrap();
        for e in fs::read_dir(&sub_path).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
        fs::remove_file(tmp.path().join(CONFIG_FILE)).unwrap();
        let mut walker = Walker::for_key(&v.master);
        let (swap_from, swap_to) = (sub_path.clone(), copy.clone());
        walker.before_descend = Some(Box::new(move |_entry: &CStr| {
            fs::remove_dir_all(&swap_from).unwrap();
            std::os::unix::fs::symlink(&swap_to, &swap_from).unwrap();
        }));
        walker.walk(tmp.path()).unwrap();
        assert_eq!(
            walker.names_ok, 1,
            "only `sub` itself: the copy was not walked"
        );
        assert_eq!(walker.unreadable_dirs, 1);
        assert_eq!(walker.files_inspected, 0);
    }

    #[test]
    fn an_existing_configs_key_id_exposes_a_wrong_key_in_an_empty_vault() {
        let tmp = tempfile::tempdir().unwrap();
        key_only(tmp.path(), 4096);
        let err = recover_config_with(
            tmp.path(),
            &MasterKey::generate(),
            &RecoverOptions { force: true },
        )
        .unwrap_err();
        assert!(matches!(err, VaultError::WrongKey { .. }));
    }
}
