//! Hand-rolled single-pass strict RFC 8259 scanner for one NDJSON line.
//! Validates the whole value, rejects lone surrogates and control characters, detects
//! duplicate keys at every depth, and extracts the 8 contract fields of a top-level object.
use crate::rules::{self, Val};
use std::borrow::Cow;

pub enum Whole { InvalidJson, NotObject, Duplicate }

struct Bad;
type R<T> = Result<T, Bad>;

const MAX_DEPTH: u32 = 900;

struct S<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    dup: bool,
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

impl<'a> S<'a> {
    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') { self.i += 1; }
    }
    #[inline]
    fn peek(&self) -> Option<u8> { self.b.get(self.i).copied() }

    fn hex4(&mut self) -> R<u32> {
        if self.i + 4 > self.b.len() { return Err(Bad); }
        let mut v = 0;
        for k in 0..4 { v = v * 16 + hexval(self.b[self.i + k]).ok_or(Bad)?; }
        self.i += 4;
        Ok(v)
    }

    /// Parses a string starting at '"'. Returns the content span and whether it has escapes.
    #[inline]
    fn string(&mut self) -> R<(usize, usize, bool)> {
        self.i += 1;
        let start = self.i;
        let mut esc = false;
        loop {
            let c = *self.b.get(self.i).ok_or(Bad)?;
            match c {
                b'"' => { let end = self.i; self.i += 1; return Ok((start, end, esc)); }
                b'\\' => {
                    esc = true;
                    self.i += 1;
                    let e = *self.b.get(self.i).ok_or(Bad)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let u = self.hex4()?;
                            if (0xDC00..=0xDFFF).contains(&u) { return Err(Bad); }
                            if (0xD800..=0xDBFF).contains(&u) {
                                if self.b.get(self.i) != Some(&b'\\') || self.b.get(self.i + 1) != Some(&b'u') { return Err(Bad); }
                                self.i += 2;
                                let l = self.hex4()?;
                                if !(0xDC00..=0xDFFF).contains(&l) { return Err(Bad); }
                            }
                        }
                        _ => return Err(Bad),
                    }
                }
                0..=0x1f => return Err(Bad),
                _ => self.i += 1,
            }
        }
    }

    /// Decoded text of a validated string span.
    fn decode(&self, start: usize, end: usize, esc: bool) -> Cow<'a, str> {
        let raw = &self.s[start..end];
        if !esc { return Cow::Borrowed(raw); }
        let b = raw.as_bytes();
        let mut out = String::with_capacity(b.len());
        let mut i = 0;
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
                b'"' => '"', b'\\' => '\\', b'/' => '/', b'b' => '\u{8}', b'f' => '\u{c}',
                b'n' => '\n', b'r' => '\r', b't' => '\t',
                _ => {
                    let h = |k: usize| -> u32 { (0..4).fold(0, |v, n| v * 16 + hexval(b[k + n]).unwrap()) };
                    let mut u = h(i);
                    i += 4;
                    if (0xD800..=0xDBFF).contains(&u) {
                        let l = h(i + 2);
                        i += 6;
                        u = 0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00);
                    }
                    char::from_u32(u).unwrap()
                }
            };
            out.push(ch);
        }
        Cow::Owned(out)
    }

    #[inline]
    fn number(&mut self) -> R<(usize, usize)> {
        let b = self.b;
        let st = self.i;
        if b[self.i] == b'-' { self.i += 1; }
        match b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => { while self.i < b.len() && b[self.i].is_ascii_digit() { self.i += 1; } }
            _ => return Err(Bad),
        }
        if b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let f = self.i;
            while self.i < b.len() && b[self.i].is_ascii_digit() { self.i += 1; }
            if self.i == f { return Err(Bad); }
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+' | b'-')) { self.i += 1; }
            let f = self.i;
            while self.i < b.len() && b[self.i].is_ascii_digit() { self.i += 1; }
            if self.i == f { return Err(Bad); }
        }
        Ok((st, self.i))
    }

    #[inline]
    fn lit(&mut self, w: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(w) { self.i += w.len(); Ok(()) } else { Err(Bad) }
    }

    /// Any value (used for nested and non-object top-level values).
    fn value(&mut self, depth: u32) -> R<()> {
        match self.peek().ok_or(Bad)? {
            b'"' => { self.string()?; }
            b'-' | b'0'..=b'9' => { self.number()?; }
            b't' => self.lit(b"true")?,
            b'f' => self.lit(b"false")?,
            b'n' => self.lit(b"null")?,
            b'[' => {
                if depth > MAX_DEPTH { return Err(Bad); }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') { self.i += 1; return Ok(()); }
                loop {
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => { self.i += 1; return Ok(()); }
                        _ => return Err(Bad),
                    }
                }
            }
            b'{' => {
                if depth > MAX_DEPTH { return Err(Bad); }
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') { self.i += 1; return Ok(()); }
                let mut keys: Vec<Cow<'a, str>> = Vec::new();
                loop {
                    self.ws();
                    if self.peek() != Some(b'"') { return Err(Bad); }
                    let (s, e, esc) = self.string()?;
                    let k = self.decode(s, e, esc);
                    if keys.contains(&k) { self.dup = true; } else { keys.push(k); }
                    self.ws();
                    if self.peek() != Some(b':') { return Err(Bad); }
                    self.i += 1;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => { self.i += 1; return Ok(()); }
                        _ => return Err(Bad),
                    }
                }
            }
            _ => return Err(Bad),
        }
        Ok(())
    }

    /// Top-level object: extract the contract fields.
    fn top_object(&mut self, vals: &mut [Val<'a>; 8]) -> R<u32> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') { self.i += 1; return Ok(0); }
        let mut seen = 0u32;
        let mut unknown: Vec<Cow<'a, str>> = Vec::new();
        loop {
            self.ws();
            if self.peek() != Some(b'"') { return Err(Bad); }
            let (s, e, esc) = self.string()?;
            let key = self.decode(s, e, esc);
            let idx = rules::field_index(key.as_bytes());
            match idx {
                Some(f) => { if seen & (1 << f) != 0 { self.dup = true; } seen |= 1 << f; }
                None => { if unknown.contains(&key) { self.dup = true; } else { unknown.push(key); } }
            }
            self.ws();
            if self.peek() != Some(b':') { return Err(Bad); }
            self.i += 1;
            self.ws();
            let v = match self.peek().ok_or(Bad)? {
                b'"' => { let (s, e, esc) = self.string()?; Val::Str(self.decode(s, e, esc)) }
                b'-' | b'0'..=b'9' => { let (s, e) = self.number()?; Val::Num(&self.s[s..e]) }
                b't' => { self.lit(b"true")?; Val::Bool }
                b'f' => { self.lit(b"false")?; Val::Bool }
                b'n' => { self.lit(b"null")?; Val::Null }
                _ => { self.value(1)?; Val::Compound }
            };
            if let Some(f) = idx { vals[f] = v; }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => { self.i += 1; return Ok(unknown.len() as u32); }
                _ => return Err(Bad),
            }
        }
    }
}

/// Parse one line (already valid UTF-8). Ok((vals, unknown_count)) for an object.
pub fn parse_line<'a>(line: &'a str, vals: &mut [Val<'a>; 8]) -> Result<u32, Whole> {
    let mut s = S { s: line, b: line.as_bytes(), i: 0, dup: false };
    s.ws();
    let is_obj = s.peek() == Some(b'{');
    let r = if is_obj { s.top_object(vals) } else { s.value(0).map(|_| 0) };
    let n = match r { Ok(n) => n, Err(_) => return Err(Whole::InvalidJson) };
    s.ws();
    if s.i != s.b.len() { return Err(Whole::InvalidJson); }
    if !is_obj { return Err(Whole::NotObject); }
    if s.dup { return Err(Whole::Duplicate); }
    Ok(n)
}
