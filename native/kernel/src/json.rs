//! A strict RFC 8259 scanner for one record, in one pass.
//!
//! It validates the whole value the way the reference (`contract/json_exact.py`, Python's
//! `json` with duplicate keys refused) does: no NaN, comments or trailing commas, no raw
//! control characters in strings, no lone surrogates, duplicate keys found at every depth.
//! Of a top-level object it hands back the members whose keys the dataset names, as exact
//! text, and the spans of the others (for `_rescued`). Numbers are never converted here.
use std::borrow::Cow;

/// Why a record is not a usable object, in the reference's precedence.
#[derive(Debug, PartialEq, Eq)]
pub enum Whole {
    InvalidJson,
    NotObject,
    Duplicate,
    /// Valid JSON text the scanner does not decide: nesting deeper than `MAX_DEPTH`
    /// (Python's decoder has a recursion limit of its own) or a lone surrogate (invalid or
    /// not, depending on which duplicate key survives); the reference decides these.
    ForReference,
}

/// A top-level member's value, as the field rules see it.
#[derive(Clone, Debug, Default)]
pub enum Val<'a> {
    #[default]
    Absent,
    Null,
    Bool,
    /// the number's exact text, already known to follow the JSON number grammar
    Num(&'a str),
    /// the decoded string
    Str(Cow<'a, str>),
    Compound,
}

/// A member the dataset does not name: where its key and value stand in the line.
#[derive(Clone, Copy, Debug)]
pub struct Unknown {
    pub key: (usize, usize, bool),
    pub value: (usize, usize),
}

/// The keys of one object seen so far: a list while it is short (the usual case), a hash
/// set once it is long, so an object with very many keys stays linear.
#[derive(Default)]
struct KeySet<'a> {
    few: Vec<Cow<'a, str>>,
    many: Option<std::collections::HashSet<Cow<'a, str>>>,
}

impl<'a> KeySet<'a> {
    const FEW: usize = 16;

    /// False when the key was there already.
    fn insert(&mut self, key: Cow<'a, str>) -> bool {
        if let Some(set) = &mut self.many {
            return set.insert(key);
        }
        if self.few.contains(&key) {
            return false;
        }
        self.few.push(key);
        if self.few.len() > Self::FEW {
            self.many = Some(self.few.drain(..).collect());
        }
        true
    }
}

const REMEMBERED: usize = 64;

/// The keys a dataset names, and which of them came at each place of the last record:
/// records of one source nearly always list their keys in one order, so a key is compared
/// with the one expected there first, and with all of them only when that misses.
pub struct Keys<'n> {
    names: Vec<&'n [u8]>,
    expected: [u8; REMEMBERED],
}

impl<'n> Keys<'n> {
    const NONE: u8 = u8::MAX;

    pub fn new(names: Vec<&'n [u8]>) -> Self {
        Keys { names, expected: [Self::NONE; REMEMBERED] }
    }

    /// The index of the member at place `place` whose key is `key`, among the names.
    #[inline]
    fn find(&mut self, place: usize, key: &[u8]) -> Option<usize> {
        let guess = self.expected.get(place).copied().unwrap_or(Self::NONE) as usize;
        if self.names.get(guess).is_some_and(|n| same_key(n, key)) {
            return Some(guess);
        }
        let found = self.names.iter().position(|n| *n == key);
        if let Some(slot) = self.expected.get_mut(place) {
            *slot = found.map_or(Self::NONE, |f| f as u8);
        }
        found
    }
}

/// `a == b` for short keys without a call to `memcmp`: two overlapping words from 8 to 16
/// bytes, a word's worth of bytes below that.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        0..=7 => {
            let mut diff = 0u8;
            for k in 0..n {
                diff |= a[k] ^ b[k];
            }
            diff == 0
        }
        _ => a == b,
    }
}

struct Bad;
type R<T> = Result<T, Bad>;

/// Nesting the scanner follows before it hands the record to the reference.
pub const MAX_DEPTH: u32 = 64;

struct Scanner<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    dup: bool,
    deep: bool,
    lone_surrogate: bool,
}

#[inline]
fn hexval(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some((c - b'0') as u32),
        b'a'..=b'f' => Some((c - b'a' + 10) as u32),
        b'A'..=b'F' => Some((c - b'A' + 10) as u32),
        _ => None,
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Where the first byte at or after `i` that ends a string's plain run stands: a quote, a
/// backslash or a control character. Eight bytes a step (the bytes of a word whose high bit
/// the masks set: the lowest set bit is always a true match, a borrow only moves upward).
#[inline]
fn next_special(b: &[u8], mut i: usize) -> Option<usize> {
    while i + 8 <= b.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&b[i..i + 8]);
        let w = u64::from_le_bytes(word);
        let quote = w ^ (ONES * b'"' as u64);
        let backslash = w ^ (ONES * b'\\' as u64);
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w);
        let found = found & HIGHS;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|k| i + k)
}

impl<'a> Scanner<'a> {
    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn hex4(&mut self) -> R<u32> {
        if self.i + 4 > self.b.len() {
            return Err(Bad);
        }
        let mut v = 0;
        for k in 0..4 {
            v = v * 16 + hexval(self.b[self.i + k]).ok_or(Bad)?;
        }
        self.i += 4;
        Ok(v)
    }

    /// A string starting at '"': the span of its content and whether it holds escapes.
    #[inline]
    fn string(&mut self) -> R<(usize, usize, bool)> {
        self.i += 1;
        let start = self.i;
        let mut esc = false;
        loop {
            // jump to the next byte that needs a look
            self.i = next_special(self.b, self.i).ok_or(Bad)?;
            match self.b[self.i] {
                b'"' => {
                    let end = self.i;
                    self.i += 1;
                    return Ok((start, end, esc));
                }
                b'\\' => {
                    esc = true;
                    self.i += 1;
                    let e = *self.b.get(self.i).ok_or(Bad)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let u = self.hex4()?;
                            if (0xD800..=0xDBFF).contains(&u) && self.low_surrogate_follows() {
                                self.i += 6; // the pair's second half, checked above
                            } else if (0xD800..=0xDFFF).contains(&u) {
                                // A lone half of a surrogate pair is valid JSON text for
                                // Python's decoder; whether the record is then invalid
                                // depends on which duplicate survives: the reference decides.
                                self.lone_surrogate = true;
                            }
                        }
                        _ => return Err(Bad),
                    }
                }
                _ => return Err(Bad), // a raw control character
            }
        }
    }

    fn low_surrogate_follows(&self) -> bool {
        let b = &self.b[self.i..];
        b.len() >= 6 && b[0] == b'\\' && b[1] == b'u' && {
            let low = (2..6).try_fold(0u32, |v, k| hexval(b[k]).map(|h| v * 16 + h));
            low.is_some_and(|low| (0xDC00..=0xDFFF).contains(&low))
        }
    }

    fn decode(&self, span: (usize, usize, bool)) -> Cow<'a, str> {
        decode_string(&self.s[span.0..span.1], span.2)
    }

    #[inline]
    fn number(&mut self) -> R<(usize, usize)> {
        let b = self.b;
        let st = self.i;
        if b[self.i] == b'-' {
            self.i += 1;
        }
        match b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while self.i < b.len() && b[self.i].is_ascii_digit() {
                    self.i += 1;
                }
            }
            _ => return Err(Bad),
        }
        if b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let f = self.i;
            while self.i < b.len() && b[self.i].is_ascii_digit() {
                self.i += 1;
            }
            if self.i == f {
                return Err(Bad);
            }
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            let f = self.i;
            while self.i < b.len() && b[self.i].is_ascii_digit() {
                self.i += 1;
            }
            if self.i == f {
                return Err(Bad);
            }
        }
        Ok((st, self.i))
    }

    #[inline]
    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Bad)
        }
    }

    /// Any value below the top level.
    fn value(&mut self, depth: u32) -> R<()> {
        match self.peek().ok_or(Bad)? {
            b'"' => {
                self.string()?;
            }
            b'-' | b'0'..=b'9' => {
                self.number()?;
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'[' => {
                if depth >= MAX_DEPTH {
                    self.deep = true;
                    return Err(Bad);
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Bad),
                    }
                }
            }
            b'{' => {
                if depth >= MAX_DEPTH {
                    self.deep = true;
                    return Err(Bad);
                }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                let mut keys = KeySet::default();
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') {
                        return Err(Bad);
                    }
                    let span = self.string()?;
                    let key = self.decode(span);
                    if !keys.insert(key) {
                        self.dup = true;
                    }
                    self.ws();
                    if self.peek() != Some(b':') {
                        return Err(Bad);
                    }
                    self.i += 1;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(());
                        }
                        _ => return Err(Bad),
                    }
                }
            }
            _ => return Err(Bad),
        }
        Ok(())
    }

    /// The top-level object: contract members into `vals`, the others into `unknown`.
    fn top_object(
        &mut self,
        names: &mut Keys<'_>,
        vals: &mut [Val<'a>],
        unknown: &mut Vec<Unknown>,
    ) -> R<()> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut seen = 0u64;
        let mut unknown_keys = KeySet::default();
        let mut place = 0;
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(Bad);
            }
            let key_span = self.string()?;
            let key = self.decode(key_span);
            let index = names.find(place, key.as_bytes());
            place += 1;
            match index {
                Some(f) => {
                    if seen & (1 << f) != 0 {
                        self.dup = true;
                    }
                    seen |= 1 << f;
                }
                None => {
                    if !unknown_keys.insert(key) {
                        self.dup = true;
                    }
                }
            }
            self.ws();
            if self.peek() != Some(b':') {
                return Err(Bad);
            }
            self.i += 1;
            self.ws();
            let start = self.i;
            let v = match self.peek().ok_or(Bad)? {
                b'"' => {
                    let span = self.string()?;
                    Val::Str(self.decode(span))
                }
                b'-' | b'0'..=b'9' => {
                    let (s, e) = self.number()?;
                    Val::Num(&self.s[s..e])
                }
                b't' => {
                    self.literal(b"true")?;
                    Val::Bool
                }
                b'f' => {
                    self.literal(b"false")?;
                    Val::Bool
                }
                b'n' => {
                    self.literal(b"null")?;
                    Val::Null
                }
                _ => {
                    self.value(1)?;
                    Val::Compound
                }
            };
            match index {
                Some(f) => vals[f] = v,
                None => unknown.push(Unknown { key: key_span, value: (start, self.i) }),
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(Bad),
            }
        }
    }
}

/// Where one JSON value that starts at `start` ends, or None when it is not strict RFC 8259
/// JSON (or nests deeper than `MAX_DEPTH`). Duplicate keys are allowed here.
pub fn value_end(text: &str, start: usize) -> Option<usize> {
    let mut s = Scanner { s: text, b: text.as_bytes(), i: start, dup: false, deep: false, lone_surrogate: false };
    s.value(0).ok().filter(|()| !s.lone_surrogate).map(|()| s.i)
}

/// Decode one record. `vals` must hold `names.len()` entries, all `Absent`.
pub fn parse_record<'a>(
    line: &'a str,
    names: &mut Keys<'_>,
    vals: &mut [Val<'a>],
    unknown: &mut Vec<Unknown>,
) -> Result<(), Whole> {
    let mut s = Scanner { s: line, b: line.as_bytes(), i: 0, dup: false, deep: false, lone_surrogate: false };
    s.ws();
    let is_object = s.peek() == Some(b'{');
    let scanned = if is_object { s.top_object(names, vals, unknown) } else { s.value(0) };
    if scanned.is_err() {
        return Err(if s.deep { Whole::ForReference } else { Whole::InvalidJson });
    }
    s.ws();
    if s.i != s.b.len() {
        return Err(Whole::InvalidJson);
    }
    if s.lone_surrogate {
        return Err(Whole::ForReference);
    }
    if !is_object {
        return Err(Whole::NotObject);
    }
    if s.dup {
        return Err(Whole::Duplicate);
    }
    Ok(())
}

/// The text of a validated string's content, escapes decoded.
#[inline]
pub fn decode_string(raw: &str, has_escapes: bool) -> Cow<'_, str> {
    if !has_escapes {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(decode_escapes(raw))
}

#[inline(never)]
fn decode_escapes(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    let hex = |k: usize| -> u32 { (0..4).fold(0, |v, n| v * 16 + hexval(b[k + n]).unwrap_or(0)) };
    while i < b.len() {
        if b[i] != b'\\' {
            let j = memchr::memchr(b'\\', &b[i..]).map_or(b.len(), |k| i + k);
            out.push_str(&raw[i..j]);
            i = j;
            continue;
        }
        let e = b[i + 1];
        i += 2;
        let ch = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => {
                let mut u = hex(i);
                i += 4;
                let paired = (0xD800..=0xDBFF).contains(&u)
                    && b.len() >= i + 6
                    && b[i] == b'\\'
                    && b[i + 1] == b'u'
                    && (0xDC00..=0xDFFF).contains(&hex(i + 2));
                if paired {
                    u = 0x10000 + ((u - 0xD800) << 10) + (hex(i + 2) - 0xDC00);
                    i += 6;
                }
                // a lone surrogate has no character: its record goes to the reference
                char::from_u32(u).unwrap_or('\u{FFFD}')
            }
        };
        out.push(ch);
    }
    out
}

/// Write a decoded string as JSON the way Python's `json.encoder.encode_basestring` does.
pub fn encode_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in text.as_bytes() {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c >> 4) as usize]);
                out.push(HEX[(c & 15) as usize]);
            }
            _ => out.push(c),
        }
    }
    out.push(b'"');
}

/// Compact JSON of a validated value: white space between tokens dropped, strings written
/// again by `encode_string`, numbers and literals kept as they are.
pub fn write_compact(value: &str, out: &mut Vec<u8>) {
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let start = i + 1;
                let mut j = start;
                let mut esc = false;
                while b[j] != b'"' {
                    if b[j] == b'\\' {
                        esc = true;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                if esc {
                    encode_string(&decode_string(&value[start..j], true), out);
                } else {
                    out.extend_from_slice(&b[i..=j]);
                }
                i = j + 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<&'static [u8]> {
        vec![b"a", b"b"]
    }

    fn whole(line: &str) -> Result<(), Whole> {
        let mut n = Keys::new(names());
        let mut vals = vec![Val::Absent, Val::Absent];
        let mut unknown = Vec::new();
        parse_record(line, &mut n, &mut vals, &mut unknown)
    }

    #[test]
    fn whole_record_reasons() {
        assert_eq!(whole(r#"{"a": 1}"#), Ok(()));
        assert_eq!(whole(r#"{"a": 1,}"#), Err(Whole::InvalidJson));
        assert_eq!(whole("[1, 2]"), Err(Whole::NotObject));
        assert_eq!(whole(r#"{"a": 1, "\u0061": 2}"#), Err(Whole::Duplicate));
        assert_eq!(whole(r#"{"x": {"k": 1, "k": 2}}"#), Err(Whole::Duplicate));
        assert_eq!(whole(r#"[{"k": 1, "k": 2}]"#), Err(Whole::NotObject));
        assert_eq!(whole(r#"{"a": "\ud800"}"#), Err(Whole::ForReference));
        assert_eq!(whole(r#"{"a": "\ud800\u0041", "a": 1}"#), Err(Whole::ForReference));
        assert_eq!(whole(r#"{"a": "\ud83d\ude00"}"#), Ok(()));
        assert_eq!(whole(r#"{"a": "\ud800"#), Err(Whole::InvalidJson));
        assert_eq!(whole(r#"{"a": NaN}"#), Err(Whole::InvalidJson));
        assert_eq!(whole(&("[".repeat(100) + &"]".repeat(100))), Err(Whole::ForReference));
    }

    #[test]
    fn compact_matches_python() {
        let mut out = Vec::new();
        write_compact(r#"{ "k" : [1, "a\u0041\/", {"n": null}], "t":"\u0001" }"#, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"k":[1,"aA/",{"n":null}],"t":"\u0001"}"#);
    }
}
