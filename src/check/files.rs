//! Regular files: the header and every chunk, streamed, holes skipped;
//! the repairs that cannot lose data.

use super::*;
use crate::cryptfile::ChunkRepair;

impl Checker<'_> {
    /// Checks header and every chunk of one regular file.
    pub(super) fn check_file(
        &mut self,
        dir: &OwnedFd,
        c: &std::ffi::CStr,
        lst: &rustix::fs::Stat,
        loc: &Loc,
    ) {
        self.report.stats.files += 1;
        let fd = match openat(
            dir,
            c,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if store::is_not_found(e) => return,
            Err(e) => {
                self.problem(ProblemKind::Unreadable, loc, format!("cannot open: {e}"));
                return;
            }
        };
        let st = match store::stat_fd(&fd) {
            Ok(st) => st,
            Err(e) => {
                self.problem(ProblemKind::Unreadable, loc, format!("cannot stat: {e}"));
                return;
            }
        };
        if Kind::from_stat(&st) != Kind::File || st.st_ino != lst.st_ino {
            // Replaced while we looked: nothing stable to check.
            return;
        }
        if st.st_nlink > 1 && !self.seen_inodes.insert((st.st_dev, st.st_ino)) {
            self.report.stats.hard_links += 1;
            self.progress.bytes_done += st.st_size as u64;
            return;
        }
        let size = st.st_size as u64;
        self.report.stats.backing_bytes += size;
        if size == 0 {
            return;
        }
        let layout = self.content.layout();
        let mut hbuf = [0u8; HEADER_LEN];
        let got = match pread_full(&fd, &mut hbuf, 0) {
            Ok(n) => n,
            Err(e) => {
                self.problem(ProblemKind::Unreadable, loc, format!("read error: {e}"));
                return;
            }
        };
        let header = match FileHeader::parse(&hbuf[..got], layout) {
            Ok(h) => h,
            Err(e) => {
                self.problem(
                    ProblemKind::HeaderInvalid,
                    loc,
                    format!("{e}; no part of the file can be read"),
                );
                self.progress.bytes_done += size;
                return;
            }
        };
        let journal = self.journal.clone();
        let ours: Vec<&crate::cryptfile::journal::Record> = journal
            .iter()
            .filter(|r| r.header == Some(*header.as_bytes()))
            .collect();
        let mut size = size;
        if self.repair && !ours.is_empty() {
            let target = RepairTarget {
                dir,
                name: c,
                dev: st.st_dev,
                ino: st.st_ino,
            };
            match self
                .reopen_for_repair(&target)
                .and_then(|rw| crate::cryptfile::recover_file(&rw, self.content, &ours))
            {
                Ok(Some(r)) if r != Default::default() => {
                    let idx = self.problem(
                        ProblemKind::CrashRecoverable,
                        loc,
                        "a crash cut a write to this file; the rewrite journal holds what it changed",
                    );
                    self.repaired(
                        idx,
                        format!(
                            "replayed the rewrite journal: {} chunk(s) restored, {} torn append(s) cut back, {} stale flag(s) re-sealed",
                            r.chunks_restored, r.tails_cut, r.stale_flags_resealed
                        ),
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    self.problem(
                        ProblemKind::Unreadable,
                        loc,
                        format!("cannot replay the rewrite journal: {e}"),
                    );
                }
            }
            size = store::stat_fd(&fd).map_or(size, |s| s.st_size as u64);
        }
        let size = size;
        if !layout.is_valid_cipher_size(size) {
            self.problem(
                ProblemKind::InvalidSize,
                loc,
                format!(
                    "backing size {size} is not a size veilfs writes: truncated inside a chunk, or bytes were appended"
                ),
            );
        }

        let stored = layout.stored_chunk_len() as u64;
        let body = size - HEADER_LEN as u64;
        let n = body.div_ceil(stored);
        let per_step = (READ_STEP as u64 / stored).max(1);
        let mut diags: Vec<(u64, ChunkDiag)> = Vec::new();
        // Chunks that authenticated real data (holes prove nothing).
        let mut authentic = 0u64;
        let mut last_data = None;
        let mut holes = 0u64;
        let mut i = 0u64;
        let mut buf = std::mem::take(&mut self.read_buf);
        while i < n {
            let off = layout.chunk_cipher_start(i);
            // Whole middle chunks inside a sparse hole are holes: skip them
            // without reading.
            let data_at = match rustix::fs::seek(&fd, SeekFrom::Data(off)) {
                Ok(d) => d,
                Err(Errno::NXIO) => size,
                Err(_) => off,
            };
            if data_at > off {
                let skip = ((data_at - off) / stored).min(n - 1 - i);
                if skip > 0 {
                    i += skip;
                    holes += skip;
                    self.report.stats.chunks += skip;
                    self.progress.bytes_done += skip * stored;
                    continue;
                }
            }
            let count = per_step.min(n - i);
            let want = (layout.chunk_cipher_start(i + count).min(size) - off) as usize;
            buf.resize(want, 0);
            let got = match pread_full(&fd, &mut buf, off) {
                Ok(g) => g,
                Err(e) => {
                    self.problem_chunks(
                        ProblemKind::Unreadable,
                        loc,
                        Some(i..i + count),
                        format!("read error: {e}"),
                    );
                    break;
                }
            };
            if got < want {
                // Shrunk while we read: check what is there.
                buf.truncate(got);
            }
            for k in 0..count {
                let begin = (k * stored) as usize;
                if begin >= buf.len() {
                    break;
                }
                let end = (begin + stored as usize).min(buf.len());
                let index = i + k;
                self.report.stats.chunks += 1;
                match crate::cryptfile::diagnose_chunk(
                    self.content,
                    &header,
                    index,
                    n,
                    &buf[begin..end],
                    &mut self.plain_buf,
                    true,
                ) {
                    ChunkDiag::Data(_) => {
                        authentic += 1;
                        last_data = Some(index);
                    }
                    ChunkDiag::Hole => holes += 1,
                    d => diags.push((index, d)),
                }
            }
            self.progress.bytes_done += want as u64;
            self.tick();
            i += count;
        }
        self.read_buf = buf;
        if size > HEADER_LEN as u64 {
            // Account for the header in the progress.
            self.progress.bytes_done += HEADER_LEN as u64;
        }
        if holes > 0 {
            self.report.stats.holes += holes;
            self.report.files_with_holes.push(FileHoles {
                path: loc.plain.clone().unwrap_or_else(|| loc.backing.clone()),
                path_is_plain: loc.plain.is_some(),
                backing_path: loc.backing.clone(),
                holes,
                chunks: n,
            });
        }
        if diags.is_empty() {
            return;
        }
        if authentic == 0
            && diags.len() >= 2
            && diags
                .iter()
                .all(|(_, d)| matches!(d, ChunkDiag::Unauthentic | ChunkDiag::TornTail))
        {
            self.problem_chunks(
                ProblemKind::HeaderMismatch,
                loc,
                Some(0..n),
                format!(
                    "none of the {n} chunks authenticates against the file header: the header was replaced or damaged (or every chunk is)"
                ),
            );
            return;
        }
        // A crash the journal covers is not damage: report it as such.
        if !self.journal.is_empty() {
            let new_files = journal
                .iter()
                .any(|r| r.header.is_none() && r.name_op.is_none());
            let mut rest = Vec::new();
            for (index, d) in diags {
                let at = layout.chunk_cipher_start(index);
                let stored = layout.stored_chunk_len() as u64;
                let covered = crate::cryptfile::journal::covers(&journal, &header, at, stored, d)
                    || (d == ChunkDiag::TornTail && new_files)
                    || (d == ChunkDiag::StaleLast && !ours.is_empty());
                if covered {
                    self.problem_chunks(
                        ProblemKind::CrashRecoverable,
                        loc,
                        Some(index..index + 1),
                        format!(
                            "chunk {index} was being written when a crash struck; the rewrite journal recovers it (mount the vault or run veilfs fsck --repair)"
                        ),
                    );
                } else {
                    rest.push((index, d));
                }
            }
            diags = rest;
            if diags.is_empty() {
                return;
            }
        }
        let target = RepairTarget {
            dir,
            name: c,
            dev: st.st_dev,
            ino: st.st_ino,
        };
        let diags = self.zero_tail(&target, &header, n, diags, last_data, loc);
        self.report_chunks(&target, &header, n, diags, loc);
    }

    pub(super) fn report_chunks(
        &mut self,
        target: &RepairTarget<'_>,
        header: &FileHeader,
        n: u64,
        diags: Vec<(u64, ChunkDiag)>,
        loc: &Loc,
    ) {
        // Coalesce consecutive plain-unauthentic chunks into one problem.
        let mut run: Option<Range<u64>> = None;
        let flush = |this: &mut Self, run: &mut Option<Range<u64>>| {
            if let Some(r) = run.take() {
                let last_bad = r.end == n;
                let what = if r.end - r.start == 1 {
                    format!("chunk {}", r.start)
                } else {
                    format!("chunks {}..={}", r.start, r.end - 1)
                };
                let msg = if r.start == 0 && last_bad {
                    format!(
                        "{what} failed authentication (changed, copied from another file, truncated, or the file header was replaced)"
                    )
                } else if last_bad {
                    format!(
                        "{what} failed authentication (changed, copied from another file, or the file was truncated inside its last chunk)"
                    )
                } else {
                    format!("{what} failed authentication (changed or copied from another file)")
                };
                this.problem_chunks(ProblemKind::ChunkUnauthentic, loc, Some(r), msg);
            }
        };
        for (index, d) in diags {
            if d == ChunkDiag::Unauthentic {
                match &mut run {
                    Some(r) if r.end == index => r.end = index + 1,
                    _ => {
                        flush(self, &mut run);
                        run = Some(index..index + 1);
                    }
                }
                continue;
            }
            flush(self, &mut run);
            let chunks = Some(index..index + 1);
            match d {
                ChunkDiag::Unauthentic | ChunkDiag::Data(_) | ChunkDiag::Hole => unreachable!(),
                ChunkDiag::Misplaced(j) => {
                    self.problem_chunks(
                        ProblemKind::ChunkMisplaced,
                        loc,
                        chunks,
                        format!(
                            "chunk {index} is chunk {j} of this file: chunks were swapped or moved"
                        ),
                    );
                }
                ChunkDiag::Truncated => {
                    self.problem_chunks(
                        ProblemKind::Truncated,
                        loc,
                        chunks,
                        format!(
                            "truncated at a chunk boundary: chunk {index} is not the file's last chunk; the data after it is lost"
                        ),
                    );
                }
                ChunkDiag::BadLength(len) => {
                    self.problem_chunks(
                        ProblemKind::InvalidSize,
                        loc,
                        chunks,
                        format!(
                            "chunk {index} is only {len} bytes, shorter than a chunk's {CHUNK_OVERHEAD}-byte overhead"
                        ),
                    );
                }
                ChunkDiag::TornTail => {
                    let keep = index * self.content.layout().chunk_size() as u64;
                    let idx = self.problem_chunks(
                        ProblemKind::TornTail,
                        loc,
                        chunks,
                        format!(
                            "chunk {index}, the last, was cut off by a crash while the file grew; its bytes were never durable (repairable with --repair: the file then ends at byte {keep}, every readable byte is kept)"
                        ),
                    );
                    if self.repair {
                        let outcome = self.reopen_for_repair(target).and_then(|fd| {
                            ChunkRepair::new(&fd, self.content, header).drop_torn_tail(index)
                        });
                        self.chunk_repaired(idx, outcome, || {
                            format!("dropped the cut chunk {index}; the file ends at byte {keep}")
                        });
                    }
                }
                ChunkDiag::StaleLast => {
                    let idx = self.problem_chunks(
                        ProblemKind::StaleLastFlag,
                        loc,
                        chunks,
                        format!(
                            "chunk {index} is still sealed as the last chunk: an append was interrupted (repairable with --repair, no data is lost)"
                        ),
                    );
                    if self.repair {
                        let outcome = self.reopen_for_repair(target).and_then(|fd| {
                            ChunkRepair::new(&fd, self.content, header).reseal_stale(index)
                        });
                        self.chunk_repaired(idx, outcome, || {
                            format!("re-sealed chunk {index} as a middle chunk")
                        });
                    }
                }
            }
        }
        flush(self, &mut run);
    }

    /// Handles a stale last chunk that nothing authentic follows (issue 13,
    /// finding 4). Re-sealing it as a middle chunk, as for an interrupted
    /// append, would make whatever follows it authentic: after `truncate -s
    /// 1M` on a small file, a megabyte of zeros the file never held. So
    /// the file is reported as a possible tampering and, with `--repair`,
    /// cut right after that chunk, which keeps every authentic byte; only
    /// `keep_zero_tail` keeps the zeros. Returns the diagnoses left to
    /// report as usual.
    pub(super) fn zero_tail(
        &mut self,
        target: &RepairTarget<'_>,
        header: &FileHeader,
        n: u64,
        diags: Vec<(u64, ChunkDiag)>,
        last_data: Option<u64>,
        loc: &Loc,
    ) -> Vec<(u64, ChunkDiag)> {
        let stale = diags
            .iter()
            .filter(|(_, d)| *d == ChunkDiag::StaleLast)
            .map(|&(i, _)| i)
            .max();
        let Some(s) = stale else { return diags };
        let nothing_real_after = last_data.is_none_or(|d| d < s)
            && diags.iter().all(|(i, d)| {
                *i <= s
                    || matches!(
                        d,
                        ChunkDiag::Unauthentic | ChunkDiag::TornTail | ChunkDiag::BadLength(_)
                    )
            });
        if !nothing_real_after || self.keep_zero_tail {
            return diags;
        }
        let idx = self.problem_chunks(
            ProblemKind::ZeroTail,
            loc,
            Some(s..n),
            format!(
                "chunk {s} is still sealed as the file's last chunk and nothing authentic follows it: \
                 the {} chunks after it are zeros or damaged. veilfs never writes that; an append was \
                 interrupted, or someone with access to the backing directory appended zeros (possible \
                 tampering). --repair cuts the file after chunk {s}, keeping every authentic byte; \
                 add --keep-zero-tail to keep the zeros instead",
                n - s - 1
            ),
        );
        if self.repair {
            let outcome = self
                .reopen_for_repair(target)
                .and_then(|fd| ChunkRepair::new(&fd, self.content, header).cut_after_stale(s));
            self.chunk_repaired(idx, outcome, || {
                format!("cut the file after chunk {s}, its last authentic chunk")
            });
        }
        diags.into_iter().filter(|&(i, _)| i < s).collect()
    }

    /// Reopens the checked entry for writing, again without following a
    /// symlink, and makes sure it is still the inode that was checked.
    pub(super) fn reopen_for_repair(&self, target: &RepairTarget<'_>) -> io::Result<OwnedFd> {
        let rw = openat(
            target.dir,
            target.name,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = store::stat_fd(&rw)?;
        if Kind::from_stat(&st) != Kind::File || (st.st_dev, st.st_ino) != (target.dev, target.ino)
        {
            return Err(io::Error::other("the file changed during the check"));
        }
        Ok(rw)
    }
}
