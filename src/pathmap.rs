//! Translating paths between the plaintext view and CIPHERDIR, offline
//! (`veilfs path encrypt` / `veilfs path decrypt`): what a user needs to
//! write a sync client's exclusion rule, or to find which plaintext file a
//! cloud's "previous versions" of a backing file belongs to.
//!
//! Directories that exist are read (their stored IV). A name that does not
//! exist yet in an existing directory translates to the name it will get;
//! below a directory that does not exist there is nothing to translate, as
//! a directory's IV is drawn when it is created (docs/FORMAT.md §6).
//! Nothing is written and no symlink is followed.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use crate::names::{BackingName, DirIv, EntryKind, NameCipher, classify_entry};
use crate::offline::{Kind, OfflineError, Result, join_plain, split_plain_path};
use crate::store;

/// Where a walk down CIPHERDIR stands: the directory's IV, and its
/// descriptor while the backing directory exists.
struct Here {
    iv: DirIv,
    fd: Option<OwnedFd>,
}

impl Here {
    /// Steps into the child directory `backing` (plaintext `plain`).
    fn enter(&self, backing: &str, plain_path: &str) -> Result<Here> {
        let missing = || OfflineError::InvalidPath {
            path: plain_path.to_string(),
            reason: "this directory does not exist yet: the names inside a directory are \
                     encrypted with the IV it gets when it is created (create it first)"
                .into(),
        };
        let Some(fd) = &self.fd else {
            return Err(missing());
        };
        let c = store::cstr(backing);
        match store::lstat_at(fd, &c) {
            Ok(st) if Kind::from_stat(&st) != Kind::Dir => Err(OfflineError::NotADirectory {
                path: plain_path.to_string(),
                kind: Kind::from_stat(&st),
            }),
            Ok(_) => {
                let dir = store::open_dir_path(fd, &c).map_err(|e| OfflineError::Io {
                    path: plain_path.to_string(),
                    error: e.into(),
                })?;
                let iv = store::read_dir_iv(&dir).map_err(|error| OfflineError::DirIv {
                    path: plain_path.to_string(),
                    error,
                })?;
                Ok(Here { iv, fd: Some(dir) })
            }
            Err(e) if store::is_not_found(e) => Err(missing()),
            Err(e) => Err(OfflineError::Io {
                path: plain_path.to_string(),
                error: e.into(),
            }),
        }
    }
}

fn open_root(cipherdir: &Path, names: &NameCipher) -> Result<Here> {
    let fd = rustix::fs::open(
        cipherdir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| OfflineError::Io {
        path: cipherdir.display().to_string(),
        error: e.into(),
    })?;
    Ok(Here {
        iv: names.root_iv(),
        fd: Some(fd),
    })
}

/// The backing path, relative to CIPHERDIR, of the plaintext `path`. The
/// path need not exist. A long name's entry has a `<entry>.name` record
/// beside it.
pub fn encrypt_path(cipherdir: &Path, names: &NameCipher, path: &Path) -> Result<PathBuf> {
    let parts = split_plain_path(path)?;
    let mut here = open_root(cipherdir, names)?;
    let mut out = PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        let plain_here = join_plain(&parts[..=i]);
        let name: BackingName =
            names
                .backing_name(&here.iv, part)
                .map_err(|e| OfflineError::InvalidPath {
                    path: plain_here.clone(),
                    reason: e.to_string(),
                })?;
        out.push(name.entry());
        if i + 1 < parts.len() {
            here = here.enter(name.entry(), &plain_here)?;
        }
    }
    Ok(out)
}

/// What a backing path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decrypted {
    /// An entry: its plaintext path.
    Entry(String),
    /// The long-name record of the entry with this plaintext path.
    LongNameRecord(String),
    /// The IV file of the directory with this plaintext path.
    DirIv(String),
    /// The vault's config (or its backup).
    Config,
}

/// The plaintext path of a backing path, given relative to CIPHERDIR or
/// as an absolute path inside it. Entries below a directory that no longer
/// exists decrypt too, as long as none of them is a long name (whose
/// record went with the directory).
pub fn decrypt_path(cipherdir: &Path, names: &NameCipher, backing: &Path) -> Result<Decrypted> {
    let rel = if backing.is_absolute() {
        let canon_root = cipherdir.canonicalize().map_err(|e| OfflineError::Io {
            path: cipherdir.display().to_string(),
            error: e,
        })?;
        backing
            .strip_prefix(cipherdir)
            .or_else(|_| backing.strip_prefix(&canon_root))
            .map_err(|_| OfflineError::InvalidPath {
                path: backing.display().to_string(),
                reason: format!("not inside the vault directory {}", cipherdir.display()),
            })?
            .to_path_buf()
    } else {
        backing.to_path_buf()
    };
    let comps: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Ok(n)),
            Component::CurDir => None,
            _ => Some(Err(())),
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|()| OfflineError::InvalidPath {
            path: backing.display().to_string(),
            reason: "`..` is not allowed in a backing path".into(),
        })?;
    if comps.is_empty() {
        return Ok(Decrypted::Entry("/".into()));
    }
    let mut here = open_root(cipherdir, names)?;
    let mut plain: Vec<Vec<u8>> = Vec::new();
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let shown = || rel.display().to_string();
        let Some(name) = comp.to_str() else {
            return Err(OfflineError::InvalidPath {
                path: shown(),
                reason: format!("{comp:?} is not a veilfs name"),
            });
        };
        let decrypted = match classify_entry(name) {
            EntryKind::Regular(enc) => names.decrypt_name(&here.iv, enc).map_err(|e| e.to_string()),
            EntryKind::Long(entry) => match &here.fd {
                Some(fd) => store::read_long_record(fd, entry)
                    .map_err(|e| format!("its long-name record {entry}.name: {e}"))
                    .and_then(|full| {
                        names
                            .decrypt_name(&here.iv, &full)
                            .map_err(|e| e.to_string())
                    }),
                None => Err("a long name whose directory (and record) is gone".into()),
            },
            EntryKind::LongRecord if last => {
                let entry = name.strip_suffix(".name").expect("records end in .name");
                let Some(fd) = &here.fd else {
                    return Err(OfflineError::NotFound { path: shown() });
                };
                let full =
                    store::read_long_record(fd, entry).map_err(|error| OfflineError::Io {
                        path: shown(),
                        error: error.into(),
                    })?;
                let p =
                    names
                        .decrypt_name(&here.iv, &full)
                        .map_err(|e| OfflineError::InvalidPath {
                            path: shown(),
                            reason: format!("does not decrypt with this vault's key: {e}"),
                        })?;
                plain.push(p);
                return Ok(Decrypted::LongNameRecord(join_plain(&plain)));
            }
            EntryKind::Metadata if last && store::is_dir_iv_file(name) => {
                return Ok(Decrypted::DirIv(join_plain(&plain)));
            }
            EntryKind::Metadata if last && i == 0 && name.starts_with("veilfs.conf") => {
                return Ok(Decrypted::Config);
            }
            _ => Err(
                "not a veilfs name (a sync client's file, a conflict copy or a foreign file?)"
                    .into(),
            ),
        };
        let p = decrypted.map_err(|reason| OfflineError::InvalidPath {
            path: shown(),
            reason: format!("{name}: {reason}"),
        })?;
        plain.push(p);
        if !last {
            let plain_here = join_plain(&plain);
            here = here.enter(name, &plain_here)?;
        }
    }
    Ok(Decrypted::Entry(join_plain(&plain)))
}
