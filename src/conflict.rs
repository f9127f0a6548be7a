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
//! This module is pure (no I/O): [`parse`] recognizes such a name and
//! returns the original entry name and a short tag, and [`display_name`]
//! builds the plaintext name the copy is shown under.
//! [`crate::store::resolve`] applies both to a backing directory.

use crate::names::{
    DIR_IV_FILE, DIR_IV_LEN, DirIv, LONG_NAME_HASH_LEN, LONG_NAME_RECORD_SUFFIX, LONG_NAME_SUFFIX,
    MAX_NAME_LEN,
};

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
        let taken: std::collections::HashSet<Vec<u8>> = [
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
}
