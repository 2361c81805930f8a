//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed.
//!
//! Layout: two zero bytes, an element-type byte (0x08 = unsigned byte, the only type these data
//! sets use), the number of dimensions, one big-endian u32 per dimension, then the elements in
//! row-major order. The header is validated against the data actually present: a file that is
//! truncated, has trailing bytes, or claims an absurd size is an error naming the file, and no
//! buffer larger than the data really read is ever allocated from a header's claim.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use crate::error::{Error, Result};

/// Largest payload accepted (the full MNIST training images are 47 MB).
const MAX_IDX_BYTES: u64 = 1 << 32;

/// A decoded IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes; `.gz` content is detected by its magic bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 2];
    let got = read_up_to(&mut file, &mut head).map_err(|e| Error::io(path, e))?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    if got == 2 && head == [0x1f, 0x8b] {
        parse_idx(path, BufReader::new(GzDecoder::new(file)), None)
    } else {
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        parse_idx(path, BufReader::new(file), Some(len))
    }
}

/// Parses IDX content from `reader`. `stored_len`, when known (raw files), is checked against
/// the header before anything is allocated.
pub fn parse_idx(path: &Path, mut reader: impl Read, stored_len: Option<u64>) -> Result<IdxArray> {
    let fail = |msg: String| Error::format(path, msg);
    let io = |e: std::io::Error| {
        if matches!(e.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput) {
            Error::format(path, format!("not a valid gzip stream ({e})"))
        } else {
            Error::io(path, e)
        }
    };
    let mut magic = [0u8; 4];
    if read_up_to(&mut reader, &mut magic).map_err(io)? < 4 {
        return Err(fail("too short for an IDX header (needs at least 4 bytes)".into()));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(fail(format!(
            "bad IDX magic number {:02x}{:02x}{:02x}{:02x} (must start with 0000)",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != 0x08 {
        return Err(fail(format!(
            "IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
            magic[2]
        )));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(fail("IDX header declares 0 dimensions".into()));
    }
    let mut raw_dims = vec![0u8; 4 * ndim];
    if read_up_to(&mut reader, &mut raw_dims).map_err(io)? < raw_dims.len() {
        return Err(fail(format!("truncated IDX header: {ndim} dimensions declared but not all present")));
    }
    let dims: Vec<usize> = raw_dims
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| n <= MAX_IDX_BYTES)
        .ok_or_else(|| fail(format!("IDX dimensions {dims:?} describe more than {MAX_IDX_BYTES} bytes")))?;
    let header_len = 4 + 4 * ndim as u64;
    if let Some(len) = stored_len {
        let present = len.saturating_sub(header_len);
        if present != expected {
            return Err(fail(format!(
                "IDX header {dims:?} needs {expected} data bytes but the file has {present}"
            )));
        }
    }
    // Read at most one byte more than declared, into a buffer that grows only as data arrives.
    let mut data = Vec::with_capacity(expected.min(1 << 26) as usize);
    reader.take(expected + 1).read_to_end(&mut data).map_err(io)?;
    match (data.len() as u64).cmp(&expected) {
        std::cmp::Ordering::Less => Err(fail(format!(
            "truncated: IDX header {dims:?} needs {expected} data bytes, found {}",
            data.len()
        ))),
        std::cmp::Ordering::Greater => Err(fail(format!(
            "trailing bytes after the {expected} data bytes declared by IDX header {dims:?}"
        ))),
        std::cmp::Ordering::Equal => Ok(IdxArray { dims, data }),
    }
}

/// Fills as much of `buf` as the reader provides; returns how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
