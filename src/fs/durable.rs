//! New directories' IV files made durable off the request path.
//!
//! `mkdir` writes the new directory's `veilfs.diriv` and used to fsync it
//! before replying: about 2 ms per directory, most of the time an untar
//! spent on directories. The fsync now runs on a thread of its own, and
//! every fsync and fsyncdir through the mount waits for the IV files
//! written before it, so whatever an application makes durable inside a
//! new directory finds the directory's IV durable too. A process crash
//! loses nothing (the IV is in the page cache when `mkdir` returns); on
//! ext4 (`data=ordered`) a power cut cannot persist a directory's entries
//! without its IV's bytes either.

use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

use rustix::io::Errno;

#[derive(Default)]
struct State {
    queued: u64,
    done: u64,
    /// The first failure since the last [`IvSyncer::wait`].
    failed: Option<Errno>,
}

pub(super) struct IvSyncer {
    state: Arc<(Mutex<State>, Condvar)>,
    jobs: mpsc::Sender<OwnedFd>,
    /// Descriptors the queue may hold at once; past it, `submit` flushes
    /// in place, so a burst of mkdirs never costs the mount its
    /// descriptors (EMFILE).
    max_queued: u64,
}

impl IvSyncer {
    /// Starts the thread; it ends once the syncer is dropped and every IV
    /// file handed to it is flushed.
    pub(super) fn new(max_queued: u64) -> std::io::Result<Self> {
        let (syncer, queue) = Self::unstarted(max_queued);
        let shared = syncer.state.clone();
        std::thread::Builder::new()
            .name("veilfs-diriv".into())
            .spawn(move || {
                for fd in queue {
                    let res = rustix::fs::fsync(&fd);
                    drop(fd);
                    let (lock, cond) = &*shared;
                    let mut s = lock.lock().unwrap();
                    s.done += 1;
                    if let Err(e) = res {
                        log::warn!("cannot make a new directory's IV file durable: {e}");
                        s.failed.get_or_insert(e);
                    }
                    cond.notify_all();
                }
            })?;
        Ok(syncer)
    }

    /// The syncer and its queue, with nothing serving the queue yet.
    fn unstarted(max_queued: u64) -> (Self, mpsc::Receiver<OwnedFd>) {
        let (jobs, queue) = mpsc::channel::<OwnedFd>();
        let syncer = IvSyncer {
            state: Arc::default(),
            jobs,
            max_queued: max_queued.max(1),
        };
        (syncer, queue)
    }

    /// Flushes the IV file `fd` (already written) in the background, or
    /// here when the queue is full.
    pub(super) fn submit(&self, fd: OwnedFd) -> Result<(), Errno> {
        {
            let mut s = self.state.0.lock().unwrap();
            if s.queued - s.done < self.max_queued {
                s.queued += 1;
                drop(s);
                return match self.jobs.send(fd) {
                    Ok(()) => Ok(()),
                    // The thread is gone (only at teardown): flush here.
                    Err(mpsc::SendError(fd)) => {
                        let res = rustix::fs::fsync(&fd);
                        let (lock, cond) = &*self.state;
                        lock.lock().unwrap().done += 1;
                        cond.notify_all();
                        res
                    }
                };
            }
        }
        rustix::fs::fsync(&fd)
    }

    /// A handle for the fsync helpers, which wait on it.
    pub(super) fn waiter(&self) -> IvWaiter {
        IvWaiter(self.state.clone())
    }
}

/// Waits for the IV files submitted so far (see [`IvSyncer`]).
#[derive(Clone)]
pub(super) struct IvWaiter(Arc<(Mutex<State>, Condvar)>);

impl IvWaiter {
    /// Returns once every IV file submitted before the call is durable;
    /// reports a failure to flush one (once).
    pub(super) fn wait(&self) -> Result<(), Errno> {
        let (lock, cond) = &*self.0;
        let mut s = lock.lock().unwrap();
        let target = s.queued;
        while s.done < target {
            s = cond.wait(s).unwrap();
        }
        match s.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_once_every_submitted_file_is_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let syncer = IvSyncer::new(64).unwrap();
        let waiter = syncer.waiter();
        waiter.wait().unwrap();
        for i in 0..50 {
            let path = dir.path().join(format!("iv{i}"));
            std::fs::write(&path, [i as u8; 16]).unwrap();
            syncer
                .submit(std::fs::File::open(&path).unwrap().into())
                .unwrap();
        }
        waiter.wait().unwrap();
        let s = waiter.0.0.lock().unwrap();
        assert_eq!(s.queued, s.done);
        assert!(s.queued <= 50 && s.queued > 0, "{}", s.queued);
    }

    /// The queue never holds more descriptors than its cap: past it, the
    /// flush happens in place (a low descriptor limit must not turn a
    /// burst of mkdirs into EMFILE).
    #[test]
    fn a_full_queue_flushes_in_place() {
        let dir = tempfile::tempdir().unwrap();
        // No thread: whatever is queued stays queued.
        let (syncer, queue) = IvSyncer::unstarted(2);
        for i in 0..20 {
            let path = dir.path().join(format!("iv{i}"));
            std::fs::write(&path, [i as u8; 16]).unwrap();
            syncer
                .submit(std::fs::File::open(&path).unwrap().into())
                .unwrap();
        }
        let s = syncer.state.0.lock().unwrap();
        assert_eq!((s.queued, s.done), (2, 0));
        assert_eq!(queue.try_iter().count(), 2, "two descriptors held, no more");
    }

    #[test]
    fn a_failed_flush_is_reported_to_the_next_wait_once() {
        let syncer = IvSyncer::new(64).unwrap();
        let waiter = syncer.waiter();
        // fsync of a pipe fails with EINVAL.
        let (r, _w) = rustix::pipe::pipe().unwrap();
        syncer.submit(r).unwrap();
        assert_eq!(waiter.wait(), Err(Errno::INVAL));
        assert_eq!(waiter.wait(), Ok(()));
    }
}
