//! FUSE over io_uring (Linux 6.14+, feature `io-uring`).
//!
//! A second transport next to the /dev/fuse channel. After FUSE_INIT has
//! been answered with `FUSE_OVER_IO_URING`, the kernel waits until every
//! queue (one per possible CPU) has registered its entries, then sends each
//! request to the queue of the CPU the calling process runs on: the request
//! arrives as a completion of the entry's `FUSE_IO_URING_CMD_REGISTER` or
//! `FUSE_IO_URING_CMD_COMMIT_AND_FETCH` command, and the reply goes back in
//! the same entry with the next `COMMIT_AND_FETCH`, which also waits for the
//! next request. One system call per request instead of a read() and a
//! write(), and no wake-up of a reader thread on another CPU.
//!
//! Each entry has two buffers registered with the kernel (see
//! `struct fuse_uring_req_header` in `<linux/fuse.h>`): a header holding the
//! `fuse_in_header`/`fuse_out_header`, the per-opcode argument struct, and
//! `fuse_uring_ent_in_out` (commit id, payload size); and a payload buffer
//! for everything after the per-opcode struct (names, write data, read
//! replies), at least as large as the connection's largest request.
//!
//! A request is copied out of its entry into the queue thread's own buffer,
//! in the same layout a read() of /dev/fuse gives, and then parsed and
//! dispatched by the same code as requests from /dev/fuse, so that the same
//! `Filesystem` serves both transports and the entry's buffers are free for
//! the reply as soon as the request is dispatched (a reply may be sent from
//! any thread, also after the dispatch returned).
//!
//! One thread per queue serves what its ring delivers, on the queue's CPU
//! (except write-back WRITEs, see `serve`). FORGET and INTERRUPT still come
//! through /dev/fuse (the kernel does not queue them on the rings), and
//! notifications still go to /dev/fuse, so the session keeps its /dev/fuse
//! threads.

use std::io;
use std::io::IoSlice;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::error;
use log::warn;
use parking_lot::Mutex;
use zerocopy::IntoBytes;

use std::thread;
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;

use nix::unistd::Uid;
use smallvec::SmallVec;

use crate::Filesystem;
use crate::WriteFlags;
use crate::ReplyEmpty;
use crate::channel::Channel;
use crate::channel::ChannelSender;
use crate::ll::Operation;
use crate::ll::fuse_abi as abi;
use crate::read_buf::FuseReadBuf;
use crate::request::RequestWithSender;
use crate::session::FilesystemHolder;
use crate::session::SessionACL;
use crate::session::SessionEventLoop;

/// `enum fuse_uring_cmd` in `<linux/fuse.h>`.
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;

/// `struct fuse_uring_req_header`: `in_out[128]`, `op_in[128]`, then
/// `struct fuse_uring_ent_in_out` (flags u64, commit_id u64, payload_sz u32,
/// padding u32, reserved u64).
const IN_OUT_SZ: usize = 128;
const OP_IN_SZ: usize = 128;
const ENT_IN_OUT: usize = IN_OUT_SZ + OP_IN_SZ;
const COMMIT_ID: usize = ENT_IN_OUT + 8;
const PAYLOAD_SZ: usize = ENT_IN_OUT + 16;
const HEADER_SZ: usize = ENT_IN_OUT + 32;

const IN_HEADER: usize = size_of::<abi::fuse_in_header>();
const OUT_HEADER: usize = size_of::<abi::fuse_out_header>();

/// Entries per queue when the caller does not choose.
pub(crate) const DEFAULT_DEPTH: usize = 8;

/// How the session's requests travel between the kernel and the filesystem.
#[derive(Debug, Clone)]
pub enum Transport {
    /// Over /dev/fuse (read and write); the text says why not over io_uring.
    DevFuse(String),
    /// Over io_uring, `queues` rings (one per possible CPU) of `depth` entries.
    IoUring {
        /// Number of queues (the kernel's number of possible CPUs).
        queues: usize,
        /// Entries per queue.
        depth: usize,
        /// Requests received over the rings so far.
        served: Arc<AtomicU64>,
    },
}

impl Transport {
    /// Requests received over io_uring so far (0 over /dev/fuse).
    pub fn io_uring_requests(&self) -> u64 {
        match self {
            Transport::DevFuse(_) => 0,
            Transport::IoUring { served, .. } => served.load(Ordering::Relaxed),
        }
    }
}

/// Why the kernel did not offer `FUSE_OVER_IO_URING` in FUSE_INIT.
pub(crate) fn why_not_offered() -> String {
    const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";
    match std::fs::read_to_string(PARAM) {
        Ok(v) if v.trim() == "N" => format!(
            "the fuse module's enable_uring parameter is off (as root: echo Y > {PARAM}, \
             or fuse.enable_uring=1 on the kernel command line)"
        ),
        Ok(_) => "the kernel did not offer FUSE_OVER_IO_URING".to_string(),
        Err(_) => "this kernel has no FUSE over io_uring (Linux 6.14 or later, \
                   built with CONFIG_FUSE_IO_URING)"
            .to_string(),
    }
}

/// The kernel's number of possible CPUs (`num_possible_cpus()`), from
/// /sys/devices/system/cpu/possible ("0-3" or "0,2-5").
fn possible_cpus() -> io::Result<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("cpu list {s:?}"));
    let mut n = 0;
    for part in s.trim().split(',') {
        n += match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.parse().map_err(|_| bad())?;
                let b: usize = b.parse().map_err(|_| bad())?;
                b.checked_sub(a).ok_or_else(bad)? + 1
            }
            None => {
                let _: usize = part.parse().map_err(|_| bad())?;
                1
            }
        };
    }
    if n == 0 { Err(bad()) } else { Ok(n) }
}

/// One ring entry: its header and payload buffers (registered with the
/// kernel, so they never move) and the iovec pair that registers them.
struct Ent {
    header: *mut u8,
    payload: *mut u8,
    iov: [libc::iovec; 2],
    /// The kernel's id of the request in this entry, for its commit.
    commit_id: AtomicU64,
    /// The last command sent, to resend it on EAGAIN/EINTR.
    last_cmd: AtomicU8,
}

/// One queue: a ring and its entries.
pub(crate) struct Queue {
    qid: u16,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    /// Serialises pushing to the submission queue (replies come from any thread).
    sq: Mutex<()>,
    ents: Box<[Ent]>,
    payload_len: usize,
    /// Owns the buffers the entries point into.
    _mem: Vec<Box<[u64]>>,
    ch: ChannelSender,
    /// The /dev/fuse descriptor the commands go to (kept open by `ch`).
    /// Not registered as a fixed file: the ring would then hold /dev/fuse
    /// open until its asynchronous teardown after the daemon died, and
    /// fusermount3's auto_unmount, which checks for ENOTCONN right away,
    /// would leave the dead mount behind.
    fd: RawFd,
    served: Arc<AtomicU64>,
}

// SAFETY: the raw pointers point into `_mem`, owned by the queue. Each
// entry's buffers are used by one party at a time, as the protocol hands
// the entry on: the kernel (from a submitted command until its
// completion), the queue thread (from the completion until the request is
// copied out), and the one reply for that request (until it submits the
// commit).
unsafe impl Send for Queue {}
unsafe impl Sync for Queue {}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("qid", &self.qid)
            .field("depth", &self.ents.len())
            .field("payload_len", &self.payload_len)
            .finish()
    }
}

/// Creates the rings (one per possible CPU) and their buffers, before
/// FUSE_INIT is answered: if this fails, the session does not ask for
/// io_uring (once asked, the kernel holds every request until all queues
/// are registered).
///
/// `auto_unmount` is the socket fusermount3 watches to unmount when the
/// daemon dies: each ring holds it too (as a registered file), so that it
/// is closed only when the rings are torn down. Otherwise, if the daemon is
/// killed, fusermount3 can see the socket close before the kernel has let
/// go of the rings' requests and aborted the connection; it then finds the
/// mount still alive and leaves it, dead, behind.
pub(crate) fn create_queues(
    ch: &Channel,
    payload_len: usize,
    depth: usize,
    auto_unmount: Option<RawFd>,
) -> io::Result<(Vec<Arc<Queue>>, Transport)> {
    let n = possible_cpus()?;
    let qids = u16::try_from(n).map_err(|_| io::Error::other("too many CPUs"))?;
    let served = Arc::new(AtomicU64::new(0));
    let queues = (0..qids)
        .map(|qid| {
            Queue::new(qid, ch, payload_len, depth, served.clone(), auto_unmount).map(Arc::new)
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok((
        queues,
        Transport::IoUring {
            queues: n,
            depth,
            served,
        },
    ))
}

impl Queue {
    fn new(
        qid: u16,
        ch: &Channel,
        payload_len: usize,
        depth: usize,
        served: Arc<AtomicU64>,
        auto_unmount: Option<RawFd>,
    ) -> io::Result<Queue> {
        let entries = u32::try_from(depth).map_err(|_| io::Error::other("queue depth"))?;
        // SQE128 (the 80-byte command area holds `fuse_uring_cmd_req`)
        // comes with the entry type; room in the completion queue for every
        // entry twice, so that it can never overflow.
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(entries * 2)
            .build(entries)?;
        if let Some(fd) = auto_unmount {
            ring.submitter().register_files(&[fd])?;
        }
        let mut mem = Vec::with_capacity(depth * 2);
        let mut ents = Vec::with_capacity(depth);
        for _ in 0..depth {
            let mut header = vec![0u64; HEADER_SZ / 8].into_boxed_slice();
            let mut payload = vec![0u64; payload_len.div_ceil(8)].into_boxed_slice();
            let h = header.as_mut_ptr().cast::<u8>();
            let p = payload.as_mut_ptr().cast::<u8>();
            mem.push(header);
            mem.push(payload);
            ents.push(Ent {
                header: h,
                payload: p,
                iov: [
                    libc::iovec {
                        iov_base: h.cast(),
                        iov_len: HEADER_SZ,
                    },
                    libc::iovec {
                        iov_base: p.cast(),
                        iov_len: payload_len,
                    },
                ],
                commit_id: AtomicU64::new(0),
                last_cmd: AtomicU8::new(0),
            });
        }
        Ok(Queue {
            qid,
            ring,
            sq: Mutex::new(()),
            ents: ents.into_boxed_slice(),
            payload_len,
            _mem: mem,
            ch: ch.sender(),
            fd: ch.as_fd().as_raw_fd(),
            served,
        })
    }

    /// The submission entry of command `cmd` for entry `i`.
    fn sqe(&self, i: usize, cmd: u32) -> squeue::Entry128 {
        let e = &self.ents[i];
        // struct fuse_uring_cmd_req: flags u64, commit_id u64, qid u16.
        let mut req = [0u8; 80];
        let commit = if cmd == CMD_COMMIT_AND_FETCH {
            e.commit_id.load(Ordering::Acquire)
        } else {
            0
        };
        req[8..16].copy_from_slice(&commit.to_ne_bytes());
        req[16..18].copy_from_slice(&self.qid.to_ne_bytes());
        let mut b = opcode::UringCmd80::new(types::Fd(self.fd), cmd).cmd(req);
        if cmd == CMD_REGISTER {
            b = b.addr(Some(e.iov.as_ptr() as u64));
        }
        let sqe = b.build().user_data(i as u64);
        if cmd != CMD_REGISTER {
            return sqe;
        }
        // REGISTER passes two iovecs (header, payload): sqe->len = 2, a
        // field UringCmd80 does not expose. Offset 24 of `io_uring_sqe`.
        // SAFETY: Entry128 is repr(C), two io_uring_sqe halves, 128 bytes.
        let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
        raw[24..28].copy_from_slice(&2u32.to_ne_bytes());
        unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
    }

    /// Pushes command `cmd` for entry `i` and submits it.
    fn submit(&self, i: usize, cmd: u32) -> io::Result<()> {
        let sqe = self.sqe(i, cmd);
        self.ents[i].last_cmd.store(cmd as u8, Ordering::Relaxed);
        let _g = self.sq.lock();
        // SAFETY: the lock makes this the only submission queue handle; the
        // buffers the command points to live as long as the queue.
        unsafe {
            let mut sq = self.ring.submission_shared();
            // One command per entry is in flight at most, and the ring has
            // as many slots as entries, so it is never full.
            sq.push(&sqe)
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Copies the request in entry `i` into `buf` in /dev/fuse layout
    /// (in header, per-opcode struct, payload) and returns its length.
    fn take_request(&self, i: usize, buf: &mut [u8]) -> io::Result<usize> {
        let e = &self.ents[i];
        let bad = |what: String| {
            io::Error::new(io::ErrorKind::InvalidData, format!("io_uring request: {what}"))
        };
        // SAFETY: the kernel handed the entry to us (its completion was
        // just received); nobody else touches it until the reply.
        let header = unsafe { std::slice::from_raw_parts(e.header, HEADER_SZ) };
        let len = u32::from_ne_bytes(header[0..4].try_into().unwrap()) as usize;
        let payload_sz =
            u32::from_ne_bytes(header[PAYLOAD_SZ..PAYLOAD_SZ + 4].try_into().unwrap()) as usize;
        let commit_id = u64::from_ne_bytes(header[COMMIT_ID..COMMIT_ID + 8].try_into().unwrap());
        e.commit_id.store(commit_id, Ordering::Release);
        // The kernel puts the request's first argument (the per-opcode
        // struct, possibly empty) in op_in and the rest in the payload;
        // the in header's len counts all of them.
        let op_len = len
            .checked_sub(IN_HEADER + payload_sz)
            .ok_or_else(|| bad(format!("len {len} < header + payload {payload_sz}")))?;
        if op_len > OP_IN_SZ || payload_sz > self.payload_len || len > buf.len() {
            return Err(bad(format!(
                "len {len}, per-opcode part {op_len}, payload {payload_sz}"
            )));
        }
        // SAFETY: as above; payload_sz is within the payload buffer.
        let payload = unsafe { std::slice::from_raw_parts(e.payload, payload_sz) };
        buf[..IN_HEADER].copy_from_slice(&header[..IN_HEADER]);
        buf[IN_HEADER..IN_HEADER + op_len].copy_from_slice(&header[IN_OUT_SZ..IN_OUT_SZ + op_len]);
        buf[IN_HEADER + op_len..len].copy_from_slice(payload);
        Ok(len)
    }

    /// Whether entry `i` holds a WRITE of the page cache's write-back
    /// (FUSE_WRITE_CACHE): nobody waits for it alone.
    fn is_writeback(&self, i: usize) -> bool {
        // SAFETY: as for `unique`.
        let header = unsafe { std::slice::from_raw_parts(self.ents[i].header, HEADER_SZ) };
        let opcode = u32::from_ne_bytes(header[4..8].try_into().unwrap());
        // struct fuse_write_in: fh u64, offset u64, size u32, write_flags u32.
        let flags = u32::from_ne_bytes(header[IN_OUT_SZ + 20..IN_OUT_SZ + 24].try_into().unwrap());
        opcode == abi::fuse_opcode::FUSE_WRITE as u32
            && WriteFlags::from_bits_retain(flags).contains(WriteFlags::FUSE_WRITE_CACHE)
    }

    /// The unique id in the in header of the request in entry `i`.
    fn unique(&self, i: usize) -> u64 {
        // SAFETY: called by the queue thread between the entry's
        // completion and its reply, like `take_request`.
        let header = unsafe { std::slice::from_raw_parts(self.ents[i].header, IN_HEADER) };
        u64::from_ne_bytes(header[8..16].try_into().unwrap())
    }

    /// Sends a reply (out header, then payload) for the request in entry
    /// `i`: writes it into the entry and commits it, which also asks for
    /// the entry's next request.
    fn reply(&self, i: usize, data: &[IoSlice<'_>]) -> io::Result<()> {
        let e = &self.ents[i];
        let (head, rest) = data
            .split_first()
            .filter(|(h, _)| h.len() == OUT_HEADER)
            .ok_or_else(|| io::Error::other("reply without a fuse_out_header"))?;
        let total: usize = rest.iter().map(|s| s.len()).sum();
        let mut res = Ok(());
        // SAFETY: this reply owns the entry until it submits the commit.
        unsafe {
            std::ptr::copy_nonoverlapping(head.as_ptr(), e.header, OUT_HEADER);
            let mut at = 0;
            if total <= self.payload_len {
                for s in rest {
                    std::ptr::copy_nonoverlapping(s.as_ptr(), e.payload.add(at), s.len());
                    at += s.len();
                }
            } else {
                // Cannot happen with the payload sized for the connection;
                // answer EIO rather than leave the entry stuck.
                let error = -libc::EIO;
                std::ptr::copy_nonoverlapping(
                    error.to_ne_bytes().as_ptr(),
                    e.header.add(4),
                    4,
                );
                res = Err(io::Error::other(format!(
                    "reply of {total} bytes exceeds the io_uring payload buffer ({})",
                    self.payload_len
                )));
            }
            let at = u32::try_from(at).unwrap_or(0);
            std::ptr::copy_nonoverlapping(
                at.to_ne_bytes().as_ptr(),
                e.header.add(PAYLOAD_SZ),
                4,
            );
        }
        self.submit(i, CMD_COMMIT_AND_FETCH)?;
        res
    }
}

/// Where a reply to a request received over io_uring goes.
#[derive(Debug, Clone)]
pub(crate) struct RingReply {
    queue: Arc<Queue>,
    ent: usize,
}

impl RingReply {
    pub(crate) fn send(&self, data: &[IoSlice<'_>]) -> io::Result<()> {
        self.queue.reply(self.ent, data)
    }

    /// The /dev/fuse channel of the session (for passthrough ioctls).
    pub(crate) fn channel(&self) -> &ChannelSender {
        &self.queue.ch
    }
}

/// The calling thread's CPU affinity.
fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: plain libc call on a local cpu_set_t.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) == 0).then_some(set)
    }
}

/// Sets the calling thread's CPU affinity (best effort).
fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: plain libc call on a cpu_set_t.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) } != 0 {
        debug!(
            "io_uring: cannot set CPU affinity: {}",
            io::Error::last_os_error()
        );
    }
}

/// Only CPU `cpu`.
fn just(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET only writes
    // inside it (it ignores a cpu beyond its size).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Starts the threads that serve the rings, one per queue.
pub(crate) fn spawn<FS: Filesystem>(
    queues: Vec<Arc<Queue>>,
    linger: Duration,
    filesystem: &Arc<FilesystemHolder<FS>>,
    ch: &Channel,
    allowed: SessionACL,
    session_owner: Uid,
    threads: &mut Vec<JoinHandle<io::Result<()>>>,
) -> io::Result<()> {
    for queue in queues {
        let name = format!("fuser-ring-{}", queue.qid);
        let se = SessionEventLoop {
            thread_name: name.clone(),
            filesystem: filesystem.clone(),
            ch: ch.clone(),
            allowed,
            session_owner,
        };
        threads.push(
            thread::Builder::new()
                .name(name)
                .spawn(move || serve(queue, linger, se))?,
        );
    }
    Ok(())
}

/// Serves the request in entry `i` of `queue`: copies it out, dispatches
/// it, and the reply commits the entry.
fn serve_one<FS: Filesystem>(
    queue: &Arc<Queue>,
    i: usize,
    buf: &mut [u8],
    se: &SessionEventLoop<FS>,
) -> io::Result<()> {
    queue.served.fetch_add(1, Ordering::Relaxed);
    let reply = RingReply {
        queue: queue.clone(),
        ent: i,
    };
    let req = queue.take_request(i, buf).and_then(|size| {
        RequestWithSender::new_ring(se.ch.sender(), reply.clone(), &buf[..size])
            .ok_or_else(|| io::Error::other("cannot parse"))
    });
    match req {
        Ok(req) => {
            if let Ok(Operation::Destroy(_)) = req.request.operation() {
                req.reply::<ReplyEmpty>().ok();
            } else {
                req.dispatch(se);
            }
            Ok(())
        }
        Err(e) => {
            // Answer EIO rather than leave the entry (and with it the
            // queue) stuck.
            error!("io_uring queue {}: bad request: {e}", queue.qid);
            let out = abi::fuse_out_header {
                len: OUT_HEADER as u32,
                error: -libc::EIO,
                unique: queue.unique(i),
            };
            reply.send(&[IoSlice::new(out.as_bytes())])
        }
    }
}

/// Serves one queue until the connection ends: registers its entries
/// (after FUSE_INIT was answered), then serves each request that
/// completes on the ring.
///
/// The thread runs on its queue's CPU: the kernel queues a request on the
/// CPU of its caller, which then waits for the answer, so serving it there
/// costs no wake-up on another CPU (unpinned, a stat cost 37-59 us instead
/// of 11 us on 2 vCPUs). But nobody waits on the CPU a write-back WRITE
/// comes from: the flusher that sends it goes on sending, and the writing
/// program goes on dirtying pages. For those the thread lets the scheduler
/// place it anywhere, until the next other request (4 KiB random writes
/// with the write-back cache: 0.5-0.65x of /dev/fuse pinned, 0.93-0.96x so).
///
/// Before it sleeps, the thread polls its completion queue for `linger`:
/// a program waiting on each answer (a cold 4 KiB random read, a stat)
/// sends its next request within microseconds, and serving it without
/// the sleep and wake-up in between took a cold random read from 24-29k
/// to 45-55k IOPS on 2 vCPUs.
fn serve<FS: Filesystem>(
    queue: Arc<Queue>,
    linger: Duration,
    se: SessionEventLoop<FS>,
) -> io::Result<()> {
    let cpu = just(usize::from(queue.qid));
    let anywhere = affinity();
    set_affinity(&cpu);
    let mut pinned = true;
    for i in 0..queue.ents.len() {
        queue.submit(i, CMD_REGISTER)?;
    }
    // Entries the kernel still serves; one whose command failed is gone.
    let mut live = queue.ents.len();
    let mut buf = FuseReadBuf::new();
    let buf = buf.as_mut();
    // Whether the last batch held a request someone waits for: only then
    // is the next one likely within the linger. A write-back WRITE's
    // sender goes on sending, and spinning would take a CPU from the
    // sealing of the WRITEs already here (1 GiB sequential write: -10 %).
    let mut awaited = false;
    loop {
        let poll = if awaited { linger } else { Duration::ZERO };
        if !completions_within(&queue, poll) {
            match queue.ring.submitter().submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let batch: SmallVec<[(usize, i32); 16]> = {
            // SAFETY: only this thread reads the completion queue.
            let cq = unsafe { queue.ring.completion_shared() };
            cq.map(|c| (c.user_data() as usize, c.result())).collect()
        };
        awaited = false;
        for &(i, res) in &batch {
            if res >= 0 {
                let writeback = queue.is_writeback(i);
                awaited |= !writeback;
                if let Some(anywhere) = &anywhere {
                    if writeback == pinned {
                        set_affinity(if writeback { anywhere } else { &cpu });
                        pinned = !writeback;
                    }
                }
                serve_one(&queue, i, buf, &se)?;
                continue;
            }
            let cmd = u32::from(queue.ents[i].last_cmd.load(Ordering::Relaxed));
            match -res {
                // The kernel was not ready yet (REGISTER before INIT was
                // processed) or was interrupted: send it again.
                libc::EAGAIN | libc::EINTR => queue.submit(i, cmd)?,
                libc::ENOTCONN | libc::ECONNABORTED => {
                    debug!("io_uring queue {}: connection ended", queue.qid);
                    return Ok(());
                }
                e => {
                    let e = io::Error::from_raw_os_error(e);
                    if cmd == CMD_REGISTER {
                        // The kernel then turns io_uring off for the
                        // connection and serves over /dev/fuse.
                        warn!(
                            "io_uring queue {}: cannot register an entry: {e}; \
                             requests go over /dev/fuse",
                            queue.qid
                        );
                    } else {
                        error!("io_uring queue {}: commit failed: {e}", queue.qid);
                    }
                    live -= 1;
                    if live == 0 {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Whether a completion is waiting on `queue` or arrives within `linger`
/// (polled, the thread stays awake).
fn completions_within(queue: &Queue, linger: Duration) -> bool {
    let start = Instant::now();
    loop {
        // SAFETY: only the queue's thread reads its completion queue; the
        // snapshot is dropped before the next.
        if !unsafe { queue.ring.completion_shared() }.is_empty() {
            return true;
        }
        if start.elapsed() >= linger {
            return false;
        }
        std::hint::spin_loop();
    }
}
