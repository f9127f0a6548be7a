//! Extended attributes of backing entries, by path (an `/proc/self/fd/N/name`
//! path, as `*xattrat()` does not exist before Linux 6.13): listing the
//! names and reading the entry ID that the vault's attribute values are
//! bound to (docs/FORMAT.md §7).

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd};

use rustix::io::Errno;
use rustix::path::Arg;

use crate::names::{XATTR_ID_LEN, XATTR_ID_NAME};

/// `/proc/self/fd/N/name`: `name` in the directory `dir` as a path that
/// resolves through the descriptor, so nothing outside it is looked up by
/// name. `name` `.` is the directory itself (`/proc/self/fd/N` alone is a
/// magic symlink, which the `l` calls refuse).
pub fn entry_path(dir: &impl AsRawFd, name: &CStr) -> CString {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.to_bytes());
    CString::new(p).expect("no NUL in a name")
}

/// The raw, NUL-separated attribute names of the entry at `path` (not
/// followed if a symlink). A filesystem without extended attributes
/// lists none.
pub fn list_names<P: Arg + Copy>(path: P) -> Result<Vec<u8>, Errno> {
    list_with(|buf| rustix::fs::llistxattr(path, buf), 4096)
}

/// [`list_names`] of the file open as `fd`.
pub fn list_names_fd(fd: impl AsFd) -> Result<Vec<u8>, Errno> {
    list_with(|buf| rustix::fs::flistxattr(&fd, buf), 4096)
}

fn list_with(
    list_into: impl Fn(&mut [u8]) -> Result<usize, Errno>,
    first_len: usize,
) -> Result<Vec<u8>, Errno> {
    let mut list = vec![0u8; first_len];
    loop {
        match list_into(&mut list[..]) {
            Ok(n) => {
                list.truncate(n);
                return Ok(list);
            }
            Err(Errno::RANGE) => list.resize(list.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
    }
}

/// The names in a [`list_names`] buffer.
pub fn names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).filter(|s| !s.is_empty())
}

/// The entry's random ID (`user.veilfs.id`), if it has a well-formed one.
pub fn entry_id<P: Arg + Copy>(path: P) -> Option<[u8; XATTR_ID_LEN]> {
    id_with(|buf| rustix::fs::lgetxattr(path, XATTR_ID_NAME, buf))
}

/// [`entry_id`] of the file open as `fd`.
pub fn entry_id_fd(fd: impl AsFd) -> Option<[u8; XATTR_ID_LEN]> {
    id_with(|buf| rustix::fs::fgetxattr(&fd, XATTR_ID_NAME, buf))
}

fn id_with(get: impl FnOnce(&mut [u8]) -> Result<usize, Errno>) -> Option<[u8; XATTR_ID_LEN]> {
    let mut id = [0u8; XATTR_ID_LEN + 1];
    match get(&mut id[..]) {
        Ok(XATTR_ID_LEN) => id[..XATTR_ID_LEN].try_into().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_set_names_and_reads_only_a_well_formed_id() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let path = file.to_str().unwrap();
        let set = |name: &str, value: &[u8]| {
            rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        };
        if let Err(e) = set("user.probe", b"x") {
            eprintln!("skipped: the temp directory's filesystem has no user xattrs ({e})");
            return;
        }
        assert_eq!(entry_id(path), None);
        set(XATTR_ID_NAME, &[7u8; XATTR_ID_LEN + 1]).unwrap();
        assert_eq!(
            entry_id(path),
            None,
            "an ID of the wrong length is not an ID"
        );
        set(XATTR_ID_NAME, &[7u8; XATTR_ID_LEN]).unwrap();
        assert_eq!(entry_id(path), Some([7u8; XATTR_ID_LEN]));
        let long = format!("user.{}", "n".repeat(200));
        for i in 0..8 {
            set(&format!("{long}{i}"), b"v").unwrap();
        }
        let list = list_with(|buf| rustix::fs::llistxattr(path, buf), 16).unwrap();
        assert_eq!(list, list_names(path).unwrap());
        assert!(
            list.len() > 16 * 4,
            "the list outgrew the first buffer twice"
        );
        let found: Vec<&[u8]> = names(&list).collect();
        assert_eq!(found.len(), 10);
        assert!(found.contains(&b"user.probe".as_slice()));
        assert!(found.contains(&XATTR_ID_NAME.as_bytes()));
    }
}
