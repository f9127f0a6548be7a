//! Conflict copies that sync clients make of veilfs entries
//! (docs/FORMAT.md §8).
//!
//! When two devices change the same file before they sync, the sync client
//! keeps both versions: it renames one of them by appending a marker to the
//! backing name (before the extension, if the name has one). For veilfs the
//! backing name is an encrypted name `E` (which has no `.`) or a long-name
//! entry `H.vln`, so the copies look like:
//!
//! | client | regular name | long-name entry |
//! | --- | --- | --- |
//! | Dropbox | `E (conflicted copy 2026-11-26)`, `E (Alice's conflicted copy 2026-11-26)` | `H (conflicted copy 2026-11-26).vln` |
//! | Google Drive | `E (1)` | `H (1).vln` |
//! | OneDrive | `E-HOSTNAME` | `H-HOSTNAME.vln` |
//! | Syncthing | `E.sync-conflict-20261126-101500-ABCDEF7` | `H.sync-conflict-20261126-101500-ABCDEF7.vln` |
//! | Nextcloud, ownCloud | `E (conflicted copy 2026-11-26 101500)` | `H (conflicted copy 2026-11-26 101500).vln` |
//! | ownCloud (old) | `E_conflict-20261126-101500` | `H_conflict-20261126-101500.vln` |
//!
//! The first half of this module is pure: [`parse`] recognizes such a name
//! and returns the original entry name and a short tag, and
//! [`display_name`] builds the plaintext name the copy is shown under.
//! [`resolve_listing`] applies both to one listed backing directory, either
//! renaming each copy to a proper encrypted name (a writable mount, as
//! Cryptomator does) or only showing it under its display name (a
//! read-only mount, offline listing).

use std::collections::HashSet;
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, FileType, RenameFlags};
use rustix::io::Errno;

use crate::names::{
    BackingName, DIR_IV_FILE, DIR_IV_LEN, DirIv, EntryKind, LONG_NAME_HASH_LEN,
    LONG_NAME_RECORD_SUFFIX, LONG_NAME_SUFFIX, MAX_NAME_LEN, NameCipher, classify_entry,
};
use crate::store::{self, ListedEntry, Listing, cstr};

/// Longest tag kept; a longer one (nested conflicts of conflicts) is cut.
pub const MAX_TAG_LEN: usize = 96;
/// Every display name contains this, so a lookup of any other name never
/// needs to search conflict copies.
pub const DISPLAY_MARKER: &[u8] = b"(conflict";

/// veilfs metadata files; a conflict copy of one is left alone.
const METADATA_FILES: [&str; 4] = [
    "veilfs.diriv",
    "veilfs.conf",
    "veilfs.conf.bak",
    "veilfs.conf.tmp",
];

/// One way to read a name as a conflict copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The backing entry name the copy was made of: an encoded name `E` or
    /// a long-name entry `H.vln`.
    pub original: String,
    /// Short description of the conflict, e.g. `conflict 2026-11-26 101500
    /// ABCDEF7`; the same on every device.
    pub tag: String,
}

/// What a backing name is, seen as a possible conflict copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not a conflict copy of anything veilfs writes.
    NotConflict,
    /// A conflict copy of a file, directory or other entry. For a regular
    /// name a OneDrive or old ownCloud marker (which consist of base64url
    /// characters) makes the split ambiguous: every reading is listed,
    /// shortest original first, and the one whose original decrypts wins.
    Entry(Vec<Candidate>),
    /// A conflict copy of a long-name record `H.vln.name`. Records are a
    /// function of their entry name, so such a copy holds the same bytes
    /// as the record; it is left alone.
    LongRecord { original: String },
    /// A conflict copy of `veilfs.diriv`, `veilfs.conf` or its backups:
    /// left alone.
    Metadata { original: String },
}

fn is_b64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_b64url(s: &str) -> bool {
    s.bytes().all(is_b64url_byte)
}

/// Lengths of every encoded regular name up to 255 characters: base64url
/// (unpadded) of 16·k bytes of padded name plus a 16-byte tag, k ≥ 1.
fn regular_name_lengths() -> impl Iterator<Item = usize> {
    (32usize..)
        .step_by(16)
        .map(|bytes| (bytes * 4).div_ceil(3))
        .take_while(|&len| len <= MAX_NAME_LEN)
}

fn all_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

/// The number `s` holds, if it is `len` ASCII digits within `lo..=hi`.
fn number_in(s: &str, len: usize, lo: u32, hi: u32) -> bool {
    all_digits(s, len) && s.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n))
}

/// `YYYYMMDD` and `HHMMSS` (a real calendar date and clock time, roughly)
/// → `YYYY-MM-DD HHMMSS`.
fn compact_date_time(date: &str, time: &str) -> Option<String> {
    if !all_digits(date, 8) || !valid_time(time) {
        return None;
    }
    let dashed = format!("{}-{}-{}", &date[..4], &date[4..6], &date[6..]);
    valid_date(&dashed).then(|| format!("{dashed} {time}"))
}

/// `YYYY-MM-DD` with a month 01-12 and a day 01-31.
fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && all_digits(&s[..4], 4)
        && number_in(&s[5..7], 2, 1, 12)
        && number_in(&s[8..], 2, 1, 31)
}

/// `HHMMSS` of a clock time.
fn valid_time(s: &str) -> bool {
    all_digits(s, 6)
        && number_in(&s[..2], 2, 0, 23)
        && number_in(&s[2..4], 2, 0, 59)
        && number_in(&s[4..], 2, 0, 60)
}

/// Longest owner name accepted in Dropbox's `(OWNER's conflicted copy ...)`.
const MAX_OWNER_LEN: usize = 64;

/// Dropbox's owner name: letters and digits of any script, spaces, `.`,
/// `-`, `_`; never a control character, a parenthesis or other punctuation
/// that could smuggle text into a plaintext name.
fn valid_owner(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_OWNER_LEN
        && s == s.trim()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_'))
}

/// The inside of a ` (...)` marker, in one of the clients' fixed formats
/// (docs/FORMAT.md §8), and its description.
fn parse_paren_marker(inner: &str) -> Option<String> {
    // Google Drive: a counter.
    if !inner.is_empty() && inner.len() <= 6 && inner.bytes().all(|b| b.is_ascii_digit()) {
        return Some(inner.to_string());
    }
    // Dropbox: "Case Conflict", "Selective Sync Conflict".
    match inner {
        "Case Conflict" => return Some("case".into()),
        "Selective Sync Conflict" => return Some("selective sync".into()),
        _ => {}
    }
    // Dropbox: "[OWNER's ]conflicted copy YYYY-MM-DD"; Nextcloud and
    // ownCloud: "conflicted copy YYYY-MM-DD HHMMSS".
    let (owner, when) = match inner.split_once("conflicted copy ") {
        Some(("", when)) => (None, when),
        Some((prefix, when)) => {
            let owner = prefix
                .strip_suffix("'s ")
                .or_else(|| prefix.strip_suffix("\u{2019}s "))?;
            valid_owner(owner).then_some(())?;
            (Some(owner), when)
        }
        None => return None,
    };
    let when_ok = match when.split_once(' ') {
        None => valid_date(when),
        Some((date, time)) => owner.is_none() && valid_date(date) && valid_time(time),
    };
    if !when_ok {
        return None;
    }
    Some(match owner {
        Some(owner) => format!("{owner} {when}"),
        None => when.to_string(),
    })
}

/// Reads one marker at the start of `s`: its description and the rest.
/// Only the clients' fixed formats are accepted (docs/FORMAT.md §8): no
/// free text, so no control character or stray punctuation ever reaches a
/// display name.
fn parse_marker(s: &str) -> Option<(String, &str)> {
    // Syncthing: .sync-conflict-YYYYMMDD-HHMMSS-DEVICE (short device ID).
    if let Some(rest) = s.strip_prefix(".sync-conflict-") {
        let date = rest.get(..8)?;
        let rest = rest.get(8..)?.strip_prefix('-')?;
        let time = rest.get(..6)?;
        let rest = rest.get(6..)?.strip_prefix('-')?;
        let id_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if id_len == 0 || id_len > 16 {
            return None;
        }
        let when = compact_date_time(date, time)?;
        return Some((format!("{when} {}", &rest[..id_len]), &rest[id_len..]));
    }
    // ownCloud before 2.5: _conflict-YYYYMMDD-HHMMSS.
    if let Some(rest) = s.strip_prefix("_conflict-") {
        let date = rest.get(..8)?;
        let rest = rest.get(8..)?.strip_prefix('-')?;
        let time = rest.get(..6)?;
        return Some((compact_date_time(date, time)?, rest.get(6..)?));
    }
    // OneDrive: -HOSTNAME (a computer name: letters, digits, '-' and '_').
    if let Some(rest) = s.strip_prefix('-') {
        let len = rest.bytes().take_while(|&b| is_b64url_byte(b)).count();
        if len == 0 || len > 63 {
            return None;
        }
        return Some((rest[..len].to_string(), &rest[len..]));
    }
    // " (...)": Google Drive's counter, Dropbox's and Nextcloud's
    // "conflicted copy", Dropbox's "Case Conflict". No nesting.
    if let Some(rest) = s.strip_prefix(" (") {
        let end = rest.find(')')?;
        let inner = &rest[..end];
        if inner.contains('(') {
            return None;
        }
        return Some((parse_paren_marker(inner)?, &rest[end + 1..]));
    }
    None
}

/// Reads a non-empty sequence of markers that makes up all of `s`.
fn parse_markers(s: &str) -> Option<Vec<String>> {
    let mut rest = s;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (desc, r) = parse_marker(rest)?;
        out.push(desc);
        rest = r;
    }
    (!out.is_empty()).then_some(out)
}

fn tag_of(descriptions: &[String]) -> String {
    let mut tag = String::from("conflict");
    let parts: Vec<&str> = descriptions
        .iter()
        .map(|d| d.trim())
        .filter(|d| !d.is_empty())
        .collect();
    if !parts.is_empty() {
        tag.push(' ');
        tag.push_str(&parts.join(", "));
    }
    if tag.len() > MAX_TAG_LEN {
        let mut cut = MAX_TAG_LEN;
        while !tag.is_char_boundary(cut) {
            cut -= 1;
        }
        tag.truncate(cut);
    }
    tag
}

/// `H` + markers + `suffix`, with `H` a long-name hash.
fn strip_long(name: &str, suffix: &str) -> Option<(String, Vec<String>)> {
    let hash = name.get(..LONG_NAME_HASH_LEN)?;
    if !is_b64url(hash) {
        return None;
    }
    let middle = name.get(LONG_NAME_HASH_LEN..)?.strip_suffix(suffix)?;
    Some((hash.to_string(), parse_markers(middle)?))
}

/// Recognizes a sync client's conflict copy of a veilfs backing entry.
/// Needs no key: see [`Parsed::Entry`] for how the caller picks among
/// candidates.
pub fn parse(name: &str) -> Parsed {
    for meta in METADATA_FILES {
        // "veilfs.diriv (1)" and "veilfs (1).diriv" alike.
        let (stem, ext) = meta.rsplit_once('.').expect("has an extension");
        let inserted = name
            .strip_prefix(stem)
            .and_then(|r| r.strip_suffix(&format!(".{ext}")));
        let appended = name.strip_prefix(meta);
        if inserted.and_then(parse_markers).is_some() || appended.and_then(parse_markers).is_some()
        {
            return Parsed::Metadata {
                original: meta.to_string(),
            };
        }
    }
    // Long-name records: H.vln<markers>.name, H<markers>.vln.name,
    // H.vln.name<markers>.
    if let Some(hash) = name.get(..LONG_NAME_HASH_LEN)
        && is_b64url(hash)
    {
        let rest = &name[LONG_NAME_HASH_LEN..];
        let forms = [
            rest.strip_prefix(LONG_NAME_SUFFIX)
                .and_then(|r| r.strip_suffix(".name")),
            rest.strip_suffix(LONG_NAME_RECORD_SUFFIX),
            rest.strip_prefix(LONG_NAME_RECORD_SUFFIX),
        ];
        if forms
            .into_iter()
            .flatten()
            .any(|m| parse_markers(m).is_some())
        {
            return Parsed::LongRecord {
                original: format!("{hash}{LONG_NAME_RECORD_SUFFIX}"),
            };
        }
    }
    // Long-name entries: H<markers>.vln.
    if let Some((hash, descs)) = strip_long(name, LONG_NAME_SUFFIX) {
        return Parsed::Entry(vec![Candidate {
            original: format!("{hash}{LONG_NAME_SUFFIX}"),
            tag: tag_of(&descs),
        }]);
    }
    // Regular names: E<markers>, E of a length an encoded name can have.
    let mut candidates = Vec::new();
    for len in regular_name_lengths() {
        if len >= name.len() {
            break;
        }
        let Some(base) = name.get(..len) else {
            break;
        };
        if !is_b64url(base) {
            break;
        }
        if let Some(descs) = parse_markers(&name[len..]) {
            candidates.push(Candidate {
                original: base.to_string(),
                tag: tag_of(&descs),
            });
        }
    }
    if candidates.is_empty() {
        Parsed::NotConflict
    } else {
        Parsed::Entry(candidates)
    }
}

/// Whether a backing name is a sync client's conflict copy of
/// `veilfs.diriv` (`veilfs<markers>.diriv` or `veilfs.diriv<markers>`),
/// whose IV a reader may accept beside the directory's own (docs/FORMAT.md
/// §6).
pub fn is_dir_iv_copy(name: &str) -> bool {
    if !name.starts_with("veilfs") || name == DIR_IV_FILE {
        return false;
    }
    if let Some(hex) = name
        .strip_prefix(MERGED_IV_PREFIX)
        .and_then(|r| r.strip_suffix(MERGED_IV_SUFFIX))
    {
        return hex.len() == 2 * DIR_IV_LEN && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    matches!(parse(name), Parsed::Metadata { original } if original == DIR_IV_FILE)
}

const MERGED_IV_PREFIX: &str = "veilfs.merged-";
const MERGED_IV_SUFFIX: &str = ".diriv";

/// Name under which the IV `iv` of a directory merged into another is
/// kept there (docs/FORMAT.md §6): `veilfs.merged-<32 hex digits>.diriv`.
pub fn merged_iv_name(iv: &DirIv) -> String {
    format!("{MERGED_IV_PREFIX}{}{MERGED_IV_SUFFIX}", hex::encode(iv.0))
}

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

/// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
fn cut_utf8(s: &[u8], max: usize) -> &[u8] {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while cut > 0 && s[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    &s[..cut]
}

/// The plaintext name a conflict copy of `original` is shown under:
/// `chat.db` with tag `conflict 1` → `chat (conflict 1).db`. The label is
/// inserted before the last extension (a leading dot does not start one)
/// or appended when there is none. `counter` ≥ 2 is added as ` #n` to set
/// it apart from an existing name. The stem is shortened on a UTF-8
/// boundary so the result stays within 255 bytes.
pub fn display_name(original: &[u8], tag: &str, counter: u32) -> Vec<u8> {
    let label = if counter >= 2 {
        format!(" ({tag} #{counter})")
    } else {
        format!(" ({tag})")
    };
    let label = label.as_bytes();
    let dot = original.iter().rposition(|&b| b == b'.').filter(|&i| i > 0);
    let (mut stem, mut ext) = match dot {
        Some(i) => original.split_at(i),
        None => (original, &b""[..]),
    };
    if stem.len() + label.len() + ext.len() > MAX_NAME_LEN && label.len() + ext.len() >= 200 {
        // An absurdly long extension: treat the whole name as the stem.
        stem = original;
        ext = b"";
    }
    let budget = MAX_NAME_LEN.saturating_sub(label.len() + ext.len());
    let stem = cut_utf8(stem, budget);
    let mut out = Vec::with_capacity(stem.len() + label.len() + ext.len());
    out.extend_from_slice(stem);
    out.extend_from_slice(label);
    out.extend_from_slice(ext);
    out
}

/// [`display_name`] with the lowest counter whose result is not `taken`.
pub fn unique_display_name(original: &[u8], tag: &str, taken: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut counter = 1;
    loop {
        let name = display_name(original, tag, counter);
        if !taken(&name) || counter == u32::MAX {
            return name;
        }
        counter += 1;
    }
}

/// Whether a plaintext name can be a conflict display name.
pub fn may_be_display_name(plain: &[u8]) -> bool {
    plain
        .windows(DISPLAY_MARKER.len())
        .any(|w| w == DISPLAY_MARKER)
}

// ---- applying the rules to a backing directory ----

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

    const E: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; // 43
    const H: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"; // 43

    fn one(name: &str) -> Candidate {
        match parse(name) {
            Parsed::Entry(mut c) => {
                assert_eq!(c.len(), 1, "{name}: {c:?}");
                c.remove(0)
            }
            other => panic!("{name}: {other:?}"),
        }
    }

    fn cand(original: &str, tag: &str) -> Candidate {
        Candidate {
            original: original.into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn regular_name_lengths_match_encryption() {
        let lens: Vec<usize> = regular_name_lengths().collect();
        assert_eq!(&lens[..4], &[43, 64, 86, 107]);
        assert!(lens.iter().all(|&l| l <= 255));
        assert!(lens.contains(&171) && lens.contains(&235));
    }

    #[test]
    fn every_client_on_regular_names() {
        let cases = [
            (
                format!("{E} (conflicted copy 2026-11-26)"),
                "conflict 2026-11-26",
            ),
            (
                format!("{E} (Alice's conflicted copy 2026-11-26)"),
                "conflict Alice 2026-11-26",
            ),
            (format!("{E} (1)"), "conflict 1"),
            (
                format!("{E}.sync-conflict-20261126-101500-ABCDEF7"),
                "conflict 2026-11-26 101500 ABCDEF7",
            ),
            (
                format!("{E} (conflicted copy 2026-11-26 101500)"),
                "conflict 2026-11-26 101500",
            ),
            (
                format!("{E}_conflict-20261126-101500"),
                "conflict 2026-11-26 101500",
            ),
            (format!("{E} (Case Conflict)"), "conflict case"),
        ];
        for (name, tag) in cases {
            assert_eq!(one(&name), cand(E, tag), "{name}");
        }
    }

    #[test]
    fn onedrive_on_regular_names_is_ambiguous_until_decrypted() {
        // Hostname with its own dashes: every split at a valid length.
        let name = format!("{E}-LAPTOP-7Q2");
        match parse(&name) {
            Parsed::Entry(c) => assert_eq!(c, vec![cand(E, "conflict LAPTOP-7Q2")]),
            other => panic!("{other:?}"),
        }
        // A name of 64 characters whose 43-character prefix is followed by
        // '-' reads two ways; the caller keeps the one that decrypts.
        let long_e = format!("{}-{}", &"C".repeat(43), "D".repeat(20));
        assert_eq!(long_e.len(), 64);
        let name = format!("{long_e}-HOST");
        match parse(&name) {
            Parsed::Entry(c) => assert_eq!(
                c,
                vec![
                    cand(&long_e[..43], &format!("conflict {}-HOST", "D".repeat(20))),
                    cand(&long_e, "conflict HOST"),
                ]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_client_on_long_entries() {
        let cases = [
            (
                format!("{H} (conflicted copy 2026-11-26).vln"),
                "conflict 2026-11-26",
            ),
            (format!("{H} (1).vln"), "conflict 1"),
            (format!("{H}-HOSTNAME.vln"), "conflict HOSTNAME"),
            (
                format!("{H}.sync-conflict-20261126-101500-ABCDEF7.vln"),
                "conflict 2026-11-26 101500 ABCDEF7",
            ),
            (
                format!("{H} (conflicted copy 2026-11-26 101500).vln"),
                "conflict 2026-11-26 101500",
            ),
        ];
        for (name, tag) in cases {
            assert_eq!(one(&name), cand(&format!("{H}.vln"), tag), "{name}");
        }
    }

    #[test]
    fn nested_markers() {
        assert_eq!(
            one(&format!("{E} (1).sync-conflict-20261126-101500-ABCDEF7")),
            cand(E, "conflict 1, 2026-11-26 101500 ABCDEF7")
        );
        assert_eq!(
            one(&format!("{E} (conflicted copy 2026-11-26) (1)")),
            cand(E, "conflict 2026-11-26, 1")
        );
    }

    #[test]
    fn markers_have_fixed_formats_without_free_text() {
        // Free text, control characters (a terminal escape), nesting,
        // impossible dates and times: none is a marker.
        for marker in [
            " (\x1b]0;pwned\x07 conflict)",
            " (\x1b]0;pwned\x07's conflicted copy 2026-11-26)",
            " (conflicted copy 2026-11-26\x07)",
            " (anything conflict)",
            " (my conflict)",
            " (conflicted copy yesterday)",
            " (conflicted copy 2026-13-01)",
            " (conflicted copy 2026-11-26 256100)",
            " (Alice's conflicted copy 2026-11-26 101500)",
            " (A(b)'s conflicted copy 2026-11-26)",
            " (conflicted copy 2026-11-26 (1))",
            ".sync-conflict-20261326-101500-ABCDEF7",
            ".sync-conflict-20261126-251500-ABCDEF7",
            "_conflict-20261126-106000",
            "-\x1b]0;x\x07",
        ] {
            assert_eq!(
                parse(&format!("{E}{marker}")),
                Parsed::NotConflict,
                "{marker:?}"
            );
        }
        assert_eq!(
            one(&format!("{E} (José Núñez's conflicted copy 2026-11-26)")),
            cand(E, "conflict José Núñez 2026-11-26")
        );
        assert_eq!(
            one(&format!("{E} (Selective Sync Conflict)")),
            cand(E, "conflict selective sync")
        );
        // The attack marker is well formed: what stops it is the
        // type check (tests/sync_conflicts.rs).
        assert_eq!(
            one(&format!("{E}.sync-conflict-20260101-000000-ATTACK")),
            cand(E, "conflict 2026-01-01 000000 ATTACK")
        );
    }

    #[test]
    fn records_and_metadata_are_left_alone() {
        let rec = format!("{H}.vln.name");
        for name in [
            format!("{H}.vln.sync-conflict-20261126-101500-ABCDEF7.name"),
            format!("{H}.vln (1).name"),
            format!("{H}.vln.name (1)"),
            format!("{H} (1).vln.name"),
        ] {
            assert_eq!(
                parse(&name),
                Parsed::LongRecord {
                    original: rec.clone()
                },
                "{name}"
            );
        }
        for (name, original) in [
            ("veilfs (1).diriv", "veilfs.diriv"),
            ("veilfs.diriv (1)", "veilfs.diriv"),
            ("veilfs (conflicted copy 2026-11-26).conf", "veilfs.conf"),
            ("veilfs-HOST.conf", "veilfs.conf"),
            ("veilfs.conf (1).bak", "veilfs.conf.bak"),
        ] {
            assert_eq!(
                parse(name),
                Parsed::Metadata {
                    original: original.into()
                },
                "{name}"
            );
        }
    }

    #[test]
    fn copies_of_the_dir_iv_file() {
        for name in [
            "veilfs.sync-conflict-20261126-101500-ABCDEF7.diriv",
            "veilfs (1).diriv",
            "veilfs.diriv (1)",
            "veilfs (Alice's conflicted copy 2026-11-26).diriv",
            "veilfs-LAPTOP.diriv",
        ] {
            assert!(is_dir_iv_copy(name), "{name}");
        }
        for name in [
            "veilfs.diriv",
            "veilfs (1).conf",
            "veilfs (\x1b conflict).diriv",
            "xveilfs (1).diriv",
            "veilfs.diriv.tmp",
        ] {
            assert!(!is_dir_iv_copy(name), "{name}");
        }
    }

    #[test]
    fn not_conflicts() {
        for name in [
            ".stfolder",
            ".stignore",
            ".stversions",
            ".syncthing.x.tmp",
            &format!(".syncthing.{E}.tmp"),
            &format!("~syncthing~{E}.tmp"),
            "desktop.ini",
            ".DS_Store",
            "Thumbs.db",
            ".dropbox",
            ".dropbox.cache",
            "~$report.docx",
            ".~lock.chat.odt#",
            E,
            &format!("{H}.vln"),
            &format!("{E} (draft)"),
            &format!("{E} ()"),
            &format!("{E}.txt"),
            &format!("{E}.sync-conflict-2026-1126-101500-ABC"),
            &format!("{} (1)", &E[..40]),
            "x (1)",
        ] {
            assert_eq!(parse(name), Parsed::NotConflict, "{name}");
        }
    }

    #[test]
    fn display_names() {
        let d = |o: &str, t: &str, n| String::from_utf8(display_name(o.as_bytes(), t, n)).unwrap();
        assert_eq!(
            d("chat.db", "conflict 2026-11-26 101500 ABCDEF7", 1),
            "chat (conflict 2026-11-26 101500 ABCDEF7).db"
        );
        assert_eq!(d("Makefile", "conflict 1", 1), "Makefile (conflict 1)");
        assert_eq!(d(".bashrc", "conflict 1", 1), ".bashrc (conflict 1)");
        assert_eq!(d("a.tar.gz", "conflict 1", 1), "a.tar (conflict 1).gz");
        assert_eq!(d("chat.db", "conflict 1", 3), "chat (conflict 1 #3).db");
    }

    #[test]
    fn display_names_stay_within_255_bytes_on_char_boundaries() {
        let tag = "conflict 2026-11-26 101500 ABCDEF7";
        for original in [
            format!("{}.db", "é".repeat(126)),
            "日".repeat(85),
            format!("{}.sqlite-wal", "x".repeat(244)),
            format!("a.{}", "é".repeat(126)),
        ] {
            assert!(original.len() <= 255);
            for counter in [1, 2, 1000] {
                let d = display_name(original.as_bytes(), tag, counter);
                assert!(d.len() <= 255, "{} bytes", d.len());
                let s = String::from_utf8(d).expect("valid UTF-8");
                assert!(s.contains(&format!("({tag}")), "{s}");
            }
        }
        let d = display_name(format!("{}.db", "é".repeat(126)).as_bytes(), tag, 1);
        assert!(
            String::from_utf8(d)
                .unwrap()
                .ends_with(&format!(" ({tag}).db"))
        );
    }

    #[test]
    fn unique_names_count_up() {
        let taken: HashSet<Vec<u8>> = [
            b"chat (conflict 1).db".to_vec(),
            b"chat (conflict 1 #2).db".to_vec(),
        ]
        .into();
        assert_eq!(
            unique_display_name(b"chat.db", "conflict 1", |n| taken.contains(n)),
            b"chat (conflict 1 #3).db"
        );
        assert!(may_be_display_name(b"chat (conflict 1 #3).db"));
        assert!(!may_be_display_name(b"chat.db"));
    }

    #[test]
    fn long_tags_are_cut() {
        let name = format!("{E}{}", " (1)".repeat(40));
        let c = one(&name);
        assert!(c.tag.len() <= MAX_TAG_LEN);
    }

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
