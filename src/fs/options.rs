//! The tunables of a mount.

use std::time::Duration;

/// Tunables of a mount.
#[derive(Debug, Clone)]
pub struct FsOptions {
    pub read_only: bool,
    /// How long the kernel may cache attributes and names. Short, because
    /// a sync client may change CIPHERDIR behind the mount's back.
    pub ttl: Duration,
    /// Capacity of the directory descriptor cache.
    pub dir_fd_cache: usize,
    pub writeback_cache: bool,
    /// The kernel checks modes before each operation (default_permissions,
    /// needed with --allow-other). Without it the daemon's own user is the
    /// only caller and the backing file system checks for it.
    pub kernel_checks_permissions: bool,
    /// How long the serving thread watches /dev/fuse after a reply before
    /// it sleeps in read() (see `VeilFs::linger`); zero turns it off.
    pub linger: Duration,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            read_only: false,
            ttl: Duration::from_secs(1),
            dir_fd_cache: 4096,
            writeback_cache: true,
            kernel_checks_permissions: false,
            linger: Duration::ZERO,
        }
    }
}
