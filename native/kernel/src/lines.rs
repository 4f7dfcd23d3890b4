//! Split a block of NDJSON into lines: the line ends dropped (`\n`, and a `\r` before it),
//! UTF-8 checked line by line, and a line that is not UTF-8 written with Python's
//! `backslashreplace` escapes (`\xNN` for each byte of an invalid sequence).

pub struct Lines {
    pub offsets: Vec<i64>,
    pub data: Vec<u8>,
    /// indices of the lines that were not valid UTF-8
    pub bad_utf8: Vec<usize>,
}

fn escape_invalid(mut line: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    loop {
        match std::str::from_utf8(line) {
            Ok(_) => {
                out.extend_from_slice(line);
                return;
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.extend_from_slice(&line[..good]);
                // an incomplete sequence at the end of the line is invalid as a whole
                let bad = e.error_len().unwrap_or(line.len() - good);
                for &b in &line[good..good + bad] {
                    out.extend_from_slice(b"\\x");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 15) as usize]);
                }
                line = &line[good + bad..];
            }
        }
    }
}

/// Split `block`, which ends with a newline (the reader guarantees it).
pub fn split(block: &[u8]) -> Lines {
    let count = memchr::memchr_iter(b'\n', block).count();
    let mut offsets = Vec::with_capacity(count + 1);
    let mut data = Vec::with_capacity(block.len());
    let mut bad_utf8 = Vec::new();
    offsets.push(0);
    let mut start = 0;
    for (index, end) in memchr::memchr_iter(b'\n', block).enumerate() {
        let mut line = &block[start..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.is_ascii() || std::str::from_utf8(line).is_ok() {
            data.extend_from_slice(line);
        } else {
            bad_utf8.push(index);
            escape_invalid(line, &mut data);
        }
        offsets.push(data.len() as i64);
        start = end + 1;
    }
    Lines { offsets, data, bad_utf8 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_and_bad_bytes() {
        let l = split(b"{\"a\":1}\r\n\n\xff\xe2\x82A\n");
        assert_eq!(l.offsets, vec![0, 7, 7, 7 + 13]);
        assert_eq!(&l.data[7..], b"\\xff\\xe2\\x82A");
        assert_eq!(l.bad_utf8, vec![2]);
    }
}
