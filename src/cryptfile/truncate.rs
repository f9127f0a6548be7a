//! Truncation: the one change besides a write that rewrites a chunk in
//! place (the new last chunk), recorded in the journal first.

use std::os::fd::AsFd;

use super::{
    CHUNK_OVERHEAD, CryptFile, CryptFileError, HeaderError, Intent, Result, backing_size,
    open_tolerant, pread_full, pwrite_full,
};
use crate::store;

impl<Fd: AsFd> CryptFile<'_, Fd> {
    /// Sets the plaintext size, as ftruncate does: shrinking re-seals the
    /// new last chunk, growing leaves a sparse hole that reads as zeros.
    pub fn truncate(&mut self, new_size: u64) -> Result<()> {
        if let Some(j) = &mut self.journal {
            j.recorded.forget();
        }
        let layout = self.cipher.layout();
        let backing = backing_size(&self.fd)?;
        let old_size = layout.plain_size(backing);
        if new_size == 0 {
            if backing != 0 {
                store::set_len(&self.fd, 0)?;
            }
            self.header = None;
            return Ok(());
        }
        if new_size == old_size && layout.is_valid_cipher_size(backing) {
            return Ok(());
        }
        if new_size > old_size {
            let new_last_start = layout.chunk_plain_start(layout.chunk_count(new_size) - 1);
            let start = old_size.max(new_last_start);
            let zeros = vec![0u8; (new_size - start) as usize];
            return self.write_at(start, &zeros);
        }
        let header = self
            .load_header()?
            .ok_or(CryptFileError::Header(HeaderError::TooShort(0)))?;
        let index = layout.chunk_count(new_size) - 1;
        let keep = (new_size - layout.chunk_plain_start(index)) as usize;
        let at = layout.chunk_cipher_start(index);
        let old_count = layout.chunk_count(old_size);
        let old_len = if index + 1 == old_count {
            (backing - at) as usize
        } else {
            layout.stored_chunk_len()
        };
        let mut old = vec![0u8; old_len];
        let got = pread_full(&self.fd, &mut old, at)?;
        old.truncate(got);
        let mut plain = vec![0u8; layout.chunk_size()];
        match open_tolerant(
            self.cipher,
            &header,
            index,
            index + 1 == old_count,
            &old,
            &mut plain,
        ) {
            Ok(_) => {}
            Err(error) => return Err(CryptFileError::Chunk { index, error }),
        }
        let mut sealed = vec![0u8; keep + CHUNK_OVERHEAD];
        self.cipher
            .seal_chunk(&header, index, true, &plain[..keep], &mut sealed);
        let _pending = match &self.journal {
            Some(j) => Some(j.journal.record(
                j.file,
                &Intent {
                    path: j.path,
                    header: Some(&header),
                    old_backing: backing,
                    images: &[(at, &old)],
                },
            )?),
            None => None,
        };
        // The new last chunk first, then the cut: a crash between the two
        // leaves a chunk that does not authenticate in its slot, which
        // recovery puts back from the journal (the truncation is undone);
        // the cut itself is atomic.
        pwrite_full(&self.fd, &sealed, at)?;
        store::set_len(&self.fd, layout.cipher_size(new_size))?;
        Ok(())
    }
}
