//! Split a block of NDJSON into lines: the line ends dropped (`\n`, and a `\r` before it),
//! UTF-8 checked line by line, and a line that is not UTF-8 written with Python's
//! `backslashreplace` escapes (`\xNN` for each byte of an invalid sequence).

pub struct Lines {
    pub offsets: Vec<i64>,
    pub data: Vec<u8>,
    /// indices (among the lines kept) of the lines that were not valid UTF-8
    pub bad_utf8: Vec<usize>,
    /// each kept line's index in the block, when empty lines were dropped (None: none were)
    pub line_index: Option<Vec<i64>>,
    /// lines in the block, empty ones included
    pub count: usize,
    /// indices (among the lines kept) of the lines longer than the record limit, whose text
    /// is only their first `prefix` bytes (escaped where they are not UTF-8)
    pub too_large: Vec<usize>,
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

/// `head` without a multi-byte character that the cut at its end split.
pub fn whole_chars(head: &[u8]) -> &[u8] {
    for cut in 1..=head.len().min(3) {
        let lead = head[head.len() - cut];
        if lead & 0xC0 != 0x80 {
            let need = match lead {
                0xF0..=0xFF => 4,
                0xE0..=0xEF => 3,
                0xC0..=0xDF => 2,
                _ => 1,
            };
            return if need > cut { &head[..head.len() - cut] } else { head };
        }
    }
    head
}

/// Split `block`, which ends with a newline (the reader guarantees it). Empty lines are
/// dropped here (the contract ignores them), so a block of newlines costs no rows; the
/// kept lines' indices then say where each was. A line of more than `max_record` bytes (as
/// read, before any escaping) keeps only its first `prefix` bytes.
pub fn split(block: &[u8], max_record: usize, prefix: usize) -> Lines {
    let mut offsets = Vec::new();
    let mut data = Vec::with_capacity(block.len());
    let mut bad_utf8 = Vec::new();
    let mut line_index: Option<Vec<i64>> = None;
    let mut too_large = Vec::new();
    offsets.push(0);
    let mut start = 0;
    let mut count = 0;
    for (index, end) in memchr::memchr_iter(b'\n', block).enumerate() {
        count = index + 1;
        let mut line = &block[start..end];
        start = end + 1;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.is_empty() {
            line_index.get_or_insert_with(|| (0..offsets.len() as i64 - 1).collect());
            continue;
        }
        if let Some(kept) = line_index.as_mut() {
            kept.push(index as i64);
        }
        if line.len() > max_record {
            too_large.push(offsets.len() - 1);
            escape_invalid(whole_chars(&line[..prefix.min(line.len())]), &mut data);
            offsets.push(data.len() as i64);
            continue;
        }
        if line.is_ascii() || std::str::from_utf8(line).is_ok() {
            data.extend_from_slice(line);
        } else {
            bad_utf8.push(offsets.len() - 1);
            escape_invalid(line, &mut data);
        }
        offsets.push(data.len() as i64);
    }
    Lines { offsets, data, bad_utf8, line_index, count, too_large }
}

/// The elements of a file that is one JSON array: each element's exact text and the line
/// where it starts. None when the text is not one strict JSON array of UTF-8 text; the
/// caller's own reader (Python's, which also takes NaN and the like) then decides.
pub struct ArrayElements {
    pub offsets: Vec<i64>,
    pub data: Vec<u8>,
    pub lines: Vec<i64>,
}

pub fn split_array(bytes: &[u8]) -> Option<ArrayElements> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let b = text.as_bytes();
    let ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    let mut i = 0;
    ws(&mut i);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i += 1;
    let mut out = ArrayElements { offsets: vec![0], data: Vec::with_capacity(b.len()), lines: Vec::new() };
    let mut line = 1 + memchr::memchr_iter(b'\n', &b[..i]).count() as i64;
    let mut counted_to = i;
    ws(&mut i);
    if b.get(i) == Some(&b']') {
        i += 1;
    } else {
        loop {
            ws(&mut i);
            let end = crate::json::value_end(text, i)?;
            line += memchr::memchr_iter(b'\n', &b[counted_to..i]).count() as i64;
            counted_to = i;
            out.data.extend_from_slice(&b[i..end]);
            out.offsets.push(out.data.len() as i64);
            out.lines.push(line);
            i = end;
            ws(&mut i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b']') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    ws(&mut i);
    (i == b.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays() {
        let a = split_array(b"\xef\xbb\xbf [\n {\"a\": [1, 2]},\r\n  3 ]\n").unwrap();
        assert_eq!(a.lines, vec![2, 3]);
        assert_eq!(a.data, b"{\"a\": [1, 2]}3");
        assert!(split_array(b"[1,]").is_none());
        assert!(split_array(b"[NaN]").is_none());
        assert!(split_array(b"[1] x").is_none());
        assert_eq!(split_array(b"[ ]").unwrap().lines.len(), 0);
    }

    #[test]
    fn crlf_and_bad_bytes() {
        let l = split(b"{\"a\":1}\r\n\n\xff\xe2\x82A\n", usize::MAX, 4096);
        // the empty second line is dropped; the kept lines say where they were
        assert_eq!(l.offsets, vec![0, 7, 7 + 13]);
        assert_eq!(&l.data[7..], b"\\xff\\xe2\\x82A");
        assert_eq!(l.bad_utf8, vec![1]);
        assert_eq!(l.line_index, Some(vec![0, 2]));
        assert_eq!(split(b"a\nb\n", 10, 4).line_index, None);
        assert_eq!(split(b"\n\n\r\n", 10, 4).offsets, vec![0]);
        assert_eq!(split(b"\n\n\r\n", 10, 4).count, 3);
        // over the limit by its bytes as read: the first bytes kept, escaped like the rest
        let big = split(b"abcdef\r\n\xffbcd\nabc\n", 3, 2);
        assert_eq!(big.too_large, vec![0, 1]);
        assert_eq!(big.data, b"ab\\xffbabc");
        assert!(big.bad_utf8.is_empty());
        assert_eq!(whole_chars("aé".as_bytes()), "aé".as_bytes());
        assert_eq!(whole_chars(&"aé".as_bytes()[..2]), b"a");
        assert_eq!(whole_chars(&"a雪".as_bytes()[..3]), b"a");
        assert_eq!(whole_chars(b"ab"), b"ab");
        assert_eq!(l.count, 3);
    }
}
