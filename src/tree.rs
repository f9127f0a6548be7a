//! Walking a vault's plaintext tree without FUSE: the engine under
//! `veilfs export` (and, later, commands that rewrite every file such as
//! re-keying). It decrypts names directory by directory from the backing
//! root with `*at()` calls, never follows a symlink, and hands each entry
//! to a [`Visitor`]: a directory before its contents ([`Visitor::visit`])
//! and again after them ([`Visitor::leave`]), entries in name order.
//! What cannot be decrypted (a damaged name, a directory whose IV is gone)
//! goes to [`Visitor::problem`], which decides whether the walk goes on.
//!
//! [`Totals`] is a visitor that counts what a walk will meet, for a
//! progress display.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::Stat;

use crate::names::DirIv;
use crate::offline::{Kind, Offline, OfflineError, Result, split_plain_path};
use crate::store;

/// One entry met by the walk.
pub struct Entry<'a> {
    /// The plaintext path inside the vault (`/` for the root).
    pub plain_path: &'a str,
    /// The path relative to where the walk started (empty for the start).
    pub rel: &'a Path,
    pub kind: Kind,
    /// lstat of the backing entry (modes, owner, times; for a file, the
    /// backing size: [`Entry::plain_size`] is the plaintext size).
    pub stat: &'a Stat,
    /// The backing directory holding the entry (for the root: the root).
    pub parent: &'a OwnedFd,
    /// The entry's name in `parent` (`.` for the root).
    pub name: &'a CStr,
}

impl Entry<'_> {
    /// The plaintext size of a file (the backing size of anything else).
    pub fn plain_size(&self, off: &Offline) -> u64 {
        if self.kind == Kind::File {
            off.content().layout().plain_size(self.stat.st_size as u64)
        } else {
            self.stat.st_size as u64
        }
    }
}

/// Whether the walk goes on after a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

pub trait Visitor {
    /// Every entry, a directory before its contents. Returning `false`
    /// for a directory skips its contents (and its `leave`).
    fn visit(&mut self, off: &Offline, e: &Entry<'_>) -> Result<bool>;
    /// A directory, after its contents.
    fn leave(&mut self, _off: &Offline, _e: &Entry<'_>) -> Result<()> {
        Ok(())
    }
    /// Something below `plain_path` could not be decrypted or read.
    fn problem(&mut self, error: &OfflineError) -> Control;
}

/// Walks the tree at the plaintext `start` (a directory, or a single
/// entry). A problem the visitor stops at is returned as the error.
pub fn walk(off: &Offline, start: &Path, v: &mut impl Visitor) -> Result<()> {
    let r = off.resolve(start)?;
    let kind = r.kind();
    let rel = if kind == Kind::Dir {
        PathBuf::new()
    } else {
        // A single entry lands under its own name.
        PathBuf::from(
            String::from_utf8_lossy(split_plain_path(start)?.last().map_or(&b""[..], |v| &v[..]))
                .into_owned(),
        )
    };
    let name = r.entry_cstr();
    let entry = Entry {
        plain_path: &r.plain_path,
        rel: &rel,
        kind,
        stat: &r.stat,
        parent: &r.parent,
        name: &name,
    };
    Walk.entry(off, &entry, r.entry.is_none(), v)
}

struct Walk;

impl Walk {
    /// Reports a problem; `Err` (the problem itself) ends the walk.
    fn problem(&mut self, v: &mut impl Visitor, e: OfflineError) -> Result<()> {
        match v.problem(&e) {
            Control::Continue => Ok(()),
            Control::Stop => Err(e),
        }
    }

    fn entry(
        &mut self,
        off: &Offline,
        e: &Entry<'_>,
        is_root: bool,
        v: &mut impl Visitor,
    ) -> Result<()> {
        if !v.visit(off, e)? || e.kind != Kind::Dir {
            return Ok(());
        }
        let dir = if is_root {
            store::open_dir_path(e.parent, c".")
        } else {
            store::open_dir_path(e.parent, e.name)
        };
        let dir = match dir {
            Ok(d) => d,
            Err(err) => {
                self.problem(v, OfflineError::io(e.plain_path, err))?;
                return Ok(());
            }
        };
        let iv: DirIv = match off.dir_iv_of(&dir, e.plain_path, is_root) {
            Ok(iv) => iv,
            Err(err) => {
                self.problem(v, err)?;
                return Ok(());
            }
        };
        let listing = match store::list_dir(dir.as_fd(), &iv, off.names()) {
            Ok(l) => l,
            Err(err) => {
                self.problem(v, OfflineError::io(e.plain_path, err))?;
                return Ok(());
            }
        };
        let base = if e.plain_path == "/" {
            ""
        } else {
            e.plain_path
        };
        for bad in listing.bad {
            self.problem(
                v,
                OfflineError::InvalidPath {
                    path: format!("{base}/{} [backing]", bad.backing),
                    reason: format!("name does not decrypt: {}", bad.error),
                },
            )?;
        }
        let mut entries = listing.entries;
        entries.sort_by(|a, b| a.plain.cmp(&b.plain));
        for child in entries {
            let shown = String::from_utf8_lossy(&child.plain).into_owned();
            let plain_path = format!("{base}/{shown}");
            let name = store::cstr(&child.backing);
            let stat = match store::lstat_at(&dir, &name) {
                Ok(st) => st,
                // Gone since the listing (a sync client at work).
                Err(err) if store::is_not_found(err) => continue,
                Err(err) => {
                    self.problem(v, OfflineError::io(&plain_path, err))?;
                    continue;
                }
            };
            let rel = e.rel.join(std::ffi::OsStr::from_bytes(&child.plain));
            let entry = Entry {
                plain_path: &plain_path,
                rel: &rel,
                kind: Kind::from_stat(&stat),
                stat: &stat,
                parent: &dir,
                name: &name,
            };
            self.entry(off, &entry, false, v)?;
        }
        v.leave(off, e)
    }
}

/// Counts what a walk meets: for a progress display's totals.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub files: u64,
    pub dirs: u64,
    pub other: u64,
    /// Plaintext bytes of the files.
    pub bytes: u64,
}

impl Visitor for Totals {
    fn visit(&mut self, off: &Offline, e: &Entry<'_>) -> Result<bool> {
        match e.kind {
            Kind::File => {
                self.files += 1;
                self.bytes += e.plain_size(off);
            }
            Kind::Dir => self.dirs += 1,
            _ => self.other += 1,
        }
        Ok(true)
    }

    fn problem(&mut self, _error: &OfflineError) -> Control {
        Control::Continue
    }
}
