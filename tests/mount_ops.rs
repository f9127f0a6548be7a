//! Every filesystem operation through a real FUSE mount, with its edge
//! cases. Each test mounts its own vault and unmounts it on drop.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{TestMount, pattern, run_ok};

#[test]
fn write_read_round_trip_sizes() {
    let m = TestMount::new();
    for (i, size) in [
        0usize,
        1,
        4095,
        4096,
        4097,
        8192,
        100_000,
        1 << 20,
        (3 << 20) + 7,
    ]
    .into_iter()
    .enumerate()
    {
        let p = m.path(&format!("f{i}"));
        let data = pattern(size, i as u64);
        fs::write(&p, &data).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().len(),
            size as u64,
            "st_size is the plaintext size"
        );
        assert_eq!(fs::read(&p).unwrap(), data, "size {size}");
    }
}

#[test]
fn random_offset_writes_and_holes() {
    let m = TestMount::new();
    let p = m.path("sparse");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    f.seek(SeekFrom::Start(10 << 20)).unwrap();
    f.write_all(b"tail").unwrap();
    f.seek(SeekFrom::Start(5000)).unwrap();
    f.write_all(b"middle").unwrap();
    drop(f);
    let data = fs::read(&p).unwrap();
    assert_eq!(data.len(), (10 << 20) + 4);
    assert_eq!(&data[5000..5006], b"middle");
    assert_eq!(&data[(10 << 20)..], b"tail");
    assert!(data[..5000].iter().all(|&b| b == 0));
    assert!(data[5006..(10 << 20)].iter().all(|&b| b == 0));
    // The hole stays sparse in CIPHERDIR.
    let backing = m
        .backing_files()
        .into_iter()
        .find(|p| p.is_file() && fs::metadata(p).unwrap().len() > 1 << 20)
        .unwrap();
    assert!(
        fs::metadata(&backing).unwrap().blocks() * 512 < 1 << 20,
        "backing file is sparse"
    );
}

#[test]
fn truncate_up_and_down() {
    let m = TestMount::new();
    let p = m.path("t");
    let data = pattern(3 * 4096 + 500, 1);
    fs::write(&p, &data).unwrap();
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    for &len in &[10_000u64, 8192, 8191, 1, 0, 7, 20_000, 4096 * 5 + 3] {
        f.set_len(len).unwrap();
        let got = fs::read(&p).unwrap();
        assert_eq!(got.len() as u64, len);
        let keep = (len as usize).min(got.len());
        // What was there before stays; what grew reads as zeros.
        let mut expect = fs::read(&p).unwrap();
        expect.truncate(keep);
        assert_eq!(&got[..keep], &expect[..]);
    }
    // Shrink into the middle of a chunk then read the tail back as zeros.
    fs::write(&p, &data).unwrap();
    f.set_len(6000).unwrap();
    f.set_len(9000).unwrap();
    let got = fs::read(&p).unwrap();
    assert_eq!(&got[..6000], &data[..6000]);
    assert!(got[6000..].iter().all(|&b| b == 0));
}

#[test]
fn open_flags_excl_trunc_append_wronly() {
    let m = TestMount::new();
    let p = m.path("flags");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap()
        .write_all(b"hello")
        .unwrap();
    let e = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
    OpenOptions::new()
        .append(true)
        .open(&p)
        .unwrap()
        .write_all(b" world")
        .unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"hello world");
    // Write-only handle doing a partial-chunk overwrite (needs RMW).
    let mut w = OpenOptions::new().write(true).open(&p).unwrap();
    w.seek(SeekFrom::Start(6)).unwrap();
    w.write_all(b"W").unwrap();
    drop(w);
    assert_eq!(fs::read(&p).unwrap(), b"hello World");
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"");
}

#[test]
fn chmod_chown_utimens() {
    let m = TestMount::new();
    let p = m.path("attrs");
    fs::write(&p, b"x").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o640);
    std::os::unix::fs::chown(&p, Some(1234), Some(4321)).unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 4321));
    run_ok(
        Command::new("touch")
            .args(["-m", "-d", "2001-02-03 04:05:06 UTC"])
            .arg(&p),
    );
    let md = fs::metadata(&p).unwrap();
    assert_eq!(md.mtime(), 981173106);
    let atime_before = md.atime();
    // UTIME_OMIT for atime keeps it; UTIME_NOW for mtime sets it.
    run_ok(Command::new("touch").arg("-m").arg(&p));
    let md = fs::metadata(&p).unwrap();
    assert_eq!(md.atime(), atime_before);
    assert!(md.mtime() > 981173106);
    fs::create_dir(m.path("d")).unwrap();
    fs::set_permissions(m.path("d"), fs::Permissions::from_mode(0o711)).unwrap();
    assert_eq!(fs::metadata(m.path("d")).unwrap().mode() & 0o7777, 0o711);
}

/// After `rm`, the kernel sends the removed file's new ctime, and the
/// mount answers it without touching the name. A file that takes the
/// name, or the freed inode number, must still take every attribute
/// change; a removed file that is still open takes them through its
/// descriptor, and the file that took its name is left alone.
#[test]
fn attribute_changes_after_unlink_reach_the_right_file() {
    let mut m = TestMount::new();
    let mut reused = 0;
    for i in 0..200 {
        let old = m.path(&format!("old{i}"));
        fs::write(&old, b"old").unwrap();
        let old_ino = fs::metadata(&old).unwrap().ino();
        fs::remove_file(&old).unwrap();
        // Half the time the same name, half a new one.
        let new = if i % 2 == 0 {
            old.clone()
        } else {
            m.path(&format!("new{i}"))
        };
        fs::write(&new, b"new file").unwrap();
        let md = fs::metadata(&new).unwrap();
        reused += usize::from(md.ino() == old_ino);
        fs::set_permissions(&new, fs::Permissions::from_mode(0o604)).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&new)
            .unwrap()
            .set_len(3)
            .unwrap();
        run_ok(
            Command::new("touch")
                .args(["-m", "-d", "2001-02-03 04:05:06 UTC"])
                .arg(&new),
        );
        let md = fs::metadata(&new).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o604, "{}", new.display());
        assert_eq!(md.mtime(), 981173106, "{}", new.display());
        assert_eq!(fs::read(&new).unwrap(), b"new");
    }
    eprintln!("{reused} of 200 new files got the removed file's inode number");

    // A rename over a file: the kernel sends the replaced file's times,
    // and the name now holds the renamed file, which must keep its own.
    let (a, b) = (m.path("a"), m.path("b"));
    fs::write(&b, b"replaced").unwrap();
    run_ok(
        Command::new("touch")
            .args(["-m", "-d", "2001-02-03 04:05:06 UTC"])
            .arg(&b),
    );
    assert_eq!(fs::metadata(&b).unwrap().mtime(), 981173106);
    fs::write(&a, b"renamed").unwrap();
    run_ok(
        Command::new("touch")
            .args(["-m", "-d", "2005-06-07 08:09:10 UTC"])
            .arg(&a),
    );
    fs::rename(&a, &b).unwrap();
    // What the backing file holds, not the kernel's cached view.
    m.unmount();
    m.mount();
    let md = fs::metadata(&b).unwrap();
    assert_eq!(
        (md.mtime(), md.len()),
        (1118131750, 7),
        "the renamed file's times"
    );

    // Removed while open, its name taken by another file.
    let p = m.path("open");
    let mut f = File::create(&p).unwrap();
    f.write_all(b"0123456789").unwrap();
    fs::remove_file(&p).unwrap();
    fs::write(&p, b"the other file").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    f.set_permissions(fs::Permissions::from_mode(0o640))
        .unwrap();
    f.set_len(4).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(981173106))
        .unwrap();
    let md = f.metadata().unwrap();
    assert_eq!(
        (md.mode() & 0o7777, md.len(), md.mtime()),
        (0o640, 4, 981173106)
    );
    // FUSE sends extended attributes without the descriptor: they reach
    // the open file, as on ext4, and not the file that took the name.
    rustix::fs::fsetxattr(&f, "user.note", b"kept", rustix::fs::XattrFlags::empty())
        .expect("fsetxattr on an open, removed file");
    let mut got = [0u8; 8];
    let n = rustix::fs::fgetxattr(&f, "user.note", &mut got[..]).unwrap();
    assert_eq!(&got[..n], b"kept");
    let mut names = [0u8; 256];
    let n = rustix::fs::flistxattr(&f, &mut names[..]).unwrap();
    assert_eq!(&names[..n], b"user.note\0");
    assert!(
        rustix::fs::getxattr(&p, "user.note", &mut [0u8; 8][..]).is_err(),
        "the other file got the removed file's attribute"
    );
    rustix::fs::fremovexattr(&f, "user.note").unwrap();
    assert!(rustix::fs::fgetxattr(&f, "user.note", &mut got[..]).is_err());
    let other = fs::metadata(&p).unwrap();
    assert_eq!(
        other.mode() & 0o7777,
        0o600,
        "the other file's mode changed"
    );
    assert_ne!(other.mtime(), 981173106, "the other file's mtime changed");
    assert_eq!(fs::read(&p).unwrap(), b"the other file");
}

#[test]
fn directories_and_rmdir() {
    let m = TestMount::new();
    fs::create_dir_all(m.path("a/b/c")).unwrap();
    fs::write(m.path("a/b/c/file"), b"deep").unwrap();
    assert_eq!(fs::read(m.path("a/b/c/file")).unwrap(), b"deep");
    let e = fs::remove_dir(m.path("a/b")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
    fs::remove_file(m.path("a/b/c/file")).unwrap();
    fs::remove_dir(m.path("a/b/c")).unwrap();
    fs::remove_dir(m.path("a/b")).unwrap();
    let names: Vec<_> = fs::read_dir(m.path("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "{names:?}");
    let e = fs::remove_dir(m.path("nope")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
}

/// With a low descriptor limit the directory-descriptor cache must shrink
/// to fit (it holds 4096 by default), or mkdir and open fail with EMFILE.
#[test]
fn low_descriptor_limit_never_surfaces_as_emfile() {
    let mut m = TestMount::new();
    m.unmount();
    m.nofile = Some(128);
    m.mount();
    for round in 0..2 {
        for d in 0..300 {
            let dir = m.path(&format!("d{d}"));
            if round == 0 {
                fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir d{d}: {e}"));
                fs::write(dir.join("f"), format!("file {d}"))
                    .unwrap_or_else(|e| panic!("create d{d}/f: {e}"));
            } else {
                let got = fs::read_to_string(dir.join("f"))
                    .unwrap_or_else(|e| panic!("read d{d}/f: {e}"));
                assert_eq!(got, format!("file {d}"));
                fs::remove_file(dir.join("f")).unwrap();
                fs::remove_dir(&dir).unwrap();
            }
        }
    }
    assert_eq!(fs::read_dir(&m.mnt).unwrap().count(), 0);
}

#[test]
fn readdir_lists_many_entries() {
    let m = TestMount::new();
    let n = 3000;
    for i in 0..n {
        File::create(m.path(&format!("entry-{i:05}"))).unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), n);
    assert_eq!(names[0], "entry-00000");
    assert_eq!(names[n - 1], format!("entry-{:05}", n - 1));
    // ls -l goes through readdirplus and lookup.
    let out = run_ok(Command::new("ls").arg("-la").arg(&m.mnt));
    assert_eq!(out.lines().filter(|l| l.contains("entry-")).count(), n);
}

#[test]
fn rename_overwrite_noreplace_exchange_and_open_handles() {
    let m = TestMount::new();
    fs::create_dir(m.path("d1")).unwrap();
    fs::create_dir(m.path("d2")).unwrap();
    fs::write(m.path("d1/a"), b"AAA").unwrap();
    fs::write(m.path("d2/b"), b"BBB").unwrap();
    let mut held = File::open(m.path("d1/a")).unwrap();
    fs::rename(m.path("d1/a"), m.path("d2/b")).unwrap();
    assert_eq!(fs::read(m.path("d2/b")).unwrap(), b"AAA");
    assert!(!m.path("d1/a").exists());
    let mut s = String::new();
    held.read_to_string(&mut s).unwrap();
    assert_eq!(s, "AAA", "an open handle keeps working across rename");

    fs::write(m.path("x"), b"X").unwrap();
    fs::write(m.path("y"), b"Y").unwrap();
    let r = renameat2(&m.path("x"), &m.path("y"), libc::RENAME_NOREPLACE);
    assert_eq!(r, Err(libc::EEXIST));
    renameat2(&m.path("x"), &m.path("y"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(m.path("x")).unwrap(), b"Y");
    assert_eq!(fs::read(m.path("y")).unwrap(), b"X");
    renameat2(&m.path("x"), &m.path("z"), libc::RENAME_NOREPLACE).unwrap();
    assert_eq!(fs::read(m.path("z")).unwrap(), b"Y");

    // Directory rename keeps its contents readable (IV travels with it),
    // and a directory may replace an empty one.
    fs::write(m.path("d1/inner"), b"in").unwrap();
    fs::rename(m.path("d1"), m.path("d2/moved")).unwrap();
    assert_eq!(fs::read(m.path("d2/moved/inner")).unwrap(), b"in");
    fs::create_dir(m.path("empty")).unwrap();
    fs::rename(m.path("d2/moved"), m.path("empty")).unwrap();
    assert_eq!(fs::read(m.path("empty/inner")).unwrap(), b"in");
    fs::create_dir(m.path("full")).unwrap();
    fs::write(m.path("full/f"), b"").unwrap();
    let e = fs::rename(m.path("empty"), m.path("full")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY));
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> Result<(), i32> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(from.as_os_str().as_bytes()).unwrap();
    let b = CString::new(to.as_os_str().as_bytes()).unwrap();
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

#[test]
fn hard_links_symlinks_fifos_sockets() {
    let m = TestMount::new();
    fs::write(m.path("orig"), b"shared").unwrap();
    fs::hard_link(m.path("orig"), m.path("link")).unwrap();
    assert_eq!(fs::metadata(m.path("orig")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(m.path("orig")).unwrap().ino(),
        fs::metadata(m.path("link")).unwrap().ino()
    );
    fs::write(m.path("link"), b"changed").unwrap();
    assert_eq!(fs::read(m.path("orig")).unwrap(), b"changed");
    fs::remove_file(m.path("orig")).unwrap();
    assert_eq!(fs::read(m.path("link")).unwrap(), b"changed");

    std::os::unix::fs::symlink("../some/where/target.txt", m.path("sym")).unwrap();
    assert_eq!(
        fs::read_link(m.path("sym")).unwrap().to_str().unwrap(),
        "../some/where/target.txt"
    );
    assert_eq!(
        fs::symlink_metadata(m.path("sym")).unwrap().len(),
        "../some/where/target.txt".len() as u64
    );
    std::os::unix::fs::symlink("link", m.path("sym2")).unwrap();
    assert_eq!(
        fs::read(m.path("sym2")).unwrap(),
        b"changed",
        "symlinks resolve inside the mount"
    );

    run_ok(Command::new("mkfifo").arg(m.path("fifo")));
    assert!(fs::metadata(m.path("fifo")).unwrap().file_type().is_fifo());
    let sock = std::os::unix::net::UnixListener::bind(m.path("sock")).unwrap();
    assert!(
        fs::metadata(m.path("sock"))
            .unwrap()
            .file_type()
            .is_socket()
    );
    drop(sock);
}

/// Requests veilfs does not serve itself get the kernel's fallback, with
/// right results and nothing in the log: SEEK_HOLE/SEEK_DATA (the file is
/// all data), copy_file_range (copied through read and write) and an
/// ioctl such as lsattr's FS_IOC_GETFLAGS (refused). fuser's defaults
/// logged a multi-line warning for each.
#[test]
fn requests_veilfs_leaves_to_the_kernel_work_and_log_nothing() {
    use std::os::fd::AsRawFd;
    let m = TestMount::new();
    let data = pattern(10_000, 5);
    fs::write(m.path("src"), &data).unwrap();
    let src = File::open(m.path("src")).unwrap();
    let fd = src.as_raw_fd();
    // SAFETY: plain syscalls on a descriptor this function owns.
    unsafe {
        assert_eq!(libc::lseek(fd, 0, libc::SEEK_HOLE), 10_000);
        assert_eq!(libc::lseek(fd, 4_000, libc::SEEK_DATA), 4_000);
    }
    let dst = File::create(m.path("dst")).unwrap();
    let (mut off_in, mut off_out) = (100i64, 0i64);
    // SAFETY: as above; the offsets are locals.
    let copied =
        unsafe { libc::copy_file_range(fd, &mut off_in, dst.as_raw_fd(), &mut off_out, 5_000, 0) };
    assert_eq!(copied, 5_000);
    drop(dst);
    assert_eq!(fs::read(m.path("dst")).unwrap(), &data[100..5_100]);
    let mut flags: libc::c_long = 0;
    // FS_IOC_GETFLAGS, as lsattr asks it.
    // SAFETY: as above; `flags` outlives the call.
    let r = unsafe { libc::ioctl(fd, 0x8008_6601, &mut flags) };
    assert_eq!(r, -1, "FS_IOC_GETFLAGS is not served");
    let log = m.log_text();
    assert!(!log.contains("WARN"), "{log}");
}

#[test]
fn xattrs_statfs_fallocate_fsync() {
    let m = TestMount::new();
    let p = m.path("x");
    fs::write(&p, b"data").unwrap();
    let have_setfattr = common::have("setfattr");
    if have_setfattr {
        run_ok(
            Command::new("setfattr")
                .args(["-n", "user.comment", "-v", "secret-note"])
                .arg(&p),
        );
        let out = run_ok(
            Command::new("getfattr")
                .args(["-n", "user.comment", "--only-values"])
                .arg(&p),
        );
        assert_eq!(out, "secret-note");
        let out = run_ok(Command::new("getfattr").args(["-d"]).arg(&p));
        assert!(out.contains("user.comment"), "{out}");
        run_ok(
            Command::new("setfattr")
                .args(["-x", "user.comment"])
                .arg(&p),
        );
        let out = Command::new("getfattr")
            .args(["-n", "user.comment"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
    let st = rustix::fs::statvfs(&m.mnt).unwrap();
    assert!(st.f_blocks > 0);
    assert_eq!(st.f_namemax, 255);
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, 100_000).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), 100_000);
    assert_eq!(&fs::read(&p).unwrap()[..4], b"data");
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    File::open(&m.mnt).unwrap().sync_all().unwrap();
}

#[test]
fn invalid_and_long_names() {
    let m = TestMount::new();
    let long = "é".repeat(127) + "x"; // 255 bytes
    assert_eq!(long.len(), 255);
    fs::write(m.path(&long), b"long").unwrap();
    assert_eq!(fs::read(m.path(&long)).unwrap(), b"long");
    let listed: Vec<_> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(listed.contains(&long));
    fs::create_dir(m.path(&format!("{}d", "d".repeat(200)))).unwrap();
    fs::rename(m.path(&long), m.path("short")).unwrap();
    assert_eq!(fs::read(m.path("short")).unwrap(), b"long");
    let e = fs::write(m.path(&"y".repeat(256)), b"").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG));
    for p in m.backing_files() {
        assert!(
            p.file_name().unwrap().len() <= 176,
            "backing name too long: {p:?}"
        );
    }
}

#[test]
fn no_plaintext_reaches_the_backing_store() {
    let m = TestMount::new();
    let secret_name = "SECRETNAME-chat-with-alice";
    let secret_body = b"SECRETBODY the password is hunter2 SECRETBODY";
    fs::create_dir(m.path("SECRETDIR")).unwrap();
    fs::write(
        m.path(&format!("SECRETDIR/{secret_name}.db")),
        secret_body.repeat(500),
    )
    .unwrap();
    std::os::unix::fs::symlink("SECRETTARGET/path", m.path("SECRETDIR/link")).unwrap();
    drop(m.path("x"));
    for p in m.backing_files() {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        for needle in ["SECRET", "chat", "alice"] {
            assert!(!name.contains(needle), "plaintext in backing name {p:?}");
        }
        let md = fs::symlink_metadata(&p).unwrap();
        let bytes = if md.file_type().is_symlink() {
            fs::read_link(&p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if md.is_file() {
            fs::read(&p).unwrap()
        } else {
            continue;
        };
        for needle in [&b"SECRET"[..], b"hunter2", b"alice"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext in backing file {p:?}"
            );
        }
    }
}

#[test]
fn concurrent_writers_on_one_file_never_tear() {
    let m = TestMount::new();
    let p = m.path("shared");
    let chunk = 4096usize;
    fs::write(&p, vec![0u8; chunk * 64]).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let p = p.clone();
            s.spawn(move || {
                let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
                use std::os::unix::fs::FileExt;
                for round in 0..200usize {
                    // Each thread writes whole blocks of its own byte at
                    // unaligned offsets that straddle chunk boundaries.
                    let off = ((round * 7 + t as usize * 13) % 60) * chunk + 1000;
                    f.write_all_at(&vec![t + 1; 3000], off as u64).unwrap();
                    let mut buf = vec![0u8; 3000];
                    f.read_exact_at(&mut buf, off as u64).unwrap();
                }
            });
        }
    });
    let data = fs::read(&p).unwrap();
    assert_eq!(data.len(), chunk * 64);
}

#[test]
fn read_only_mount_refuses_writes() {
    let mut m = TestMount::new();
    fs::write(m.path("f"), b"kept").unwrap();
    m.unmount();
    m.extra_args = vec!["--ro".into()];
    m.mount();
    assert_eq!(fs::read(m.path("f")).unwrap(), b"kept");
    let e = fs::write(m.path("g"), b"").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn foreign_backing_files_are_ignored_not_deleted() {
    let m = TestMount::new();
    fs::write(m.cipher.join(".stfolder"), b"").unwrap();
    fs::write(m.cipher.join("desktop.ini"), b"x").unwrap();
    fs::write(m.cipher.join(".syncthing.abc.tmp"), b"x").unwrap();
    fs::write(m.path("real"), b"r").unwrap();
    let names: Vec<_> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["real".to_string()]);
    assert!(m.cipher.join(".stfolder").exists());
    assert!(m.cipher.join("desktop.ini").exists());
}

#[test]
fn tampered_chunk_gives_eio_other_chunks_readable() {
    let m = TestMount::new();
    let data = pattern(5 * 4096, 3);
    fs::write(m.path("victim"), &data).unwrap();
    let backing = m
        .backing_files()
        .into_iter()
        .find(|p| fs::metadata(p).map(|md| md.len() > 20_000).unwrap_or(false))
        .unwrap();
    let mut raw = fs::read(&backing).unwrap();
    raw[18 + 2 * (4096 + 28) + 100] ^= 0x40;
    fs::write(&backing, &raw).unwrap();
    // Drop the kernel's cached pages so the read reaches the daemon.
    let mut f = File::open(m.path("victim")).unwrap();
    let mut buf = vec![0u8; 4096];
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..], &data[..4096]);
    let e = f.read_exact_at(&mut buf, 2 * 4096).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    f.read_exact_at(&mut buf, 3 * 4096).unwrap();
    assert_eq!(&buf[..], &data[3 * 4096..4 * 4096]);
    let mut all = Vec::new();
    assert!(f.read_to_end(&mut all).is_err());
    // By backing name and inode, not by plaintext path (issue 13, finding
    // 9: the cloud can trigger these warnings at will).
    let entry = backing.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        common::wait_until(std::time::Duration::from_secs(5), || m
            .log_text()
            .contains(&format!("(backing name {entry})"))),
        "log names the file: {}",
        m.log_text()
    );
    assert!(!m.log_text().contains("victim"), "{}", m.log_text());
}

#[test]
fn hostile_symlink_in_cipherdir_is_not_followed() {
    let m = TestMount::new();
    let outside = m.tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"untouched").unwrap();
    // Plant a symlink where a directory's encrypted name would be.
    fs::create_dir(m.path("dir")).unwrap();
    let enc = fs::read_dir(&m.cipher)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    fs::remove_file(enc.join("veilfs.diriv")).unwrap();
    fs::remove_dir(&enc).unwrap();
    std::os::unix::fs::symlink(&outside, &enc).unwrap();
    let check = |m: &TestMount| {
        if let Ok(rd) = fs::read_dir(m.path("dir")) {
            for e in rd.flatten() {
                assert_ne!(
                    e.file_name(),
                    "victim",
                    "listing followed the planted symlink"
                );
            }
        }
        let _ = fs::write(m.path("dir/victim"), b"overwritten");
        let _ = fs::read(m.path("dir/victim"));
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"untouched");
    };
    check(&m);
    // Again with nothing cached: the planted entry is now seen afresh.
    let mut m = m;
    m.unmount();
    m.mount();
    check(&m);
}

#[test]
fn deleting_long_names_keeps_records_but_rmdir_still_works() {
    let m = TestMount::new();
    fs::create_dir(m.path("d")).unwrap();
    let long = "n".repeat(200);
    fs::write(m.path(&format!("d/{long}")), b"x").unwrap();
    fs::remove_file(m.path(&format!("d/{long}"))).unwrap();
    let records = m
        .backing_files()
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".vln.name"))
        .count();
    assert_eq!(
        records, 1,
        "the record stays for sync clients that resurrect the entry"
    );
    fs::remove_dir(m.path("d")).unwrap();
    assert!(!m.path("d").exists());
    // An empty directory without its IV file is readable, and gets the
    // file only when something is created in it.
    fs::create_dir(m.path("e")).unwrap();
    let enc = m.backing_files().into_iter().find(|p| p.is_dir()).unwrap();
    fs::remove_file(enc.join("veilfs.diriv")).unwrap();
    let mut m = m;
    m.unmount();
    // What a crash between mkdir and the IV file leaves: not damage.
    let only_an_empty_dir_without_iv = |m: &TestMount| {
        let (code, report) = common::fsck_json(m, &[]);
        assert_eq!(
            common::problem_kinds(&report),
            ["empty_dir_iv_missing"],
            "{report}"
        );
        assert_eq!(code, 0, "{report}");
    };
    only_an_empty_dir_without_iv(&m);
    m.mount();
    assert_eq!(fs::read_dir(m.path("e")).unwrap().count(), 0);
    assert!(
        !enc.join("veilfs.diriv").exists(),
        "a guessed IV is not written by reading"
    );
    fs::write(m.path("e/f"), b"y").unwrap();
    assert!(enc.join("veilfs.diriv").exists());
    assert_eq!(fs::read(m.path("e/f")).unwrap(), b"y");
    // A kill between creating a new directory's IV file and writing it
    // leaves the file empty: the same as no IV, not an EIO directory.
    fs::create_dir(m.path("g")).unwrap();
    let before: Vec<_> = m.backing_files();
    m.unmount();
    let g = before
        .into_iter()
        .find(|p| p.is_dir() && p != &enc && !p.starts_with(&enc))
        .unwrap();
    File::create(g.join("veilfs.diriv")).unwrap();
    only_an_empty_dir_without_iv(&m);
    m.mount();
    assert_eq!(fs::read_dir(m.path("g")).unwrap().count(), 0);
    fs::write(m.path("g/h"), b"z").unwrap();
    assert_eq!(fs::metadata(g.join("veilfs.diriv")).unwrap().len(), 16);
    assert_eq!(fs::read(m.path("g/h")).unwrap(), b"z");
}

/// The kernel caches writes and trusts its own sizes (writeback cache), so
/// a sync client that rewrites a backing file in place (same inode, new
/// size) must still be seen through the mount once the file is not open:
/// the next lookup after the attribute timeout gets a new generation.
#[test]
fn in_place_change_in_cipherdir_shows_up_through_the_mount() {
    let m = TestMount::new();
    fs::write(m.path("short"), b"short").unwrap();
    fs::write(m.path("long"), b"a much longer content").unwrap();
    assert_eq!(fs::metadata(m.path("short")).unwrap().len(), 5);
    let backing_of = |size: u64| {
        m.backing_files()
            .into_iter()
            .find(|p| p.is_file() && fs::metadata(p).unwrap().len() == size)
            .unwrap()
    };
    // 18-byte header, then one chunk with 28 bytes of nonce and tag.
    let short = backing_of(18 + 28 + 5);
    let long = backing_of(18 + 28 + 21);
    let ino = fs::metadata(&short).unwrap().ino();
    // In place, as `rclone --inplace` or `cat >` would: same inode.
    let bytes = fs::read(&long).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&short)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    assert_eq!(fs::metadata(&short).unwrap().ino(), ino);
    let seen = common::wait_until(std::time::Duration::from_secs(10), || {
        fs::metadata(m.path("short")).map(|md| md.len()).ok() == Some(21)
            && fs::read(m.path("short")).ok().as_deref() == Some(&b"a much longer content"[..])
    });
    assert!(
        seen,
        "the mount still shows {:?} ({} bytes)",
        fs::read(m.path("short")),
        fs::metadata(m.path("short"))
            .map(|md| md.len())
            .unwrap_or(0)
    );
}

/// A mount another user may use (`--allow-other`), for the tests that act
/// as nobody; `None`, saying why, where setpriv is missing.
fn mount_for_nobody() -> Option<TestMount> {
    if !common::have("setpriv") {
        eprintln!("skipped: needs setpriv (util-linux) to run as nobody");
        return None;
    }
    Some(TestMount::with_args(&["--allow-other"]))
}

/// Runs `sh -c script` as nobody (uid/gid 65534, no capabilities).
fn as_nobody(script: &str) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap()
}

/// Writing to or truncating a setuid/setgid file without CAP_FSETID clears
/// those bits, as on ext4. The daemon does it itself (the kernel hands the
/// job over with FUSE_HANDLE_KILLPRIV_V2), so compare with a plain
/// directory, through the writeback cache and a truncating open. Also the
/// second-user (`--allow-other`) path: nobody reads, writes and creates.
#[test]
fn write_by_another_user_clears_setuid_and_setgid_like_ext4() {
    let Some(m) = mount_for_nobody() else {
        return;
    };
    let plain = m.tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    // Both trees must be reachable by nobody.
    for dir in [m.tmp.path(), &plain, &m.mnt] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut outcome = Vec::new();
    for dir in [plain.clone(), m.mnt.clone()] {
        let mut modes = Vec::new();
        for (name, mode, how) in [
            ("append-suid", 0o4777, ">>"),
            ("append-sgid", 0o2777, ">>"),
            ("append-sgid-noexec", 0o2767, ">>"),
            ("trunc-suid", 0o6777, ">"),
        ] {
            let p = dir.join(name);
            fs::write(&p, b"x").unwrap();
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            let o = as_nobody(&format!("echo more {how} '{}'", p.display()));
            assert!(o.status.success(), "{name} in {}: {o:?}", dir.display());
            modes.push((name, fs::metadata(&p).unwrap().mode() & 0o7777));
        }
        let o = as_nobody(&format!(
            "echo mine > '{0}/by-nobody' && cat '{0}/by-nobody'",
            dir.display()
        ));
        assert!(
            o.status.success(),
            "nobody creates in {}: {o:?}",
            dir.display()
        );
        assert_eq!(o.stdout, b"mine\n");
        let owner = fs::metadata(dir.join("by-nobody")).unwrap().uid();
        outcome.push((modes, owner));
    }
    assert_eq!(
        outcome[1], outcome[0],
        "veilfs (right) differs from ext4 (left)"
    );
    assert_eq!(outcome[0].0[0].1 & 0o4000, 0, "ext4 itself cleared setuid");
}

/// The root of a fresh vault is what mkdir(1) makes, as a fresh ext4 root
/// is 0755: with --allow-other, another user works from the mount's root
/// by the usual modes. pjdfstest's rename/21.t does this: nobody moves
/// root's file between two 0777 directories, its working directory the
/// root. With the CIPHERDIR made 0700, nobody could not even enter it.
#[test]
fn another_user_works_from_the_root_of_a_fresh_vault() {
    let Some(m) = mount_for_nobody() else {
        return;
    };
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    let by_mkdir = m.tmp.path().join("by-mkdir");
    fs::create_dir(&by_mkdir).unwrap();
    assert_eq!(mode(&m.mnt), mode(&by_mkdir), "the mount's root");
    if mode(&m.mnt) & 0o005 != 0o005 {
        eprintln!(
            "skipped the second user's part: the umask gives new directories mode {:o}",
            mode(&m.mnt)
        );
        return;
    }
    // The test's own directory, above the mount, must be reachable.
    fs::set_permissions(m.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["a", "b"] {
        fs::create_dir(m.path(d)).unwrap();
        fs::set_permissions(m.path(d), fs::Permissions::from_mode(0o777)).unwrap();
    }
    fs::write(m.path("a/f"), b"root's").unwrap();
    let o = as_nobody(&format!("cd '{}' && mv a/f b/g && ls b", m.mnt.display()));
    assert!(o.status.success(), "nobody moves a/f to b/g: {o:?}");
    assert_eq!(o.stdout, b"g\n");
    assert!(!m.path("a/f").exists());
    assert_eq!(fs::read(m.path("b/g")).unwrap(), b"root's");
}

/// A vault mounted by an ordinary user, without --allow-other: no
/// default_permissions, so the backing file system checks each operation
/// for that user. The results must be ext4's, including a mode-000
/// directory its owner can still chmod, and access(2).
#[test]
fn owner_without_allow_other_gets_ext4_permission_results() {
    if !rustix::process::geteuid().is_root() || !common::have("setpriv") {
        eprintln!("skipped: needs root and setpriv to run as nobody");
        return;
    }
    /// Unmounts nobody's mount and restores /dev/fuse, even on failure.
    struct Guard {
        mnt: std::path::PathBuf,
        child: Option<std::process::Child>,
        fuse_mode: u32,
    }
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
            if let Some(c) = &mut self.child {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(self.fuse_mode));
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("veilfs-test")
        .tempdir_in("/var/tmp")
        .unwrap();
    let (cipher, mnt, plain) = (
        tmp.path().join("cipher"),
        tmp.path().join("mnt"),
        tmp.path().join("plain"),
    );
    let out = run_ok(
        Command::new(common::BIN)
            .args(["init", "--key-only"])
            .arg(&cipher),
    );
    let key = tmp.path().join("key");
    fs::write(&key, common::extract_key(&out).unwrap()).unwrap();
    fs::create_dir(&mnt).unwrap();
    fs::create_dir(&plain).unwrap();
    run_ok(
        Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(tmp.path()),
    );
    let mut guard = Guard {
        mnt: mnt.clone(),
        child: None,
        fuse_mode: fs::metadata("/dev/fuse").unwrap().mode() & 0o7777,
    };
    fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(0o666)).unwrap();
    guard.child = Some(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["--inh-caps=-all", common::BIN, "mount", "--foreground"])
            // nobody's own state directory (the rewrite journal lives there).
            .env("HOME", tmp.path())
            .arg("--key-file")
            .arg(&key)
            .arg(&cipher)
            .arg(&mnt)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        common::wait_until(std::time::Duration::from_secs(20), || common::is_mounted(
            &mnt
        )),
        "nobody's mount did not come up"
    );
    let script = r#"cd "$1" || exit 1
        say() { if eval "$2" >/dev/null 2>&1; then echo "$1: ok"; else echo "$1: denied"; fi; }
        echo hi > f && chmod 444 f
        say append-444 'echo x >> f'
        say access-w '[ -w f ]'; say access-r '[ -r f ]'; say access-x '[ -x f ]'
        mkdir d && echo y > d/g && chmod 000 d
        say ls-000 'ls d'; say cat-000 'cat d/g'; say cd-000 'cd d'
        say chmod-000 'chmod 500 d'
        say create-500 'touch d/new'; say rm-500 'rm -f d/g'; say cat-500 'cat d/g'
        say chmod-700 'chmod 700 d'; say rm-700 'rm d/g'
        say access-x-dir '[ -x d ]'
        stat -c '%A %U' f d"#;
    let mut seen = Vec::new();
    for dir in [&plain, &mnt] {
        let o = as_nobody(&format!("set -- '{}'\n{script}", dir.display()));
        assert!(o.status.success(), "{}: {o:?}", dir.display());
        seen.push(String::from_utf8_lossy(&o.stdout).into_owned());
    }
    assert!(seen[0].contains("ls-000: denied"), "{}", seen[0]);
    assert_eq!(seen[1], seen[0], "veilfs (right) differs from ext4 (left)");
    drop(guard);
}

/// A directory of 100,000 entries (a chat app's media folder over years):
/// every name listed exactly once, short and long (hashed) names alike,
/// and all of it removable. `VEILFS_BIG_DIR` sets the count.
#[test]
fn directory_of_100k_entries_lists_every_name_once() {
    let count: usize = std::env::var("VEILFS_BIG_DIR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let m = TestMount::new();
    let dir = m.path("big");
    fs::create_dir(&dir).unwrap();
    let name = |i: usize| {
        // Every tenth name is too long to encrypt into one backing name.
        let long = if i.is_multiple_of(10) {
            "-".repeat(200)
        } else {
            String::new()
        };
        format!("IMG-{i:06}{long}.jpg")
    };
    for i in 0..count {
        File::create(dir.join(name(i))).unwrap();
    }
    let listed: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed.len(), count, "each entry listed once");
    let unique: std::collections::HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), count, "no name listed twice");
    for i in (0..count).step_by(997) {
        assert!(unique.contains(&name(i)), "{} missing", name(i));
    }
    fs::remove_dir_all(&dir).unwrap();
    assert!(!dir.exists());
}

/// Swaps a FIFO in for the backing file of `f` after the kernel looked it
/// up, then opens `f` through the mount: the open must fail with EIO at
/// once (not wait for a writer on the FIFO), and the mount must go on
/// answering other requests. On a hang the FIFO is given a writer, so
/// even the old code's stuck thread comes free and the mount unmounts.
fn fifo_swap_after_lookup(ro: bool) {
    use std::os::unix::ffi::OsStrExt;
    use std::sync::mpsc;
    use std::time::Duration;
    let mut m = TestMount::with_args(&["--attr-timeout", "60"]);
    fs::write(m.path("other"), b"still here").unwrap();
    let before = m.backing_files();
    fs::write(m.path("f"), b"the real file").unwrap();
    let backing_f = m
        .backing_files()
        .into_iter()
        .find(|p| !before.contains(p))
        .expect("f has a backing file");
    m.unmount();
    if ro {
        m.extra_args.push("--ro".into());
    }
    m.mount();
    // Lookups: the kernel now caches both as regular files for 60 s.
    assert!(fs::metadata(m.path("f")).unwrap().is_file());
    assert!(fs::metadata(m.path("other")).unwrap().is_file());
    fs::remove_file(&backing_f).unwrap();
    let c = std::ffi::CString::new(backing_f.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);

    let (tx, rx) = mpsc::channel();
    let path = m.path("f");
    std::thread::spawn(move || {
        let r = OpenOptions::new().read(true).write(!ro).open(&path);
        let _ = tx.send(r.map(|_| ()));
    });
    let res = match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(r) => r,
        Err(_) => {
            // Free the daemon thread stuck in open(), then fail.
            let _w = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&backing_f);
            let _ = rx.recv_timeout(Duration::from_secs(5));
            panic!("open of a file swapped for a FIFO hung the mount (ro: {ro})");
        }
    };
    let e = res.expect_err("a FIFO in place of a file must not open");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // The mount still answers, at once.
    let (tx, rx) = mpsc::channel();
    let (other, mnt) = (m.path("other"), m.mnt.clone());
    std::thread::spawn(move || {
        let r = fs::read(&other).map(|d| (d, fs::read_dir(&mnt).map(|d| d.count())));
        let _ = tx.send(r);
    });
    let (data, listed) = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the mount answers after the FIFO open")
        .unwrap();
    assert_eq!(data, b"still here");
    assert_eq!(listed.unwrap(), 2);
    let log = m.log_text();
    assert!(
        log.contains("not a regular file"),
        "the refusal is logged:\n{log}"
    );
    // Put the FIFO away so nothing else trips on it at unmount.
    fs::remove_file(&backing_f).unwrap();
}

#[test]
fn fifo_swapped_in_after_lookup_cannot_hang_a_read_only_mount() {
    fifo_swap_after_lookup(true);
}

#[test]
fn fifo_swapped_in_after_lookup_cannot_hang_a_read_write_mount() {
    fifo_swap_after_lookup(false);
}

/// Symlink targets up to PATH_MAX - 1 bytes, as ext4 takes them: a target
/// whose sealed form is too long for a backing symlink is kept in a
/// `<hash>.vlink` record beside it (docs/FORMAT.md §7), which follows the
/// symlink across a rename and goes with it; fsck checks it and stays
/// clean; a remount reads it back.
#[test]
fn symlink_targets_up_to_path_max_round_trip() {
    use std::os::unix::fs::symlink;
    let mut m = TestMount::new();
    let target = |len: usize| -> String {
        let mut t = String::new();
        while t.len() < len {
            t.push_str(if t.is_empty() { "/" } else { "/d" });
            t.push_str(&"x".repeat(200.min(len - t.len())));
        }
        t.truncate(len);
        t
    };
    let lens = [1usize, 8, 700, 740, 741, 1000, 2000, 3000, 4094, 4095];
    for len in lens {
        let t = target(len);
        assert_eq!(t.len(), len);
        symlink(&t, m.path(&format!("l{len}"))).unwrap_or_else(|e| panic!("ln -s {len}: {e}"));
        assert_eq!(
            fs::read_link(m.path(&format!("l{len}")))
                .unwrap()
                .as_os_str()
                .len(),
            len
        );
        assert_eq!(
            fs::symlink_metadata(m.path(&format!("l{len}")))
                .unwrap()
                .len(),
            len as u64,
            "st_size of a {len}-byte target"
        );
    }
    // What ext4 refuses, veilfs refuses.
    let e = symlink(target(4096), m.path("too-long")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG), "{e}");
    // Records are not listed.
    let mut listed: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    let mut want: Vec<String> = lens.iter().map(|l| format!("l{l}")).collect();
    want.sort();
    assert_eq!(listed, want);
    let records = |m: &TestMount| {
        m.backing_files()
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".vlink"))
            .count()
    };
    let long = records(&m);
    assert!(
        long >= 3,
        "the longest targets are kept in records ({long})"
    );
    // Across directories, and back after a remount.
    fs::create_dir(m.path("d")).unwrap();
    fs::rename(m.path("l4095"), m.path("d/l4095")).unwrap();
    assert_eq!(records(&m), long, "the record moved with the symlink");
    m.unmount();
    let o = Command::new(common::BIN)
        .args(["fsck", "--json", "--key-file"])
        .arg(&m.keyfile)
        .arg(&m.cipher)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "fsck: {report}");
    assert!(
        report.contains("\"problems\": []"),
        "fsck is clean: {report}"
    );
    assert!(
        report.contains(&format!("\"symlinks\": {}", lens.len())),
        "{report}"
    );
    // A record without its symlink is an orphan: listed, not damage, and
    // removed by --repair.
    let record = m
        .backing_files()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".vlink") && p.parent() != Some(&m.cipher))
        .expect("the moved symlink's record");
    let orphan = m.cipher.join(record.file_name().unwrap());
    fs::copy(&record, &orphan).unwrap();
    let (code, report) = common::fsck_json(&m, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report
            .to_string()
            .contains("long symlink-target record without its symlink"),
        "{report}"
    );
    let (code, report) = common::fsck_json(&m, &["--repair"]);
    assert_eq!(code, 0, "{report}");
    assert!(!orphan.exists(), "--repair removed the orphan: {report}");
    let (_, report) = common::fsck_json(&m, &[]);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    m.mount();
    assert_eq!(
        fs::read_link(m.path("d/l4095")).unwrap().as_os_str().len(),
        4095
    );
    // The record goes with the symlink.
    fs::remove_file(m.path("d/l4095")).unwrap();
    assert_eq!(records(&m), long - 1);
    for len in lens.iter().filter(|l| **l != 4095) {
        fs::remove_file(m.path(&format!("l{len}"))).unwrap();
    }
    assert_eq!(records(&m), 0, "no record left behind");
    fs::remove_dir(m.path("d")).unwrap();
}
