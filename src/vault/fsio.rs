//! Small filesystem helpers of the vault layer: atomic, durable writes of
//! the config and bounded reads that never follow symlinks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::VaultError;

/// Mode of `veilfs.conf` and its backup.
pub const CONFIG_MODE: u32 = 0o600;
/// Mode of a CIPHERDIR that `init` creates, before the umask: what
/// mkdir(1) gives (0755 under the usual umask 022). The CIPHERDIR is the
/// mount's root, so the mount starts as a fresh ext4 root does, and with
/// `--allow-other` other users can enter it. Nothing in CIPHERDIR needs
/// hiding from them: it holds what the cloud sees, and `veilfs.conf` is
/// 0600 on its own.
pub const NEW_DIR_MODE: u32 = 0o777;

/// Whether an existing `dst` may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    Yes,
    /// Fail with `AlreadyExists` if `dst` exists (checked atomically where
    /// the filesystem supports it).
    No,
}

fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    let d = File::open(dir).map_err(|e| VaultError::io(dir, e))?;
    d.sync_all().map_err(|e| VaultError::io(dir, e))
}

/// Writes `data` to `dir/name` atomically and durably: a temp file beside
/// it (mode 0600), fsync, rename, fsync of the directory. A crash leaves
/// either the old file or the new one, never a mix.
pub fn write_atomic(
    dir: &Path,
    name: &str,
    data: &[u8],
    replace: Replace,
) -> Result<(), VaultError> {
    let dst = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let write_tmp = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(CONFIG_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        // A stale temp file from a crash keeps its old mode: reset it.
        f.set_permissions(fs::Permissions::from_mode(CONFIG_MODE))?;
        f.write_all(data)?;
        f.sync_all()
    };
    if let Err(e) = write_tmp() {
        let _ = fs::remove_file(&tmp);
        return Err(VaultError::io(&tmp, e));
    }
    let renamed = match replace {
        Replace::Yes => fs::rename(&tmp, &dst).map_err(|e| VaultError::io(&dst, e)),
        Replace::No => rename_noreplace(&tmp, &dst),
    };
    if let Err(e) = renamed {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

fn rename_noreplace(tmp: &Path, dst: &Path) -> Result<(), VaultError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, tmp, CWD, dst, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::EXIST) => return Err(VaultError::AlreadyExists(dst.to_path_buf())),
        // Filesystems without renameat2 flags: fall back to a hard link,
        // which also fails if the target exists.
        Err(_) => {}
    }
    match fs::hard_link(tmp, dst) {
        Ok(()) => {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(VaultError::AlreadyExists(dst.to_path_buf()));
        }
        Err(_) => {}
    }
    // Neither is supported (some FUSE and network filesystems): check,
    // then rename. Racy only against a concurrent `init` of the same dir.
    if fs::symlink_metadata(dst).is_ok() {
        return Err(VaultError::AlreadyExists(dst.to_path_buf()));
    }
    fs::rename(tmp, dst).map_err(|e| VaultError::io(dst, e))
}

/// Opens a file for reading without following a symlink in its last
/// component.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Reads at most `limit` bytes of `path`; `Ok(None)` if it is longer.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let f = open_nofollow(path)?;
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= limit).then_some(buf))
}

/// Reads up to `buf.len()` bytes from the start of `file`; returns how
/// many were read.
pub fn read_prefix(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Names a sync client or the OS may put into a fresh folder before the
/// vault exists. `init` accepts a directory holding only these.
pub fn is_sync_client_file(name: &str) -> bool {
    const EXACT: &[&str] = &[
        ".stfolder",
        ".stignore",
        ".stversions",
        ".sync",
        ".dropbox",
        ".dropbox.attr",
        ".dropbox.cache",
        "desktop.ini",
        "Desktop.ini",
        ".DS_Store",
        "Thumbs.db",
        "Icon\r",
        ".nextcloudsync.log",
        ".owncloudsync.log",
        ".directory",
        "lost+found",
    ];
    EXACT.contains(&name)
        || ((name.starts_with(".sync_") || name.starts_with("._sync_"))
            && (name.ends_with(".db") || name.contains(".db-")))
}

/// Makes sure `dir` can receive a new vault: creates it (as mkdir(1)
/// does, [`NEW_DIR_MODE`] less the umask) if missing, refuses an existing config or any entry that is not a sync
/// client's.
pub fn prepare_init_dir(dir: &Path, config_file: &str) -> Result<(), VaultError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(VaultError::io(
                dir,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(NEW_DIR_MODE)
                .create(dir)
                .map_err(|e| VaultError::io(dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            return Ok(());
        }
        Err(e) => return Err(VaultError::io(dir, e)),
    }
    let config = dir.join(config_file);
    if fs::symlink_metadata(&config).is_ok() {
        return Err(VaultError::AlreadyExists(config));
    }
    let entries = fs::read_dir(dir).map_err(|e| VaultError::io(dir, e))?;
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| VaultError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_sync_client_file(&name) {
            names.push(name);
        }
    }
    names.sort();
    if let Some(first) = names.into_iter().next() {
        return Err(VaultError::NotEmpty {
            dir: dir.to_path_buf(),
            entry: first,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_modes_and_no_clobber() {
        let tmp = tempfile::tempdir().unwrap();
        write_atomic(tmp.path(), "c", b"one", Replace::No).unwrap();
        let meta = fs::metadata(tmp.path().join("c")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, CONFIG_MODE);
        assert!(matches!(
            write_atomic(tmp.path(), "c", b"two", Replace::No),
            Err(VaultError::AlreadyExists(_))
        ));
        assert_eq!(fs::read(tmp.path().join("c")).unwrap(), b"one");
        write_atomic(tmp.path(), "c", b"three", Replace::Yes).unwrap();
        assert_eq!(fs::read(tmp.path().join("c")).unwrap(), b"three");
        assert!(!tmp.path().join("c.tmp").exists());
    }

    #[test]
    fn reads_never_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("real"), b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
        assert!(read_bounded(&tmp.path().join("link"), 10).is_err());
        assert_eq!(
            read_bounded(&tmp.path().join("real"), 10).unwrap().unwrap(),
            b"x"
        );
        assert_eq!(read_bounded(&tmp.path().join("real"), 0).unwrap(), None);
    }

    #[test]
    fn init_accepts_only_sync_client_files() {
        for ok in [
            ".stfolder",
            "desktop.ini",
            ".DS_Store",
            ".sync_1a2b3c.db",
            "lost+found",
        ] {
            assert!(is_sync_client_file(ok), "{ok}");
        }
        for bad in ["notes.txt", "veilfs.conf", ".git", "abc"] {
            assert!(!is_sync_client_file(bad), "{bad}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("new/nested");
        prepare_init_dir(&dir, "veilfs.conf").unwrap();
        // As mkdir(1) under the same umask.
        let by_mkdir = tmp.path().join("by-mkdir");
        fs::create_dir(&by_mkdir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), mode(&by_mkdir));
        assert_eq!(mode(dir.parent().unwrap()), mode(&by_mkdir));
        fs::create_dir(dir.join(".stfolder")).unwrap();
        prepare_init_dir(&dir, "veilfs.conf").unwrap();
        fs::write(dir.join("b.txt"), b"").unwrap();
        fs::write(dir.join("a.txt"), b"").unwrap();
        assert!(matches!(
            prepare_init_dir(&dir, "veilfs.conf"),
            Err(VaultError::NotEmpty { entry, .. }) if entry == "a.txt"
        ));
    }
}
