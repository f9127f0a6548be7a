//! Entry names (regular and long) and symlink targets.

use super::*;

impl Checker<'_> {
    /// Decrypts one entry's name, reporting what fails.
    pub(super) fn decrypt_entry_name(
        &mut self,
        fd: &OwnedFd,
        iv: &DirIv,
        secondary: &[DirIv],
        entry: &str,
        dir: &Loc,
    ) -> Option<Vec<u8>> {
        let eloc = dir.child(entry, None);
        let encoded = match classify_entry(entry) {
            EntryKind::Long(_) => match store::read_long_record(fd, entry) {
                Ok(full) => full,
                Err(e) => {
                    let (kind, why) = match e {
                        Errno::NOENT => (
                            ProblemKind::LongNameRecordMissing,
                            "its long-name record is missing".to_string(),
                        ),
                        Errno::LOOP => (
                            ProblemKind::LongNameRecordInvalid,
                            "its long-name record is a symlink (not followed)".to_string(),
                        ),
                        Errno::IO => (
                            ProblemKind::LongNameRecordInvalid,
                            "its long-name record does not match the entry's hash".to_string(),
                        ),
                        e => (
                            ProblemKind::LongNameRecordInvalid,
                            format!("its long-name record is unreadable: {e}"),
                        ),
                    };
                    self.problem(
                        kind,
                        &eloc,
                        format!(
                            "name of an entry in {} cannot be decrypted: {why}",
                            dir.describe_dir()
                        ),
                    );
                    return None;
                }
            },
            _ => entry.to_string(),
        };
        let decrypted = self.names.decrypt_name(iv, &encoded).or_else(|e| {
            secondary
                .iter()
                .find_map(|iv2| self.names.decrypt_name(iv2, &encoded).ok())
                .ok_or(e)
        });
        match decrypted {
            Ok(plain) => Some(plain),
            Err(e) => {
                let why = match e {
                    NameError::Unauthentic => {
                        "it fails authentication (tampered, or moved here from another directory)"
                    }
                    NameError::BadEncoding => {
                        "it is not a valid encrypted name (bad base64 or length)"
                    }
                    _ => "it decrypts to an invalid name (bad padding or too long)",
                };
                self.problem(
                    name_problem(&e),
                    &eloc,
                    format!(
                        "name of an entry in {} does not decrypt: {why}",
                        dir.describe_dir()
                    ),
                );
                None
            }
        }
    }

    /// Checks one symlink's target in the directory with IV `iv` (unknown
    /// when that directory's IV is missing: not decrypted then); returns
    /// the long-target record it points to, if any (docs/FORMAT.md §7).
    pub(super) fn check_symlink(
        &mut self,
        dir: &OwnedFd,
        iv: Option<&DirIv>,
        c: &std::ffi::CStr,
        loc: &Loc,
    ) -> Option<String> {
        match rustix::fs::readlinkat(dir, c, Vec::new()) {
            Ok(link) => {
                let record = crate::names::long_target_record(link.as_bytes()).map(str::to_string);
                let stored = match &record {
                    None => link.into_bytes(),
                    Some(r) => match store::read_long_target_record(dir, r) {
                        Ok(sealed) => sealed,
                        Err(e) => {
                            self.problem(
                                ProblemKind::SymlinkTargetInvalid,
                                loc,
                                format!(
                                    "the record {r} of its long target is missing or damaged ({e}); not followed"
                                ),
                            );
                            return record;
                        }
                    },
                };
                // The directory's missing IV is reported already.
                let Some(iv) = iv else {
                    return record;
                };
                if let Err(e) = self.names.decrypt_symlink_target(iv, &stored) {
                    self.problem(
                        ProblemKind::SymlinkTargetInvalid,
                        loc,
                        format!(
                            "symlink target does not decrypt ({e}): tampered, or planted by someone without the key; not followed"
                        ),
                    );
                }
                record
            }
            Err(e) => {
                self.problem(
                    ProblemKind::Unreadable,
                    loc,
                    format!("cannot read symlink: {e}"),
                );
                None
            }
        }
    }
}
