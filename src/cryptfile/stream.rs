//! Sealing a whole new backing file from a plaintext stream, front to
//! back: what `rekey` and `encrypt` write. The file is new, so no chunk is
//! rewritten in place and no journal record is needed (the caller writes
//! it under a temporary name and renames it into place once durable).

use std::fs::File;
use std::io::{self, BufWriter, Write};

use crate::content::{ContentCipher, FileHeader};

/// Seals a plaintext stream as one new file, chunk by chunk.
pub struct ChunkWriter<'a> {
    out: BufWriter<File>,
    cipher: &'a ContentCipher,
    header: FileHeader,
    plain: Vec<u8>,
    sealed: Vec<u8>,
    index: u64,
    pub bytes: u64,
}

impl<'a> ChunkWriter<'a> {
    fn seal(&mut self, last: bool) -> io::Result<()> {
        if self.index == 0 {
            self.out.write_all(self.header.as_bytes())?;
        }
        let n = self.plain.len();
        self.sealed.resize(n + crate::content::CHUNK_OVERHEAD, 0);
        self.cipher.seal_chunk(
            &self.header,
            self.index,
            last,
            &self.plain,
            &mut self.sealed,
        );
        self.out.write_all(&self.sealed)?;
        self.index += 1;
        self.plain.clear();
        Ok(())
    }

    pub fn new(file: File, cipher: &'a ContentCipher) -> ChunkWriter<'a> {
        ChunkWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            cipher,
            header: FileHeader::generate(cipher.layout()),
            plain: Vec::with_capacity(cipher.layout().chunk_size()),
            sealed: Vec::new(),
            index: 0,
            bytes: 0,
        }
    }

    pub fn finish(mut self) -> io::Result<File> {
        if self.index > 0 || !self.plain.is_empty() {
            self.seal(true)?;
        }
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for ChunkWriter<'_> {
    fn write(&mut self, mut buf: &[u8]) -> io::Result<usize> {
        let total = buf.len();
        let cs = self.cipher.layout().chunk_size();
        while !buf.is_empty() {
            if self.plain.len() == cs {
                // More follows: this chunk is not the last.
                self.seal(false)?;
            }
            let take = (cs - self.plain.len()).min(buf.len());
            self.plain.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
        }
        self.bytes += total as u64;
        Ok(total)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
