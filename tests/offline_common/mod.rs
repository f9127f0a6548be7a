//! What the offline tests share: a vault built with the library (`TV`),
//! populated with known files, and helpers to damage it and read reports.
//! Include after `mod common;`.
#![allow(dead_code, unused_macros)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use veilfs::check::{self, FsckOptions, ProblemKind, Report};
use veilfs::content::{CHUNK_OVERHEAD, ContentCipher, FileHeader, HEADER_LEN};
use veilfs::cryptfile::CryptFile;
use veilfs::names::{BackingName, DIR_IV_FILE, DirIv, NameCipher};
use veilfs::offline::{Offline, OfflineError};
use veilfs::vault::{CreateOptions, create_vault};

use crate::common::pattern;

pub const CS: usize = 4096;
pub const STORED: usize = CS + CHUNK_OVERHEAD;

/// A vault on disk plus its ciphers.
pub struct TV {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub dir: PathBuf,
    pub keyfile: PathBuf,
    pub content: ContentCipher,
    pub names: NameCipher,
}

impl TV {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let dir = root.join("cipher");
        let v = create_vault(&dir, &CreateOptions::default()).unwrap();
        let keyfile = root.join("key.txt");
        fs::write(&keyfile, v.master.display_digits().as_bytes()).unwrap();
        TV {
            content: v.content_cipher(),
            names: v.name_cipher(),
            _tmp: tmp,
            root,
            dir,
            keyfile,
        }
    }

    pub fn iv_of(&self, backing_dir: &Path) -> DirIv {
        if backing_dir == self.dir {
            return self.names.root_iv();
        }
        DirIv::from_slice(&fs::read(backing_dir.join(DIR_IV_FILE)).unwrap()).unwrap()
    }

    /// Backing directory of the parent, its IV, and the backing name.
    pub fn locate(&self, plain: &str) -> (PathBuf, DirIv, BackingName, Vec<u8>) {
        let parts: Vec<&str> = plain.split('/').filter(|p| !p.is_empty()).collect();
        let mut dir = self.dir.clone();
        for p in &parts[..parts.len() - 1] {
            let iv = self.iv_of(&dir);
            let name = self.names.backing_name(&iv, p.as_bytes()).unwrap();
            dir.push(name.entry());
        }
        let iv = self.iv_of(&dir);
        let last = parts.last().unwrap().as_bytes().to_vec();
        let name = self.names.backing_name(&iv, &last).unwrap();
        (dir, iv, name, last)
    }

    pub fn backing(&self, plain: &str) -> PathBuf {
        let (dir, _, name, _) = self.locate(plain);
        dir.join(name.entry())
    }

    pub fn write_record(dir: &Path, name: &BackingName) {
        if let Some((record, full)) = name.long_record() {
            fs::write(dir.join(record), full).unwrap();
        }
    }

    pub fn mkdir(&self, plain: &str) {
        let (dir, iv, name, last) = self.locate(plain);
        let path = dir.join(name.entry());
        fs::create_dir(&path).unwrap();
        let fd = fs::File::open(&path).unwrap();
        veilfs::store::write_dir_iv(&fd, &self.names.child_dir_iv(&iv, &last)).unwrap();
        Self::write_record(&dir, &name);
    }

    /// Creates (or truncates) the backing file of `plain`, empty.
    pub fn create_backing(&self, plain: &str) -> fs::File {
        let (dir, _, name, _) = self.locate(plain);
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(name.entry()))
            .unwrap()
    }

    pub fn write(&self, plain: &str, data: &[u8]) {
        let (dir, _, name, _) = self.locate(plain);
        let file = self.create_backing(plain);
        let mut f = CryptFile::new(&file, &self.content, None);
        // Several writes, as an application appending would make them.
        for (i, piece) in data.chunks(10_000).enumerate() {
            f.write_at((i * 10_000) as u64, piece).unwrap();
        }
        Self::write_record(&dir, &name);
    }

    pub fn symlink(&self, plain: &str, target: &str) {
        let (dir, iv, name, _) = self.locate(plain);
        let stored = self.names.encrypt_symlink_target(&iv, target.as_bytes());
        std::os::unix::fs::symlink(stored, dir.join(name.entry())).unwrap();
        Self::write_record(&dir, &name);
    }

    pub fn offline(&self) -> Offline<'_> {
        Offline::new(&self.dir, &self.content, &self.names).unwrap()
    }

    pub fn cat(&self, plain: &str) -> Result<Vec<u8>, OfflineError> {
        let mut out = Vec::new();
        self.offline().cat(Path::new(plain), &mut out, false)?;
        Ok(out)
    }

    pub fn fsck_with(&self, repair: bool) -> Report {
        let mut opts = FsckOptions::new(&self.dir, &self.content, &self.names);
        opts.repair = repair;
        check::fsck(opts).unwrap()
    }

    pub fn fsck(&self) -> Report {
        self.fsck_with(false)
    }

    /// Runs the binary against this vault, unlocking with the key file.
    pub fn cli(&self, cmd: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_veilfs"))
            .arg(cmd)
            .arg("--key-file")
            .arg(&self.keyfile)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    }
}

pub fn modify(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut perms = fs::metadata(path).unwrap().permissions();
    let mode = perms.mode();
    perms.set_mode(0o600);
    fs::set_permissions(path, perms.clone()).unwrap();
    let mut bytes = fs::read(path).unwrap();
    f(&mut bytes);
    fs::write(path, bytes).unwrap();
    perms.set_mode(mode);
    fs::set_permissions(path, perms).unwrap();
}

/// Compares byte strings without dumping megabytes on failure.
macro_rules! same_bytes {
    ($got:expr, $want:expr) => {
        same_bytes!($got, $want, "bytes differ")
    };
    ($got:expr, $want:expr, $($what:tt)+) => {{
        let (got, want): (&[u8], &[u8]) = (&$got[..], &$want[..]);
        if got != want {
            let first = got.iter().zip(want).position(|(a, b)| a != b);
            panic!(
                "{}: got {} bytes, expected {}; first difference at {first:?}",
                format!($($what)+),
                got.len(),
                want.len()
            );
        }
    }};
}

pub fn chunk_at(i: usize) -> usize {
    HEADER_LEN + i * STORED
}

pub fn kinds(r: &Report) -> Vec<(ProblemKind, String)> {
    r.problems
        .iter()
        .map(|p| (p.kind, p.path.clone()))
        .collect()
}

/// The one problem of a report, which must have this kind.
pub fn only_problem(r: &Report, kind: ProblemKind) -> &check::Problem {
    assert_eq!(
        r.problems.len(),
        1,
        "expected one problem: {:#?}",
        r.problems
    );
    assert_eq!(r.problems[0].kind, kind, "{:#?}", r.problems);
    &r.problems[0]
}

/// A small vault with a bit of everything.
pub fn populated() -> (TV, Vec<(&'static str, Vec<u8>)>) {
    let tv = TV::new();
    tv.mkdir("/chats");
    tv.mkdir("/chats/media");
    tv.mkdir("/empty");
    let files = vec![
        ("/empty.txt", Vec::new()),
        ("/one", b"x".to_vec()),
        ("/chats/exact", pattern(CS, 1)),
        ("/chats/plus1", pattern(CS + 1, 2)),
        ("/chats/msgstore.db", pattern(3 * CS + 100, 3)),
        ("/chats/media/big.jpg", pattern(1_500_000, 4)),
    ];
    for (p, d) in &files {
        tv.write(p, d);
    }
    tv.symlink("/latest", "chats/msgstore.db");
    (tv, files)
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Simulates a crash during an append: the new last chunk was written
/// but the old last chunk was never re-sealed as a middle chunk.
pub fn interrupted_append(tv: &TV, path: &str, old: &[u8], new_at: usize, new: &[u8]) {
    tv.write(path, old);
    let backing = tv.backing(path);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&backing)
        .unwrap();
    let header_bytes = fs::read(&backing).unwrap()[..HEADER_LEN].to_vec();
    let header = FileHeader::parse(&header_bytes, tv.content.layout()).unwrap();
    assert_eq!(new_at % CS, 0);
    assert!(new.len() <= CS);
    let index = (new_at / CS) as u64;
    let mut sealed = vec![0u8; new.len() + CHUNK_OVERHEAD];
    tv.content
        .seal_chunk(&header, index, true, new, &mut sealed);
    use std::os::unix::fs::FileExt;
    file.write_all_at(&sealed, chunk_at(index as usize) as u64)
        .unwrap();
}
