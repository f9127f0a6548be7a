//! Frees the blocks of deleted backing files off the request path.
//!
//! On ext4 mounted with `discard` (the default on many cloud disks), the
//! last `unlink` of a file waits for the device to discard every freed
//! extent: about 150 µs per small file here, more than the rest of an
//! unlink through FUSE. The unlink handler therefore pins the inode with an
//! `O_PATH` descriptor before removing the name, replies, and hands the
//! descriptor to [`Reclaimer`], whose thread closes it. The final `close`
//! is what frees the blocks, so the discard runs there, overlapped with the
//! next requests. XFS defers inode inactivation the same way.
//!
//! Nothing visible changes: the name is gone before the reply, and a crash
//! with descriptors still queued leaves only orphan inodes, which the
//! backing filesystem frees at its next mount. Free space shows up late by
//! at most the queue's length, so `statfs` and a write that fails with
//! ENOSPC call [`Reclaimer::drain`] first.

use std::os::fd::OwnedFd;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Descriptors queued at most. A short queue is enough to overlap each
/// discard with the next requests; a long one only moves the discards
/// into whatever runs next: with 4096, an untar right after an `rm -rf`
/// of 20,000 files took 7-10 s instead of 5 (measured, PERFORMANCE.md).
const MAX_QUEUED: usize = 32;

/// Files with more blocks than this are freed at once (see `release`).
/// With every size deferred, the 1 GiB file that the benchmark deletes
/// before each sequential write was discarded during that write:
/// 296-324 MiB/s instead of 410-480.
const MAX_DEFERRED_FILE: u64 = 1 << 20;

struct Pending {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Pending {
    fn done(&self) {
        let mut n = self.count.lock().unwrap();
        *n -= 1;
        if *n == 0 {
            self.idle.notify_all();
        }
    }
}

pub struct Reclaimer {
    queue: Mutex<Option<SyncSender<OwnedFd>>>,
    pending: Arc<Pending>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Reclaimer {
    /// Starts the closing thread. The queue holds at most [`MAX_QUEUED`]
    /// descriptors, and never more than an eighth of the process's limit.
    pub fn new() -> Self {
        let pending = Arc::new(Pending {
            count: Mutex::new(0),
            idle: Condvar::new(),
        });
        let (tx, rx) = sync_channel::<OwnedFd>(queue_capacity());
        let p = pending.clone();
        let thread = std::thread::Builder::new()
            .name("veilfs-reclaim".into())
            .spawn(move || {
                for fd in rx {
                    drop(fd);
                    p.done();
                }
            })
            .ok();
        let queue = if thread.is_some() { Some(tx) } else { None };
        Reclaimer {
            queue: Mutex::new(queue),
            pending,
            thread: Mutex::new(thread),
        }
    }

    /// Closes `fd`, whose inode has `allocated` bytes of blocks, on the
    /// reclaim thread. Blocks while the queue is full, so a long `rm -rf`
    /// runs at the disk's pace with bounded memory. A large file is closed
    /// here instead: its discard would take as long as many small files'
    /// and only land in whatever the program does next.
    pub fn release(&self, fd: OwnedFd, allocated: u64) {
        if allocated > MAX_DEFERRED_FILE {
            return drop(fd);
        }
        let queue = self.queue.lock().unwrap().clone();
        let Some(queue) = queue else {
            return drop(fd);
        };
        *self.pending.count.lock().unwrap() += 1;
        let fd = match queue.try_send(fd) {
            Ok(()) => return,
            Err(TrySendError::Full(fd)) => match queue.send(fd) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            Err(TrySendError::Disconnected(fd)) => fd,
        };
        drop(fd);
        self.pending.done();
    }

    /// Waits until every queued descriptor is closed, so that the space of
    /// every file deleted so far is free.
    pub fn drain(&self) {
        let mut n = self.pending.count.lock().unwrap();
        while *n > 0 {
            n = self.pending.idle.wait(n).unwrap();
        }
    }

    /// Whether any deleted file's space is still to be freed.
    pub fn is_busy(&self) -> bool {
        *self.pending.count.lock().unwrap() > 0
    }
}

impl Default for Reclaimer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Reclaimer {
    /// Closes what is queued before returning, so that an unmount leaves
    /// nothing half done.
    fn drop(&mut self) {
        self.queue.lock().unwrap().take();
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }
}

fn queue_capacity() -> usize {
    (crate::store::open_files_limit() / 8).clamp(4, MAX_QUEUED)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose write end is handed to the reclaimer: reading the other
    /// end returns end-of-file exactly when the write end is closed.
    fn pipe() -> (OwnedFd, OwnedFd) {
        rustix::pipe::pipe().unwrap()
    }

    fn write_end_closed(read_end: &OwnedFd) -> bool {
        let mut b = [0u8; 1];
        rustix::io::read(read_end, &mut b).unwrap() == 0
    }

    /// Releases the write ends of `n` pipes; returns their read ends.
    fn release_pipes(r: &Reclaimer, n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| {
                let (rd, wr) = pipe();
                r.release(wr, 0);
                rd
            })
            .collect()
    }

    #[test]
    fn drain_waits_until_every_released_descriptor_is_closed() {
        let r = Reclaimer::new();
        let readers = release_pipes(&r, 100);
        r.drain();
        assert!(!r.is_busy());
        assert!(readers.iter().all(write_end_closed));
    }

    #[test]
    fn dropping_the_reclaimer_closes_what_is_queued() {
        let r = Reclaimer::new();
        let readers = release_pipes(&r, 50);
        drop(r);
        assert!(readers.iter().all(write_end_closed));
    }

    #[test]
    fn a_large_file_is_closed_before_release_returns() {
        let r = Reclaimer::new();
        let (rd, wr) = pipe();
        r.release(wr, MAX_DEFERRED_FILE + 1);
        assert!(!r.is_busy());
        assert!(write_end_closed(&rd));
    }
}
