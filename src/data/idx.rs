//! IDX files (MNIST, Fashion-MNIST), raw or gzip-compressed.
//!
//! Layout: two zero bytes, an element-type byte (0x08 = unsigned byte, the only type these data
//! sets use), the number of dimensions, one big-endian u32 per dimension, then the elements in
//! row-major order. The header is validated against the data actually present: a file that is
//! truncated, has trailing bytes, or claims an absurd size is an error naming the file, and no
//! buffer larger than the data really read is ever allocated from a header's claim.
//!
//! Decompression is bounded three ways, so a gzip bomb costs no more than the data it declares:
//! a header may claim at most [`MAX_IDX_BYTES`]; no more than [`MAX_DEFLATE_RATIO`] times the
//! compressed file's length (deflate cannot expand further, so a larger claim is refused before
//! anything is decompressed); and at most one byte beyond the claim is ever decoded. Concatenated
//! gzip members are decoded as `gunzip` does, so anything after the first member is either
//! more data or an error, never silently ignored.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{Error, Result};

/// Largest payload accepted (the full MNIST training images are 47 MB).
pub const MAX_IDX_BYTES: u64 = 1 << 32;

/// The most bytes deflate can expand one compressed byte to: a 258-byte match costs at least one
/// bit of literal/length code plus one of distance code, so the ratio is at most 258 * 8 / 2 =
/// 1032 (RFC 1951, section 3.2.5).
pub const MAX_DEFLATE_RATIO: u64 = 1032;

/// A decoded IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// What a caller expects a file to hold: its number of dimensions and how to name its layout in
/// messages (`"labels [N]"`). Checked right after the dimensions are read, so a labels file where
/// an images file belongs (or the reverse) is named as such, not as a size mismatch.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub rank: usize,
    pub layout: &'a str,
}

/// How the file's bytes are stored, with the file's length on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    Raw(u64),
    Gzip(u64),
}

/// Reads an IDX file of unsigned bytes of any rank; `.gz` content is detected by its magic
/// bytes.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    read_idx_inner(path, None)
}

/// [`read_idx`] of a file that must have `expected.rank` dimensions.
pub fn read_idx_expecting(path: &Path, expected: Expected<'_>) -> Result<IdxArray> {
    read_idx_inner(path, Some(expected))
}

fn read_idx_inner(path: &Path, expected: Option<Expected<'_>>) -> Result<IdxArray> {
    let io = |e| Error::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut head = [0u8; 2];
    let got = read_up_to(&mut file, &mut head).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    if got == 2 && head == [0x1f, 0x8b] {
        let reader = BufReader::new(MultiGzDecoder::new(file));
        parse_idx(path, reader, Stored::Gzip(len), expected)
    } else {
        parse_idx(path, BufReader::new(file), Stored::Raw(len), expected)
    }
}

/// Parses IDX content from `reader` (the decoded bytes). `stored` is checked against the
/// header's claim before anything is allocated.
pub fn parse_idx(
    path: &Path,
    mut reader: impl Read,
    stored: Stored,
    expected: Option<Expected<'_>>,
) -> Result<IdxArray> {
    let fail = |msg: String| Error::format(path, msg);
    // Decoding errors only arise from the gzip layer (a raw file reader never reports them).
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
            Error::format(path, format!("not a valid gzip stream ({e})"))
        }
        std::io::ErrorKind::UnexpectedEof => {
            Error::format(path, format!("gzip stream is truncated ({e})"))
        }
        _ => Error::io(path, e),
    };
    let mut magic = [0u8; 4];
    if read_up_to(&mut reader, &mut magic).map_err(io)? < 4 {
        return Err(fail(
            "too short for an IDX header (needs at least 4 bytes)".into(),
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(fail(format!(
            "bad IDX magic number {:02x}{:02x}{:02x}{:02x} (must start with 0000)",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != 0x08 {
        return Err(fail(format!(
            "element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
            magic[2]
        )));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(fail("header declares 0 dimensions".into()));
    }
    let mut raw_dims = vec![0u8; 4 * ndim];
    if read_up_to(&mut reader, &mut raw_dims).map_err(io)? < raw_dims.len() {
        return Err(fail(format!(
            "truncated IDX header: {ndim} dimensions declared but not all present"
        )));
    }
    let dims: Vec<usize> = raw_dims
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    if let Some(e) = expected.filter(|e| e.rank != ndim) {
        // An MNIST directory's two kinds of file, told apart by rank: a swapped pair is named.
        let kind = |rank| match rank {
            1 => Some("a labels file"),
            3 => Some("an images file"),
            _ => None,
        };
        return Err(fail(match (kind(ndim), kind(e.rank)) {
            (Some(found), Some(_)) => format!(
                "has the shape of {found} (dimensions {dims:?}), not of {}",
                e.layout
            ),
            _ => format!("expected {}, got dimensions {dims:?}", e.layout),
        }));
    }
    if dims.contains(&0) {
        return Err(fail(format!("dimensions {dims:?} include a zero size")));
    }
    let claimed = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&n| n <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            fail(format!(
                "dimensions {dims:?} describe more than {MAX_IDX_BYTES} bytes"
            ))
        })?;
    let header_len = 4 + 4 * ndim as u64;
    match stored {
        Stored::Raw(len) => {
            let present = len.saturating_sub(header_len);
            if present != claimed {
                return Err(fail(format!(
                    "dimensions {dims:?} need {claimed} data bytes but the file has {present}"
                )));
            }
        }
        Stored::Gzip(len) => {
            let most = len.saturating_mul(MAX_DEFLATE_RATIO);
            if header_len + claimed > most {
                return Err(fail(format!(
                    "dimensions {dims:?} need {claimed} data bytes, more than a {len}-byte \
                     gzip file can hold (at most {most} bytes decompressed)"
                )));
            }
        }
    }
    // Read at most one byte more than claimed. A raw file's length was checked above, so its
    // buffer is sized exactly; a gzip stream's decoded length is unknown until read, so its buffer
    // starts small and grows only as data arrives.
    let reserve = match stored {
        Stored::Raw(_) => claimed,
        Stored::Gzip(_) => claimed.min(1 << 20),
    };
    let mut data = Vec::with_capacity(reserve as usize);
    reader
        .take(claimed + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    match (data.len() as u64).cmp(&claimed) {
        std::cmp::Ordering::Less => Err(fail(format!(
            "truncated: dimensions {dims:?} need {claimed} data bytes, found {}",
            data.len()
        ))),
        std::cmp::Ordering::Greater => Err(fail(format!(
            "trailing bytes after the {claimed} data bytes of dimensions {dims:?}"
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
