//! The tree walk: directory by directory, depth first, one descriptor per
//! level, checking each directory's IV and entries.

use super::*;

impl Checker<'_> {
    pub(super) fn walk(&mut self, root: Rc<OwnedFd>) {
        let root_loc = Loc {
            backing: String::new(),
            plain: Some("/".into()),
        };
        let mut stack = Vec::new();
        self.check_dir(root, Some(self.names.root_iv()), &root_loc, 0, &mut stack);
        while let Some(p) = stack.pop() {
            if p.depth > MAX_DEPTH {
                self.problem(
                    ProblemKind::TooDeep,
                    &p.loc,
                    format!("directory nested deeper than {MAX_DEPTH} levels; not checked"),
                );
                continue;
            }
            let fd = match store::open_dir_path(&*p.parent, &store::cstr(&p.entry)) {
                Ok(fd) => fd,
                Err(e) => {
                    self.problem(
                        ProblemKind::DirUnreadable,
                        &p.loc,
                        format!("cannot open directory: {e}"),
                    );
                    continue;
                }
            };
            let iv = self.dir_iv(&fd, &p);
            self.check_dir(Rc::new(fd), iv, &p.loc, p.depth, &mut stack);
        }
    }

    /// Reads (or, with repair, recreates) the IV of a non-root directory.
    pub(super) fn dir_iv(&mut self, fd: &OwnedFd, p: &Pending) -> Option<DirIv> {
        match store::read_dir_iv(fd) {
            Ok(iv) => Some(iv),
            Err(Errno::NOENT) => {
                let has_entries = match dir_has_veilfs_entries(fd) {
                    Ok(b) => b,
                    Err(e) => {
                        self.problem(
                            ProblemKind::DirUnreadable,
                            &p.loc,
                            format!("cannot list directory: {e}"),
                        );
                        return None;
                    }
                };
                let derivable = match (&p.parent_iv, &p.plain_name) {
                    (Some(piv), Some(name)) => Some(self.names.new_dir_iv(piv, name)),
                    _ => None,
                };
                if has_entries || derivable.is_none() {
                    self.problem(
                        ProblemKind::DirIvMissing,
                        &p.loc,
                        format!(
                            "directory IV missing: names in {} cannot be decrypted",
                            p.loc.describe_dir()
                        ),
                    );
                    return None;
                }
                let iv = derivable.expect("checked above");
                let idx = self.problem(
                    ProblemKind::EmptyDirIvMissing,
                    &p.loc,
                    "directory IV missing in an empty directory, as a crash during mkdir leaves it; nothing is lost (the mount writes a new IV when the directory is first used, --repair writes it now)",
                );
                if self.repair {
                    match store::write_dir_iv(fd, &iv) {
                        Ok(()) => self.repaired(idx, "recreated veilfs.diriv"),
                        Err(e) => {
                            self.report.problems[idx].message +=
                                &format!("; could not recreate it: {e}");
                            return None;
                        }
                    }
                }
                Some(iv)
            }
            Err(Errno::LOOP) => {
                self.problem(
                    ProblemKind::DirIvInvalid,
                    &p.loc,
                    "veilfs.diriv is a symlink (not followed): names in this directory cannot be decrypted",
                );
                None
            }
            Err(e) => {
                self.problem(
                    ProblemKind::DirIvInvalid,
                    &p.loc,
                    format!(
                        "directory IV damaged (unreadable or not 16 bytes: {e}): names in {} cannot be decrypted",
                        p.loc.describe_dir()
                    ),
                );
                None
            }
        }
    }

    /// Checks one directory's entries, queueing its subdirectories.
    pub(super) fn check_dir(
        &mut self,
        fd: Rc<OwnedFd>,
        iv: Option<DirIv>,
        loc: &Loc,
        depth: usize,
        stack: &mut Vec<Pending>,
    ) {
        self.report.stats.dirs += 1;
        let names = match read_names(&fd) {
            Ok(n) => n,
            Err(e) => {
                self.problem(
                    ProblemKind::DirUnreadable,
                    loc,
                    format!("cannot list directory: {e}"),
                );
                return;
            }
        };
        let mut entries: Vec<String> = Vec::new();
        let mut long_entries: HashSet<String> = HashSet::new();
        let mut records: BTreeSet<String> = BTreeSet::new();
        let mut target_records: BTreeSet<String> = BTreeSet::new();
        let mut referenced_targets: HashSet<String> = HashSet::new();
        let mut iv_copies: Vec<String> = Vec::new();
        for name in names {
            let name = match String::from_utf8(name) {
                Ok(name) => name,
                Err(e) => {
                    let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    self.report.foreign.push(loc.child(&lossy, None).backing);
                    continue;
                }
            };
            match classify_entry(&name) {
                EntryKind::Regular(_) => entries.push(name),
                EntryKind::Long(_) => {
                    long_entries.insert(name.clone());
                    entries.push(name);
                }
                EntryKind::LongRecord => {
                    records.insert(name);
                }
                EntryKind::LongTargetRecord => {
                    target_records.insert(name);
                }
                EntryKind::Metadata => {
                    if conflict::is_dir_iv_copy(&name) {
                        iv_copies.push(name);
                    }
                }
                EntryKind::Foreign => {
                    if conflict::is_dir_iv_copy(&name) {
                        iv_copies.push(name.clone());
                    }
                    if let Some(iv) = &iv
                        && let Err(r) = resolve::examine(fd.as_fd(), iv, self.names, &name)
                    {
                        self.problem(
                            ProblemKind::ConflictCopyRejected,
                            &loc.child(&name, None),
                            format!(
                                "looks like a sync-client conflict copy in {} but is not shown: \
                                 {} (possible tampering; veilfs leaves it in place)",
                                loc.describe_dir(),
                                r.reason
                            ),
                        );
                    }
                    self.report.foreign.push(loc.child(&name, None).backing);
                }
            }
        }

        // Records whose entry is gone.
        for record in &records {
            let entry = record
                .strip_suffix(".name")
                .expect("classified as a record");
            if long_entries.contains(entry) {
                continue;
            }
            let rloc = loc.child(record, None);
            let idx = self.problem(
                ProblemKind::LongNameRecordOrphan,
                &rloc,
                format!(
                    "long-name record without its entry in {}",
                    loc.describe_dir()
                ),
            );
            if self.repair {
                let c = store::cstr(record);
                match store::lstat_at(&*fd, &c) {
                    Ok(st) if Kind::from_stat(&st) == Kind::File => {
                        match rustix::fs::unlinkat(&*fd, &c, AtFlags::empty()) {
                            Ok(()) => self.repaired(idx, "removed the orphan long-name record"),
                            Err(e) => {
                                self.report.problems[idx].message +=
                                    &format!("; could not remove it: {e}");
                            }
                        }
                    }
                    Ok(_) => {
                        self.report.problems[idx].message +=
                            "; not removed: it is not a regular file";
                    }
                    Err(e) => {
                        self.report.problems[idx].message += &format!("; could not remove it: {e}");
                    }
                }
            }
        }

        // IVs of copies of veilfs.diriv made when two devices created this
        // directory (docs/FORMAT.md §6).
        iv_copies.sort();
        let secondary = match &iv {
            Some(iv) if !iv_copies.is_empty() => store::secondary_dir_ivs(&*fd, iv, &iv_copies),
            _ => Vec::new(),
        };
        entries.sort();
        let mut subdirs = Vec::new();
        for entry in entries {
            let plain_name =
                iv.and_then(|iv| self.decrypt_entry_name(&fd, &iv, &secondary, &entry, loc));
            let eloc = loc.child(&entry, plain_name.as_deref());
            let c = store::cstr(&entry);
            let st = match store::lstat_at(&*fd, &c) {
                Ok(st) => st,
                Err(e) if store::is_not_found(e) => continue,
                Err(e) => {
                    self.problem(ProblemKind::Unreadable, &eloc, format!("cannot stat: {e}"));
                    continue;
                }
            };
            match Kind::from_stat(&st) {
                Kind::Dir => subdirs.push(Pending {
                    parent: fd.clone(),
                    parent_iv: iv,
                    entry,
                    plain_name,
                    loc: eloc,
                    depth: depth + 1,
                }),
                Kind::File => {
                    self.check_file(&fd, &c, &st, &eloc);
                    self.progress.files_done += 1;
                    self.tick();
                }
                Kind::Symlink => {
                    self.report.stats.symlinks += 1;
                    if let Some(record) = self.check_symlink(&fd, iv.as_ref(), &c, &eloc) {
                        referenced_targets.insert(record);
                    }
                }
                _ => self.report.stats.special += 1,
            }
        }
        // Long symlink-target records whose symlink is gone (a rename to
        // another directory leaves one behind, as for long names).
        for record in target_records.difference(&referenced_targets.iter().cloned().collect()) {
            let rloc = loc.child(record, None);
            let idx = self.problem(
                ProblemKind::LongNameRecordOrphan,
                &rloc,
                format!(
                    "long symlink-target record without its symlink in {}",
                    loc.describe_dir()
                ),
            );
            if self.repair {
                match rustix::fs::unlinkat(&*fd, store::cstr(record).as_c_str(), AtFlags::empty()) {
                    Ok(()) => self.repaired(idx, "removed the orphan long symlink-target record"),
                    Err(e) => {
                        self.report.problems[idx].message += &format!("; could not remove it: {e}");
                    }
                }
            }
        }
        // Visited in listing order.
        stack.extend(subdirs.into_iter().rev());
    }
}
