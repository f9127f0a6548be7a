//! How requests are served: the helper threads that run long requests
//! (fsync, streaming reads) and reply themselves, and the linger that
//! keeps the serving thread awake between requests.

use super::*;

pub(super) type HelperJob = Box<dyn FnOnce() + Send>;

/// A few threads that run requests which may take long (fsync, streaming
/// reads) and send their replies themselves (fuser replies are `Send`).
pub(super) struct Helpers {
    jobs: Mutex<std::sync::mpsc::Sender<HelperJob>>,
}

impl Helpers {
    pub(super) fn new(name: &str, threads: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<HelperJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("veilfs-{name}-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap().recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the filesystem is gone
                        }
                    }
                })
                .expect("spawning a helper thread");
        }
        Helpers {
            jobs: Mutex::new(tx),
        }
    }

    /// Runs `job` on a helper thread (here, if none is left).
    pub(super) fn run(&self, job: HelperJob) {
        if let Err(e) = self.jobs.lock().unwrap().send(job) {
            (e.0)();
        }
    }
}

impl VeilFs {
    /// Keeps the serving thread awake for up to `opts.linger` after a
    /// reply, polling /dev/fuse, so that the next request of a program that
    /// sends them one after another is read at once instead of after a
    /// sleep and a wake-up. Measured on the project's 2-vCPU VM, where a
    /// wake-up is expensive: a getxattr round trip 16.7 µs -> 10-11 µs, a
    /// cold `ls -lR` of 20,000 files 1.15-1.40 s -> 1.06-1.24 s
    /// (PERFORMANCE.md).
    /// Not after reads and writes of streams: their helper threads need
    /// the CPU, and the kernel keeps several of those in flight anyway.
    /// Also counts the request for `--idle` (every request that does not
    /// linger counts itself).
    pub(super) fn linger(&self) {
        self.activity.touch();
        self.linger_uncounted();
    }

    /// [`VeilFs::linger`] for a request that is no use of the mount:
    /// statfs, which `df` and desktop disk monitors send to every mount
    /// every few seconds and which must not keep `--idle` from unmounting.
    pub(super) fn linger_uncounted(&self) {
        let Some(dev) = self.fuse_device.get() else {
            return;
        };
        if self.opts.linger.is_zero() {
            return;
        }
        let start = std::time::Instant::now();
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut fds = [rustix::event::PollFd::new(
            dev,
            rustix::event::PollFlags::IN,
        )];
        loop {
            // Ready means a request (or an error: the mount is gone), and
            // either way fuser's read() will not sleep.
            if !matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(0)) {
                return;
            }
            if start.elapsed() >= self.opts.linger {
                return;
            }
            std::hint::spin_loop();
        }
    }
}

/// A fuser reply that can carry an errno instead of its answer.
pub(super) trait Fail {
    fn fail(self, e: Errno);
}

macro_rules! fail_by_error {
    ($($reply:ty),*) => {
        $(impl Fail for $reply {
            fn fail(self, e: Errno) {
                self.error(e)
            }
        })*
    };
}

fail_by_error!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyEmpty,
    ReplyEntry,
    ReplyOpen,
    ReplyWrite,
    ReplyXattr
);

/// Whether a request changes the filesystem (and is refused with EROFS on
/// a read-only mount before it runs) or only reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    Reads,
    Changes,
}

impl VeilFs {
    /// How every request is answered: a change on a read-only mount is
    /// refused with EROFS, else `op` runs and its result goes to `ok`, or
    /// its errno to the kernel. Then the thread lingers (see `linger`).
    pub(super) fn answer<R: Fail, T>(
        &self,
        effect: Effect,
        reply: R,
        op: impl FnOnce() -> Res<T>,
        ok: impl FnOnce(R, T),
    ) {
        self.answer_at_once(effect, reply, op, ok);
        self.linger();
    }

    /// [`VeilFs::answer`] without the linger, for the requests of streams
    /// (write, fallocate): their helper threads need the CPU. The caller
    /// counts the request for `--idle` (`activity.touch()`).
    pub(super) fn answer_at_once<R: Fail, T>(
        &self,
        effect: Effect,
        reply: R,
        op: impl FnOnce() -> Res<T>,
        ok: impl FnOnce(R, T),
    ) {
        if effect == Effect::Changes && self.opts.read_only {
            return reply.fail(Errno::EROFS);
        }
        match op() {
            Ok(v) => ok(reply, v),
            Err(e) => reply.fail(e),
        }
    }
}
