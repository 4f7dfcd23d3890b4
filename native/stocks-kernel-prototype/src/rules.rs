//! Field rules of the stocks contract, on exact JSON text (no floats).
use std::borrow::Cow;

#[derive(Clone, Debug, Default)]
pub enum Val<'a> {
    #[default]
    Absent,
    Null,
    Bool,
    Num(&'a str),
    Str(Cow<'a, str>),
    Compound,
}

pub const FIELDS: [&str; 8] = [
    "stock_id", "company_id", "symbol", "price", "volume", "exchange", "currency", "timestamp",
];
pub const F_STOCK_ID: usize = 0;
pub const F_COMPANY_ID: usize = 1;
pub const F_SYMBOL: usize = 2;
pub const F_PRICE: usize = 3;
pub const F_VOLUME: usize = 4;
pub const F_EXCHANGE: usize = 5;
pub const F_CURRENCY: usize = 6;
pub const F_TIMESTAMP: usize = 7;

#[inline]
pub fn field_index(key: &[u8]) -> Option<usize> {
    match key {
        b"stock_id" => Some(0),
        b"company_id" => Some(1),
        b"symbol" => Some(2),
        b"price" => Some(3),
        b"volume" => Some(4),
        b"exchange" => Some(5),
        b"currency" => Some(6),
        b"timestamp" => Some(7),
        _ => None,
    }
}

// reason codes: 0 ok, 1 invalid_utf8, 2 invalid_json, 3 not_an_object, 4 duplicate_key,
// 5 + 2*field = missing_<field>, 6 + 2*field = invalid_<field>
pub const OK: u8 = 0;
pub const INVALID_UTF8: u8 = 1;
pub const INVALID_JSON: u8 = 2;
pub const NOT_AN_OBJECT: u8 = 3;
pub const DUPLICATE_KEY: u8 = 4;
pub fn missing(f: usize) -> u8 { 5 + 2 * f as u8 }
pub fn invalid(f: usize) -> u8 { 6 + 2 * f as u8 }
pub fn reason_name(code: u8) -> String {
    match code {
        0 => "ok".into(),
        1 => "invalid_utf8".into(),
        2 => "invalid_json".into(),
        3 => "not_an_object".into(),
        4 => "duplicate_key".into(),
        c => {
            let f = ((c - 5) / 2) as usize;
            if (c - 5) % 2 == 0 { format!("missing_{}", FIELDS[f]) } else { format!("invalid_{}", FIELDS[f]) }
        }
    }
}

#[inline]
fn is_ascii_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}
#[inline]
pub fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let mut i = 0;
    let mut j = b.len();
    while i < j && is_ascii_ws(b[i]) { i += 1; }
    while j > i && is_ascii_ws(b[j - 1]) { j -= 1; }
    &s[i..j]
}
#[inline]
fn all_digits(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|c| c.is_ascii_digit())
}
#[inline]
fn strip_zeros(b: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < b.len() && b[i] == b'0' { i += 1; }
    &b[i..]
}
#[inline]
fn digits_u128(b: &[u8]) -> u128 {
    let mut n: u128 = 0;
    for &c in b { n = n * 10 + (c - b'0') as u128; }
    n
}

/// Integer rule: JSON integer or ASCII digit string, min..=i64::MAX.
#[inline]
pub fn parse_integer(v: &Val, min: i64) -> Option<i64> {
    let (neg, digits): (bool, &[u8]) = match v {
        Val::Num(t) => {
            let b = t.as_bytes();
            if b.iter().any(|&c| c == b'.' || c == b'e' || c == b'E') { return None; }
            if b[0] == b'-' { (true, &b[1..]) } else { (false, b) }
        }
        Val::Str(s) => {
            let b = s.as_bytes();
            if !all_digits(b) { return None; }
            (false, b)
        }
        _ => return None,
    };
    let sig = strip_zeros(digits);
    if sig.len() > 19 { return None; }
    let n = digits_u128(sig) as i128;
    let n = if neg { -n } else { n };
    if n < min as i128 || n > i64::MAX as i128 { return None; }
    Some(n as i64)
}

/// Decimal rule for price: > 0, <= 6 fractional digits, <= 12 integer digits -> value * 10^6.
#[inline]
pub fn parse_price(v: &Val) -> Option<i64> {
    let text: &str = match v {
        Val::Num(t) => t,
        Val::Str(s) => trim(s),
        _ => return None,
    };
    let b = text.as_bytes();
    let mut i = 0;
    let neg = b.first() == Some(&b'-');
    if neg { i += 1; }
    let ws = i;
    while i < b.len() && b[i].is_ascii_digit() { i += 1; }
    let whole = &b[ws..i];
    if whole.is_empty() { return None; }
    let mut frac: &[u8] = &[];
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() { i += 1; }
        frac = &b[fs..i];
        if frac.is_empty() { return None; }
    }
    let mut exp: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let mut eneg = false;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') { eneg = b[i] == b'-'; i += 1; }
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() { i += 1; }
        let ed = &b[es..i];
        if ed.is_empty() { return None; }
        let ed = strip_zeros(ed);
        if ed.len() > 18 { return None; }
        exp = digits_u128(ed) as i64;
        if eneg { exp = -exp; }
    }
    if i != b.len() { return None; }
    // digits = (whole+frac) without leading zeros; coefficient = digits without trailing zeros
    // work on the concatenation virtually
    let total = whole.len() + frac.len();
    let at = |k: usize| -> u8 { if k < whole.len() { whole[k] } else { frac[k - whole.len()] } };
    let mut lead = 0;
    while lead < total && at(lead) == b'0' { lead += 1; }
    if lead == total { return None; } // zero is not > 0
    if neg { return None; }
    let mut end = total;
    while at(end - 1) == b'0' { end -= 1; }
    let coef_len = (end - lead) as i64;
    let exponent = exp + (total - end) as i64 - frac.len() as i64;
    if exponent < -6 { return None; }
    if coef_len + exponent > 12 { return None; }
    let mut n: i64 = 0;
    for k in lead..end { n = n * 10 + (at(k) - b'0') as i64; }
    for _ in 0..(exponent + 6) { n *= 10; }
    Some(n)
}

pub fn parse_symbol(v: &Val) -> Option<String> {
    let s = match v { Val::Str(s) => trim(s), _ => return None };
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 12 { return None; }
    if !b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-') { return None; }
    Some(s.to_ascii_uppercase())
}

pub fn parse_currency(v: &Val) -> Option<[u8; 3]> {
    let s = match v { Val::Str(s) => trim(s), _ => return None };
    let b = s.as_bytes();
    if b.len() != 3 || !b.iter().all(|c| c.is_ascii_alphabetic()) { return None; }
    Some([b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase(), b[2].to_ascii_uppercase()])
}

const US_PER_SEC: i64 = 1_000_000;
const US_PER_DAY: i64 = 86_400 * US_PER_SEC;
// unix micros of 0001-01-01T00:00:00 and 9999-12-31T23:59:59.999999
const MIN_UNIX_US: i64 = -719_162 * US_PER_DAY;
const MAX_UNIX_US: i64 = 2_932_897 * US_PER_DAY - 1;

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 29 } else { 28 },
    }
}

fn epoch(digits: &[u8]) -> Option<i64> {
    let sig = strip_zeros(digits);
    if sig.len() > 16 { return None; }
    let n = digits_u128(sig) as i64;
    let us = if n < 100_000_000_000 { n * US_PER_SEC } else { n * 1000 };
    if us > MAX_UNIX_US { return None; }
    Some(us)
}

#[inline]
fn d2(b: &[u8], i: usize) -> Option<i64> {
    let (x, y) = (b[i], b[i + 1]);
    if x.is_ascii_digit() && y.is_ascii_digit() { Some(((x - b'0') * 10 + (y - b'0')) as i64) } else { None }
}

fn iso(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 { return None; }
    let year = d2(b, 0)? * 100 + d2(b, 2)?;
    if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' { return None; }
    let month = d2(b, 5)?;
    let day = d2(b, 8)?;
    if !matches!(b[10], b'T' | b't' | b' ') { return None; }
    let (hh, mm, ss) = (d2(b, 11)?, d2(b, 14)?, d2(b, 17)?);
    let mut i = 19;
    let mut micros = 0i64;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() { i += 1; }
        let n = i - fs;
        if n == 0 || n > 6 { return None; }
        for k in 0..6 { micros = micros * 10 + if k < n { (b[fs + k] - b'0') as i64 } else { 0 }; }
    }
    let mut offset_us = 0i64;
    if i < b.len() {
        match b[i] {
            b'Z' | b'z' => { i += 1; }
            b'+' | b'-' => {
                if b.len() < i + 6 || b[i + 3] != b':' { return None; }
                let (oh, om) = (d2(b, i + 1)?, d2(b, i + 4)?);
                if oh > 23 || om > 59 { return None; }
                offset_us = (oh * 60 + om) * 60 * US_PER_SEC;
                if b[i] == b'-' { offset_us = -offset_us; }
                i += 6;
            }
            _ => return None,
        }
    }
    if i != b.len() { return None; }
    if hh > 23 || mm > 59 || ss > 59 { return None; }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) { return None; }
    let local = days_from_civil(year, month, day) * US_PER_DAY + ((hh * 60 + mm) * 60 + ss) * US_PER_SEC + micros;
    let us = local - offset_us;
    if !(MIN_UNIX_US..=MAX_UNIX_US).contains(&us) { return None; }
    Some(us)
}

/// Event time -> unix micros (naive = UTC).
pub fn parse_event_time(v: &Val) -> Option<i64> {
    match v {
        Val::Num(t) => {
            let b = t.as_bytes();
            if b.iter().any(|&c| c == b'.' || c == b'e' || c == b'E') { return None; }
            if b[0] == b'-' { if b == b"-0" { return epoch(b"0"); } return None; }
            epoch(b)
        }
        Val::Str(s) => {
            let t = trim(s);
            if all_digits(t.as_bytes()) { epoch(t.as_bytes()) } else { iso(t) }
        }
        _ => None,
    }
}

/// Column outputs (Arrow-like layout).
#[derive(Default)]
pub struct Columns {
    pub reason: Vec<u8>,       // first reason code
    pub reason_mask: Vec<u32>, // all field reasons as bits (code - 5)
    pub stock_id: Vec<i64>,
    pub company_id: Vec<i64>,
    pub symbol_offsets: Vec<i32>,
    pub symbol_data: Vec<u8>,
    pub price: Vec<i64>,
    pub volume: Vec<Option<i64>>,
    pub exchange_offsets: Vec<i32>,
    pub exchange_data: Vec<u8>,
    pub exchange_valid: Vec<bool>,
    pub currency: Vec<[u8; 3]>,
    pub event_time: Vec<i64>,
    pub unknown_keys: Vec<u32>,
}

impl Columns {
    pub fn with_capacity(n: usize) -> Self {
        let mut c = Columns {
            reason: Vec::with_capacity(n),
            reason_mask: Vec::with_capacity(n),
            stock_id: Vec::with_capacity(n),
            company_id: Vec::with_capacity(n),
            symbol_offsets: Vec::with_capacity(n + 1),
            symbol_data: Vec::with_capacity(n * 5),
            price: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
            exchange_offsets: Vec::with_capacity(n + 1),
            exchange_data: Vec::with_capacity(n * 8),
            exchange_valid: Vec::with_capacity(n),
            currency: Vec::with_capacity(n),
            event_time: Vec::with_capacity(n),
            unknown_keys: Vec::with_capacity(n),
        };
        c.symbol_offsets.push(0);
        c.exchange_offsets.push(0);
        c
    }

    pub fn push_whole(&mut self, code: u8) {
        self.push_row(code, 0, 0, 0, None, 0, None, None, [0; 3], 0, 0);
    }

    #[allow(clippy::too_many_arguments)]
    fn push_row(&mut self, code: u8, mask: u32, sid: i64, cid: i64, sym: Option<&str>, price: i64,
                vol: Option<i64>, exch: Option<&str>, cur: [u8; 3], ts: i64, unknown: u32) {
        self.reason.push(code);
        self.reason_mask.push(mask);
        self.stock_id.push(sid);
        self.company_id.push(cid);
        if let Some(s) = sym { self.symbol_data.extend_from_slice(s.as_bytes()); }
        self.symbol_offsets.push(self.symbol_data.len() as i32);
        self.price.push(price);
        self.volume.push(vol);
        self.exchange_valid.push(exch.is_some());
        if let Some(s) = exch { self.exchange_data.extend_from_slice(s.as_bytes()); }
        self.exchange_offsets.push(self.exchange_data.len() as i32);
        self.currency.push(cur);
        self.event_time.push(ts);
        self.unknown_keys.push(unknown);
    }

    /// Apply the field rules to the 8 extracted values and append one row.
    pub fn decide(&mut self, vals: &[Val; 8], unknown: u32) {
        let mut mask = 0u32;
        let present = |f: usize| !matches!(vals[f], Val::Absent | Val::Null);
        let req_int = |f: usize, min: i64, mask: &mut u32| -> i64 {
            if !present(f) { *mask |= 1 << (missing(f) - 5); return 0; }
            match parse_integer(&vals[f], min) { Some(v) => v, None => { *mask |= 1 << (invalid(f) - 5); 0 } }
        };
        let sid = req_int(F_STOCK_ID, 1, &mut mask);
        let cid = req_int(F_COMPANY_ID, 1, &mut mask);
        let sym = if !present(F_SYMBOL) { mask |= 1 << (missing(F_SYMBOL) - 5); None } else {
            let r = parse_symbol(&vals[F_SYMBOL]);
            if r.is_none() { mask |= 1 << (invalid(F_SYMBOL) - 5); }
            r
        };
        let price = if !present(F_PRICE) { mask |= 1 << (missing(F_PRICE) - 5); 0 } else {
            match parse_price(&vals[F_PRICE]) { Some(p) => p, None => { mask |= 1 << (invalid(F_PRICE) - 5); 0 } }
        };
        let vol = if !present(F_VOLUME) { None } else {
            let r = parse_integer(&vals[F_VOLUME], 0);
            if r.is_none() { mask |= 1 << (invalid(F_VOLUME) - 5); }
            r
        };
        let exch: Option<&str> = match &vals[F_EXCHANGE] {
            Val::Absent | Val::Null => None,
            Val::Str(s) => Some(s),
            _ => { mask |= 1 << (invalid(F_EXCHANGE) - 5); None }
        };
        let cur = if !present(F_CURRENCY) { *b"USD" } else {
            match parse_currency(&vals[F_CURRENCY]) { Some(c) => c, None => { mask |= 1 << (invalid(F_CURRENCY) - 5); [0; 3] } }
        };
        let ts = if !present(F_TIMESTAMP) { mask |= 1 << (missing(F_TIMESTAMP) - 5); 0 } else {
            match parse_event_time(&vals[F_TIMESTAMP]) { Some(t) => t, None => { mask |= 1 << (invalid(F_TIMESTAMP) - 5); 0 } }
        };
        let code = if mask == 0 { OK } else { 5 + mask.trailing_zeros() as u8 };
        self.push_row(code, mask, sid, cid, sym.as_deref(), price, vol, exch, cur, ts, unknown);
    }
}
