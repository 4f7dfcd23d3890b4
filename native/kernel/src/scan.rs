//! One pass over a local input file: its SHA-256, and what the plan asks of it besides
//! (`sources/file_scan.py` holds the same rules in Python, for inputs behind a URI).
//!
//! The whole pass runs without the interpreter lock. In Python the pass took the lock back
//! for every block it read; while the CLI imports its libraries on the main thread (which
//! holds the lock for a third of a second) the scanning threads waited at each block, and
//! the plan then waited for them.
use std::cell::RefCell;
use std::fs::File;
use std::io::{ErrorKind, Read};

use sha2::{Digest, Sha256};

const BLOCK: usize = 1 << 20;
/// Blanks and a byte-order mark's bytes before the first record.
const LEADING: &[u8] = b" \t\r\n\xef\xbb\xbf";

/// What one pass over bytes [0, size) found (see `FileScan` in `file_scan.py`).
pub struct Scanned {
    /// Some(n): the file ends at byte n, before `size` (it changed while it was read)
    pub ended_at: Option<u64>,
    pub sha256: String,
    /// of bytes [0, at), when `at` was asked for and is within `size`
    pub prefix_sha256: Option<String>,
    /// line ends in [0, at), when `prefix_sha256` is
    pub lines_before: u64,
    /// the byte before the split (`at`, or `size`) is a line end
    pub line_end_at: bool,
    /// the first two bytes
    pub head: Vec<u8>,
    /// the first byte that is not in `LEADING`, if any
    pub first: Option<u8>,
}

thread_local! {
    // one block a scanning thread, kept between files: a fresh one faults in page by page
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; BLOCK]);
}

fn hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(digest.len() * 2);
    for &b in digest {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Read into `buf` until it is full or the file ends; the bytes read.
fn fill(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Scan bytes [0, size) of the file at `path`, and [0, at) on the way when `at` is given.
pub fn scan(path: &str, size: u64, at: Option<u64>) -> std::io::Result<Scanned> {
    let mut file = File::open(path)?;
    let split = match at {
        Some(a) if a <= size => a,
        _ => size,
    };
    let counting = at.is_some_and(|a| a <= size);
    let mut whole = Sha256::new();
    let mut out = Scanned {
        ended_at: None,
        sha256: String::new(),
        prefix_sha256: None,
        lines_before: 0,
        line_end_at: false,
        head: Vec::with_capacity(2),
        first: None,
    };
    if counting && split == 0 {
        out.prefix_sha256 = Some(hex(&Sha256::digest(b"")));
    }
    BUFFER.with(|cell| -> std::io::Result<()> {
        let mut buf = cell.borrow_mut();
        let mut done: u64 = 0;
        while done < size {
            // a block never crosses the split, so the prefix's hash is taken at a block's end
            let limit = if done < split { split } else { size };
            let want = ((limit - done) as usize).min(buf.len());
            let got = fill(&mut file, &mut buf[..want])?;
            if got == 0 {
                out.ended_at = Some(done);
                return Ok(());
            }
            let block = &buf[..got];
            if out.head.len() < 2 {
                let need = 2 - out.head.len();
                out.head.extend_from_slice(&block[..need.min(got)]);
            }
            if out.first.is_none() {
                out.first = block.iter().copied().find(|b| !LEADING.contains(b));
            }
            whole.update(block);
            let before = done < split;
            done += got as u64;
            if before {
                if counting {
                    out.lines_before += memchr::memchr_iter(b'\n', block).count() as u64;
                }
                if done == split {
                    out.line_end_at = block[got - 1] == b'\n';
                    if counting {
                        out.prefix_sha256 = Some(hex(&whole.clone().finalize()));
                    }
                }
            }
        }
        Ok(())
    })?;
    if out.ended_at.is_none() {
        out.sha256 = hex(&whole.finalize());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(bytes: &[u8]) -> (tempdir::Dir, String) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("input.jsonl");
        std::fs::File::create(&path).unwrap().write_all(bytes).unwrap();
        let p = path.to_string_lossy().into_owned();
        (dir, p)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
                let p = std::env::temp_dir().join(format!("kernel-scan-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn whole_and_prefix() {
        let text = b"\xef\xbb\xbf {\"a\":1}\n{\"a\":2}\n";
        let (_d, p) = file(text);
        let s = scan(&p, text.len() as u64, Some(12)).unwrap();
        assert_eq!(s.sha256, hex(&Sha256::digest(text)));
        assert_eq!(s.prefix_sha256, Some(hex(&Sha256::digest(&text[..12]))));
        assert_eq!(s.lines_before, 1);
        assert!(s.line_end_at);
        assert_eq!(s.head, b"\xef\xbb");
        assert_eq!(s.first, Some(b'{'));
        // no `at`: the last byte is the one asked about
        let w = scan(&p, text.len() as u64, None).unwrap();
        assert!(w.line_end_at && w.prefix_sha256.is_none() && w.lines_before == 0);
        // `at` past the size: as if none was asked
        assert!(scan(&p, 5, Some(9)).unwrap().prefix_sha256.is_none());
        // listed larger than it is now
        assert_eq!(scan(&p, 100, None).unwrap().ended_at, Some(text.len() as u64));
        // at 0: the empty prefix
        assert_eq!(scan(&p, 3, Some(0)).unwrap().prefix_sha256, Some(hex(&Sha256::digest(b""))));
    }
}
