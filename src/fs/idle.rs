//! `--idle`: unmount after a time without any request, never while a file
//! or directory is open.
//!
//! The request path only bumps a counter (one relaxed atomic add, no clock
//! read). A watcher thread samples the counter and the number of open
//! handles a few times per idle period and remembers, on CLOCK_BOOTTIME,
//! when it last saw either change. CLOCK_BOOTTIME keeps counting while the
//! machine is suspended, so a laptop asleep for an hour counts as an hour
//! idle (gocryptfs #916). The unmount is never lazy (gocryptfs #533): if the
//! kernel says the mount is busy (a shell's working directory, a file
//! opened before the last check), the mount stays and the idle time starts
//! over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the watcher looks at. Shared by the filesystem and the watcher.
#[derive(Debug, Default)]
pub struct Activity {
    requests: AtomicU64,
    open: AtomicU64,
    stop: AtomicBool,
}

impl Activity {
    /// A request arrived.
    #[inline]
    pub fn touch(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A file or directory handle was opened.
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// A handle was released.
    pub fn closed(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
        self.touch();
    }

    pub fn open_handles(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    fn snapshot(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.open.load(Ordering::Relaxed),
        )
    }

    /// Ends the watcher (the session is over).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Time since boot, including time suspended.
pub fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(
        rc, 0,
        "CLOCK_BOOTTIME is available on every Linux since 2.6.39"
    );
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The idle decision, apart from threads and clocks so it can be tested.
#[derive(Debug)]
pub struct IdleClock {
    limit: Duration,
    last_seen: (u64, u64),
    /// When (boot time) the counters last changed or a busy unmount failed.
    since: Duration,
}

impl IdleClock {
    pub fn new(limit: Duration, now: Duration, seen: (u64, u64)) -> Self {
        IdleClock {
            limit,
            last_seen: seen,
            since: now,
        }
    }

    /// Whether to unmount now, given the counters `(requests, open)`.
    pub fn should_unmount(&mut self, now: Duration, seen: (u64, u64)) -> bool {
        if seen != self.last_seen {
            self.last_seen = seen;
            self.since = now;
            return false;
        }
        seen.1 == 0 && now.saturating_sub(self.since) >= self.limit
    }

    /// The unmount failed (busy): start over.
    pub fn restart(&mut self, now: Duration) {
        self.since = now;
    }
}

/// How often the watcher samples: a twentieth of the idle time, between
/// 50 ms and 10 s.
fn tick(limit: Duration) -> Duration {
    (limit / 20).clamp(Duration::from_millis(50), Duration::from_secs(10))
}

/// Starts the watcher thread. `unmount` is called when the mount has been
/// idle for `limit`; it must not detach lazily, and returns whether the
/// mount is gone.
pub fn watch(
    activity: Arc<Activity>,
    limit: Duration,
    mountpoint: PathBuf,
    unmount: fn(&Path) -> bool,
) {
    let spawned = std::thread::Builder::new()
        .name("veilfs-idle".into())
        .spawn(move || {
            let mut clock = IdleClock::new(limit, boottime(), activity.snapshot());
            let step = tick(limit);
            while !activity.stop.load(Ordering::Relaxed) {
                std::thread::sleep(step);
                if !clock.should_unmount(boottime(), activity.snapshot()) {
                    continue;
                }
                log::info!(
                    "{}: idle for {}; unmounting",
                    mountpoint.display(),
                    humantime::format_duration(limit)
                );
                if unmount(&mountpoint) {
                    return;
                }
                log::info!(
                    "{}: busy (a working directory or a file opened just now); staying mounted",
                    mountpoint.display()
                );
                clock.restart(boottime());
            }
        });
    if let Err(e) = spawned {
        log::error!("cannot start the --idle watcher: {e}; the mount will not unmount when idle");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn unmounts_only_after_the_limit_without_change() {
        let mut c = IdleClock::new(S(60), S(100), (5, 0));
        assert!(!c.should_unmount(S(130), (5, 0)));
        assert!(c.should_unmount(S(160), (5, 0)));
        // A request restarts the clock.
        let mut c = IdleClock::new(S(60), S(100), (5, 0));
        assert!(!c.should_unmount(S(150), (6, 0)));
        assert!(!c.should_unmount(S(200), (6, 0)));
        assert!(c.should_unmount(S(210), (6, 0)));
    }

    #[test]
    fn never_with_an_open_handle() {
        let mut c = IdleClock::new(S(60), S(0), (1, 1));
        assert!(!c.should_unmount(S(10_000), (1, 1)));
        // Closed: the close itself was a request, the clock starts again.
        assert!(!c.should_unmount(S(10_001), (2, 0)));
        assert!(c.should_unmount(S(10_061), (2, 0)));
    }

    #[test]
    fn a_busy_unmount_starts_over() {
        let mut c = IdleClock::new(S(60), S(0), (1, 0));
        assert!(c.should_unmount(S(60), (1, 0)));
        c.restart(S(60));
        assert!(!c.should_unmount(S(100), (1, 0)));
        assert!(c.should_unmount(S(120), (1, 0)));
    }

    #[test]
    fn boottime_moves_forward() {
        let a = boottime();
        std::thread::sleep(Duration::from_millis(5));
        assert!(boottime() > a);
    }

    #[test]
    fn activity_counts_handles() {
        let a = Activity::default();
        a.opened();
        a.opened();
        a.closed();
        assert_eq!(a.open_handles(), 1);
        a.closed();
        a.closed(); // never below zero
        assert_eq!(a.open_handles(), 0);
        assert_eq!(a.snapshot().0, 5);
    }
}
