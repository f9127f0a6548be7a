//! Sync-client conflict copies in a backing directory (docs/FORMAT.md
//! §8): the I/O half of [`crate::conflict`], whose pure parser says what a
//! name is a copy of. [`resolve_listing`] applies it to one listed
//! directory, either renaming each copy to a proper encrypted name (a
//! writable mount, as Cryptomator does) or only showing it under its
//! display name (a read-only mount, offline listing); [`examine`] is the
//! check fsck runs on one name; [`merge_dirs`] joins a folder created on
//! two devices.

use std::collections::HashSet;
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, FileType, RenameFlags};
use rustix::io::Errno;

use crate::conflict::{Parsed, is_dir_iv_copy, merged_iv_name, parse, unique_display_name};
use crate::names::{
    BackingName, DIR_IV_FILE, DirIv, EntryKind, LONG_NAME_SUFFIX, NameCipher, classify_entry,
};
use crate::store::{self, ListedEntry, Listing, cstr};

/// Merges backing directory `from` into `into`, both in `dir`: the same
/// folder created on two devices (every IV of `from` has the birth tag of
/// `into`'s, docs/FORMAT.md §6). `from`'s IV files are copied into `into`
/// as secondary IVs, then each entry is moved over, then `from` is
/// removed. Idempotent: an interrupted merge is finished by the next one.
/// `Err(XDEV)` when the two are not the same folder.
pub fn merge_dirs(dir: BorrowedFd<'_>, into: &str, from: &str) -> Result<(), Errno> {
    let m = store::open_dir_path(dir, cstr(into).as_c_str())?;
    let s = store::open_dir_path(dir, cstr(from).as_c_str())?;
    let m_iv = store::read_dir_iv(&m)?;
    let s_iv = store::read_dir_iv(&s).map_err(|_| Errno::XDEV)?;
    let mut names: Vec<String> = Vec::new();
    let mut reader = rustix::fs::Dir::new(store::open_dir_read(&s)?)?;
    while let Some(entry) = reader.read() {
        let entry = entry?;
        match entry.file_name().to_bytes() {
            b"." | b".." => {}
            // Foreign names (not UTF-8): `from` stays.
            raw => names.push(String::from_utf8(raw.to_vec()).map_err(|_| Errno::NOTEMPTY)?),
        }
    }
    let (iv_files, entries): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| n == DIR_IV_FILE || is_dir_iv_copy(n));
    let mut ivs = Vec::new();
    for name in &iv_files {
        let iv = store::read_dir_iv_file(&s, cstr(name).as_c_str())?;
        if iv != m_iv && !crate::names::same_birth(&m_iv, &iv) {
            return Err(Errno::XDEV);
        }
        if iv != m_iv && !ivs.contains(&iv) {
            ivs.push(iv);
        }
    }
    for iv in &ivs {
        let name = merged_iv_name(iv);
        match store::write_dir_iv_file(&m, cstr(&name).as_c_str(), iv) {
            Ok(()) => {}
            Err(Errno::EXIST)
                if store::read_dir_iv_file(&m, cstr(&name).as_c_str()).ok() == Some(*iv) => {}
            Err(e) => return Err(e),
        }
    }
    rustix::fs::fsync(store::open_dir_read(&m)?)?;
    for name in &entries {
        let c = cstr(name);
        match rustix::fs::renameat_with(&s, c.as_c_str(), &m, c.as_c_str(), RenameFlags::NOREPLACE)
        {
            Ok(()) | Err(Errno::NOENT) => {}
            // A long-name record is a function of its entry's name: the
            // same in both directories.
            Err(Errno::EXIST)
                if classify_entry(name) == EntryKind::LongRecord
                    && store::read_long_record(&s, name.strip_suffix(".name").unwrap_or(name))
                        .ok()
                        .is_some_and(|a| {
                            store::read_long_record(&m, name.strip_suffix(".name").unwrap_or(name))
                                .ok()
                                == Some(a)
                        }) =>
            {
                rustix::fs::unlinkat(&s, c.as_c_str(), AtFlags::empty())?;
            }
            Err(e) => return Err(e),
        }
    }
    // Only IV files are left: remove them and the directory.
    for name in &iv_files {
        match rustix::fs::unlinkat(&s, cstr(name).as_c_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    match rustix::fs::unlinkat(dir, cstr(from).as_c_str(), AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => {
            // Something arrived meanwhile: put the IV back so it reads.
            let _ = store::write_dir_iv(&s, &s_iv);
            Err(e)
        }
    }
}

/// What to do with the conflict copies found in a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Rename each copy to the encrypted name of its display name, so that
    /// every device sees an ordinary entry (writable mounts).
    Rename,
    /// Show each copy under its display name, leaving CIPHERDIR unchanged
    /// (read-only mounts, offline tools).
    Show,
}

/// One conflict copy found by [`resolve_listing`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The backing name the copy had.
    pub found: String,
    /// The plaintext name it is listed under.
    pub plain: Vec<u8>,
    /// The backing entry now: the proper encrypted name if renamed, else
    /// `found`.
    pub backing: String,
    pub renamed: bool,
    /// Backing inode number.
    pub ino: u64,
}

/// The original entry's encrypted name decrypted, or why not.
fn decrypt_original(
    dir: BorrowedFd<'_>,
    iv: &DirIv,
    names: &NameCipher,
    original: &str,
) -> Option<Vec<u8>> {
    let encoded = if original.ends_with(LONG_NAME_SUFFIX) {
        store::read_long_record(dir, original).ok()?
    } else {
        original.to_string()
    };
    names.decrypt_name(iv, &encoded).ok()
}

/// Whether backing entry `copy` may be shown as a conflict copy of backing
/// entry `original` (docs/FORMAT.md §8): both exist, have the same file
/// type, and for a directory the same `veilfs.diriv` content. A sync
/// client's copy always has them; a copy that does not is an entry
/// grafted from elsewhere. `Err` says why not.
pub fn check_copy(dir: BorrowedFd<'_>, copy: &str, original: &str) -> Result<(), String> {
    let st_copy = store::lstat_at(dir, cstr(copy).as_c_str()).map_err(|e| format!("{e}"))?;
    let st_orig = store::lstat_at(dir, cstr(original).as_c_str())
        .map_err(|e| format!("its original {original} cannot be examined: {e}"))?;
    let (ft_copy, ft_orig) = (
        FileType::from_raw_mode(st_copy.st_mode),
        FileType::from_raw_mode(st_orig.st_mode),
    );
    if ft_copy != ft_orig {
        return Err(format!(
            "it is a {ft_copy:?} but its original {original} is a {ft_orig:?}"
        ));
    }
    if ft_copy == FileType::Directory {
        let iv_of = |name: &str| {
            store::open_dir_path(dir, cstr(name).as_c_str()).and_then(store::read_dir_iv)
        };
        match (iv_of(copy), iv_of(original)) {
            (Ok(a), Ok(b)) if a == b => {}
            (Ok(_), Ok(_)) => {
                return Err(format!(
                    "its veilfs.diriv differs from that of its original {original}"
                ));
            }
            (a, b) => {
                return Err(format!(
                    "the veilfs.diriv of the copy or its original {original} is unreadable \
                     ({:?}, {:?})",
                    a.err(),
                    b.err()
                ));
            }
        }
    }
    Ok(())
}

/// A name that reads as a conflict copy of an entry of this directory, but
/// is not accepted as one (see [`check_copy`]).
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The backing name.
    pub found: String,
    /// The original's plaintext name.
    pub original_plain: Vec<u8>,
    pub reason: String,
}

/// The conflict copy a backing name is, if it is one of an entry of this
/// directory: `Ok(Some((original's plaintext, tag)))`, or `Err` when it
/// reads as a copy whose original decrypts here but fails [`check_copy`].
pub fn examine(
    dir: BorrowedFd<'_>,
    iv: &DirIv,
    names: &NameCipher,
    name: &str,
) -> Result<Option<(Vec<u8>, String)>, Rejected> {
    match parse(name) {
        Parsed::NotConflict => Ok(None),
        Parsed::LongRecord { original } => {
            log::debug!("conflict copy {name:?} of long-name record {original} left alone");
            Ok(None)
        }
        Parsed::Metadata { original } => {
            log::debug!("conflict copy {name:?} of {original} left alone");
            Ok(None)
        }
        Parsed::Entry(candidates) => {
            let hit = candidates.into_iter().find_map(|c| {
                decrypt_original(dir, iv, names, &c.original).map(|p| (p, c.tag, c.original))
            });
            let Some((plain, tag, original)) = hit else {
                log::debug!(
                    "{name:?} looks like a conflict copy, but its original name does not \
                     decrypt here; left alone"
                );
                return Ok(None);
            };
            match check_copy(dir, name, &original) {
                Ok(()) => Ok(Some((plain, tag))),
                Err(reason) => Err(Rejected {
                    found: name.to_string(),
                    original_plain: plain,
                    reason,
                }),
            }
        }
    }
}

/// The name an entry found in a listing is shown under: its own plaintext
/// name when `keep_name` and that is free, else the first free display
/// name with `tag`.
fn shown_name(plain: &[u8], tag: &str, keep_name: bool, taken: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    if keep_name && !taken(plain) {
        return plain.to_vec();
    }
    unique_display_name(plain, tag, taken)
}

/// Tag of an entry under a copy of `veilfs.diriv` whose name is taken.
const SECONDARY_TAG: &str = "conflict";

/// The name wanted for an entry found in a listing (see [`shown_name`]).
#[derive(Clone, Copy)]
struct Wanted<'a> {
    plain: &'a [u8],
    tag: &'a str,
    keep_name: bool,
}

/// Renames `found` to the encrypted form of the first free display name
/// (or of its own plaintext name, with `keep_name`).
/// Returns the display name and new backing entry.
fn rename_copy(
    dir: BorrowedFd<'_>,
    iv: &DirIv,
    names: &NameCipher,
    found: &str,
    wanted: Wanted<'_>,
    taken: &HashSet<Vec<u8>>,
) -> Result<(Vec<u8>, String), Errno> {
    let Wanted {
        plain,
        tag,
        keep_name,
    } = wanted;
    let mut extra: HashSet<Vec<u8>> = HashSet::new();
    for _ in 0..64 {
        let display = shown_name(plain, tag, keep_name, |d| {
            taken.contains(d) || extra.contains(d)
        });
        let backing = names
            .backing_name(iv, &display)
            .map_err(|_| Errno::NAMETOOLONG)?;
        let had_record = match &backing {
            BackingName::Long { entry, .. } => store::read_long_record(dir, entry).is_ok(),
            BackingName::Regular(_) => false,
        };
        store::write_long_record(dir, &backing)?;
        let res = rustix::fs::renameat_with(
            dir,
            cstr(found).as_c_str(),
            dir,
            cstr(backing.entry()).as_c_str(),
            RenameFlags::NOREPLACE,
        );
        match res {
            Ok(()) => return Ok((display, backing.entry().to_string())),
            // Taken by an entry the listing did not show (just created,
            // or undecryptable): try the next counter.
            Err(Errno::EXIST) => {
                extra.insert(display);
            }
            Err(e) => {
                if !had_record {
                    store::remove_long_record(dir, &backing);
                }
                return Err(e);
            }
        }
    }
    Err(Errno::EXIST)
}

/// Finds the conflict copies among a listing's foreign and undecryptable
/// entries and moves them into `listing.entries` under their display
/// names. With [`Mode::Rename`] each copy is first renamed in the backing
/// directory (`renameat2(RENAME_NOREPLACE)`); if that fails it is shown as
/// with [`Mode::Show`]. Copies are handled in byte order of their backing
/// names, so devices listing the same directory choose the same names.
pub fn resolve_listing(
    dir: BorrowedFd<'_>,
    iv: &DirIv,
    names: &NameCipher,
    listing: &mut Listing,
    mode: Mode,
) -> Vec<Resolved> {
    if listing.foreign.is_empty() && listing.bad.is_empty() && listing.secondary.is_empty() {
        return Vec::new();
    }
    // (backing name, original plaintext name, tag, keep the name, rename):
    // entries under a copy of veilfs.diriv keep their own names when free.
    let mut found: Vec<(String, Vec<u8>, String, bool, bool)> = Vec::new();
    for e in std::mem::take(&mut listing.secondary) {
        let mut rename = true;
        // The same folder created on two devices: merged into one
        // (writable mounts), else kept under a conflict name.
        if mode == Mode::Rename
            && e.file_type == FileType::Directory
            && let Some(main) = listing
                .entries
                .iter()
                .find(|m| m.plain == e.plain && m.file_type == FileType::Directory)
        {
            match merge_dirs(dir, &main.backing, &e.backing) {
                Ok(()) => {
                    log::info!(
                        "directory {} merged into {} (the same folder, created on two devices)",
                        e.backing,
                        main.backing
                    );
                    continue;
                }
                // Perhaps still arriving (its veilfs.diriv, or entries
                // being written): shown apart, not renamed, so that the
                // next listing tries again.
                Err(err) => {
                    log::debug!(
                        "directory {} not merged into {} yet: {err}",
                        e.backing,
                        main.backing
                    );
                    rename = false;
                }
            }
        }
        found.push((e.backing, e.plain, SECONDARY_TAG.to_string(), true, rename));
    }
    let looked_at = listing
        .foreign
        .iter()
        .chain(listing.bad.iter().map(|b| &b.backing));
    for name in looked_at {
        match examine(dir, iv, names, name) {
            Ok(Some((plain, tag))) => found.push((name.clone(), plain, tag, false, true)),
            Ok(None) => {}
            Err(r) => log::warn!(
                "backing entry {:?} looks like a sync-client conflict copy but is not shown: \
                 {} (possible tampering)",
                r.found,
                r.reason
            ),
        }
    }
    if found.is_empty() {
        return Vec::new();
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut taken: HashSet<Vec<u8>> = listing.entries.iter().map(|e| e.plain.clone()).collect();
    let mut out = Vec::new();
    for (name, plain, tag, keep_name, rename) in found {
        listing.foreign.retain(|f| f != &name);
        listing.bad.retain(|b| b.backing != name);
        let st = match store::lstat_at(dir, cstr(&name).as_c_str()) {
            Ok(st) => st,
            Err(e) => {
                log::debug!("conflict copy {name:?} vanished: {e}");
                continue;
            }
        };
        let mut result = None;
        if mode == Mode::Rename && rename {
            match rename_copy(
                dir,
                iv,
                names,
                &name,
                Wanted {
                    plain: &plain,
                    tag: &tag,
                    keep_name,
                },
                &taken,
            ) {
                Ok((display, backing)) => result = Some((display, backing, true)),
                // Renamed by a concurrent listing, or gone: nothing to show.
                Err(Errno::NOENT) => {
                    log::debug!("conflict copy {name:?} vanished before it was renamed");
                    continue;
                }
                Err(e) => log::warn!(
                    "conflict copy {name:?} could not be renamed ({e}); shown without renaming"
                ),
            }
        }
        let (display, backing, renamed) = result.unwrap_or_else(|| {
            let display = shown_name(&plain, &tag, keep_name, |d| taken.contains(d));
            (display, name.clone(), false)
        });
        taken.insert(display.clone());
        listing.entries.push(ListedEntry {
            plain: display.clone(),
            backing: backing.clone(),
            ino: st.st_ino,
            file_type: FileType::from_raw_mode(st.st_mode),
        });
        out.push(Resolved {
            found: name,
            plain: display,
            backing,
            renamed,
            ino: st.st_ino,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_listing_shows_or_renames() {
        use crate::keys::MasterKey;
        use rustix::fs::{Mode as FsMode, OFlags};
        use std::os::fd::AsFd;
        let names = NameCipher::new(&MasterKey::from_bytes([9; 32]).derive(), 175);
        let iv = names.root_iv();
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let e = names.encrypt_name(&iv, b"chat.db").unwrap();
        std::fs::write(d.join(&e), "A").unwrap();
        std::fs::write(d.join(format!("{e} (1)")), "B").unwrap();
        std::fs::write(d.join(format!("{e}-HOST")), "C").unwrap();
        let long = "l".repeat(200);
        let lb = names.backing_name(&iv, long.as_bytes()).unwrap();
        let (record, full) = lb.long_record().unwrap();
        std::fs::write(d.join(lb.entry()), "D").unwrap();
        std::fs::write(d.join(&record), full).unwrap();
        let h = lb.entry().strip_suffix(".vln").unwrap();
        std::fs::write(
            d.join(format!("{h}.sync-conflict-20261126-101500-ABCDEF7.vln")),
            "E",
        )
        .unwrap();
        std::fs::write(d.join(".stfolder"), "").unwrap();
        let fd = rustix::fs::open(
            d,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            FsMode::empty(),
        )
        .unwrap();
        let expect: HashSet<Vec<u8>> = [
            b"chat.db".to_vec(),
            b"chat (conflict 1).db".to_vec(),
            b"chat (conflict HOST).db".to_vec(),
            long.clone().into_bytes(),
            format!("{long} (conflict 2026-11-26 101500 ABCDEF7)").into_bytes(),
        ]
        .into();
        let dir_names = || -> HashSet<String> {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        };
        let before = dir_names();

        let mut listing = store::list_dir(fd.as_fd(), &iv, &names).unwrap();
        assert_eq!(listing.bad.len(), 1, "the OneDrive copy looks regular");
        let shown = resolve_listing(fd.as_fd(), &iv, &names, &mut listing, Mode::Show);
        assert_eq!(shown.len(), 3);
        assert!(shown.iter().all(|r| !r.renamed && r.backing == r.found));
        let plains: HashSet<Vec<u8>> = listing.entries.iter().map(|e| e.plain.clone()).collect();
        assert_eq!(plains, expect);
        assert!(listing.bad.is_empty());
        assert_eq!(listing.foreign, vec![".stfolder".to_string()]);
        assert_eq!(dir_names(), before, "Show changes nothing");

        let mut listing = store::list_dir(fd.as_fd(), &iv, &names).unwrap();
        let renamed = resolve_listing(fd.as_fd(), &iv, &names, &mut listing, Mode::Rename);
        assert!(renamed.iter().all(|r| r.renamed && r.backing != r.found));
        let mut listing = store::list_dir(fd.as_fd(), &iv, &names).unwrap();
        assert!(listing.bad.is_empty());
        assert_eq!(listing.foreign, vec![".stfolder".to_string()]);
        let plains: HashSet<Vec<u8>> = listing.entries.iter().map(|e| e.plain.clone()).collect();
        assert_eq!(plains, expect);
        assert!(resolve_listing(fd.as_fd(), &iv, &names, &mut listing, Mode::Rename).is_empty());
        let read = |plain: &[u8]| {
            let b = names.backing_name(&iv, plain).unwrap();
            std::fs::read_to_string(d.join(b.entry())).unwrap()
        };
        assert_eq!(read(b"chat (conflict 1).db"), "B");
        assert_eq!(read(b"chat (conflict HOST).db"), "C");
        assert_eq!(
            read(format!("{long} (conflict 2026-11-26 101500 ABCDEF7)").as_bytes()),
            "E"
        );
        assert_eq!(read(b"chat.db"), "A");
    }
}
