//! The contract's field kinds on exact JSON text: the same rules as
//! `contract/reference.py`, value for value, with no binary float anywhere.
use std::borrow::Cow;

use crate::json::Val;

/// One field kind of `contract.schemas.FieldKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Decimal,
    EventTime,
    Symbol,
    Currency,
    Identifier,
    Text,
}

impl Kind {
    pub fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "integer" => Kind::Integer,
            "decimal" => Kind::Decimal,
            "event_time" => Kind::EventTime,
            "symbol" => Kind::Symbol,
            "currency" => Kind::Currency,
            "identifier" => Kind::Identifier,
            "text" => Kind::Text,
            _ => return None,
        })
    }
}

/// A field as the kernel needs it; Python builds it from a `FieldSpec`.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    pub kind: Kind,
    pub required: bool,
    /// integers: inclusive bounds, already clamped to int64
    pub int_min: i64,
    pub int_max: i64,
    /// decimals: digits in all, fractional digits, and bounds as value * 10^scale
    pub precision: u32,
    pub scale: u32,
    pub dec_exclusive_min: Option<i128>,
    pub dec_min: Option<i128>,
    pub dec_max: Option<i128>,
    /// the stored value when the field is absent (already through the field's own rule)
    pub default: Option<String>,
    pub missing_reason: String,
    pub invalid_reason: String,
}

/// The typed value of one valid field; text borrows from the line where it can.
pub enum Typed<'v> {
    Int(i64),
    Dec(i128),
    /// microseconds since 1970 UTC; `naive` when the text had no zone (local time)
    Time { us: i64, naive: bool },
    Str(Cow<'v, str>),
}

/// Whether the reference must decide a field instead of the kernel.
pub struct Unsure;

const ASCII_SPACE: &[u8] = b" \t\n\r\x0c\x0b";

#[inline]
pub fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && ASCII_SPACE.contains(&(c as u8)))
}

#[inline]
fn all_digits(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(u8::is_ascii_digit)
}

#[inline]
fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&c| c == b'0').count();
    &b[n..]
}

/// The value of at most 19 ASCII digits (the callers check the count).
#[inline]
fn digits_value(b: &[u8]) -> u64 {
    debug_assert!(b.len() <= 19);
    b.iter().fold(0u64, |n, &c| n * 10 + (c - b'0') as u64)
}

fn is_integer_text(t: &str) -> bool {
    !t.bytes().any(|c| matches!(c, b'.' | b'e' | b'E'))
}

/// Integer rule: a JSON integer or a string of ASCII digits, within the field's bounds.
pub fn integer(v: &Val, f: &Field) -> Option<i64> {
    let (negative, digits): (bool, &[u8]) = match v {
        Val::Num(t) => {
            let b = t.as_bytes();
            let (negative, digits) = if b[0] == b'-' { (true, &b[1..]) } else { (false, b) };
            // the scanner checked the number's grammar: digits alone make an integer
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            (negative, digits)
        }
        Val::Str(s) => {
            if !all_digits(s.as_bytes()) {
                return None;
            }
            (false, s.as_bytes())
        }
        _ => return None,
    };
    let significant = strip_zeros(digits);
    if significant.len() > 19 {
        return None;
    }
    let n = digits_value(significant) as i128;
    let n = if negative { -n } else { n };
    if n < f.int_min as i128 || n > f.int_max as i128 {
        return None;
    }
    Some(n as i64)
}

/// Decimal rule: a JSON number or a trimmed numeric string, exact, as value * 10^scale.
pub fn decimal(v: &Val, f: &Field) -> Option<i128> {
    let text: &str = match v {
        Val::Num(t) => t,
        Val::Str(s) => trim(s),
        _ => return None,
    };
    let b = text.as_bytes();
    let mut i = 0;
    let negative = b.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let whole_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let whole = &b[whole_start..i];
    if whole.is_empty() {
        return None;
    }
    let mut fraction: &[u8] = &[];
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        fraction = &b[fs..i];
        if fraction.is_empty() {
            return None;
        }
    }
    let mut exponent_digits: Option<(bool, &[u8])> = None;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let mut exp_negative = false;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            exp_negative = b[i] == b'-';
            i += 1;
        }
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == es {
            return None;
        }
        exponent_digits = Some((exp_negative, &b[es..i]));
    }
    if i != b.len() {
        return None;
    }
    // digits of whole+fraction without leading zeros, then the coefficient without trailing
    let total = whole.len() + fraction.len();
    let at = |k: usize| -> u8 {
        if k < whole.len() {
            whole[k]
        } else {
            fraction[k - whole.len()]
        }
    };
    let lead = (0..total).take_while(|&k| at(k) == b'0').count();
    let scaled: i128 = if lead == total {
        0 // zero, whatever its exponent; its sign does not survive
    } else {
        let mut exponent: i64 = 0;
        if let Some((exp_negative, digits)) = exponent_digits {
            let significant = strip_zeros(digits);
            if significant.len() > 18 {
                return None;
            }
            exponent = digits_value(significant) as i64;
            if exp_negative {
                exponent = -exponent;
            }
        }
        let mut end = total;
        while at(end - 1) == b'0' {
            end -= 1;
        }
        let coefficient_len = (end - lead) as i64;
        exponent += (total - end) as i64 - fraction.len() as i64;
        let scale = f.scale as i64;
        if exponent < -scale {
            return None;
        }
        if coefficient_len + exponent > f.precision as i64 - scale {
            return None;
        }
        // bounded by `precision` (at most 38) digits by the two checks above
        let mut n: i128 = 0;
        for k in lead..end {
            n = n * 10 + (at(k) - b'0') as i128;
        }
        for _ in 0..(exponent + scale) {
            n *= 10;
        }
        if negative {
            -n
        } else {
            n
        }
    };
    if let Some(lo) = f.dec_exclusive_min {
        if scaled <= lo {
            return None;
        }
    }
    if let Some(lo) = f.dec_min {
        if scaled < lo {
            return None;
        }
    }
    if let Some(hi) = f.dec_max {
        if scaled > hi {
            return None;
        }
    }
    Some(scaled)
}

const US_PER_SEC: i64 = 1_000_000;
const US_PER_DAY: i64 = 86_400 * US_PER_SEC;
/// unix micros of 0001-01-01T00:00:00 and of 9999-12-31T23:59:59.999999
const MIN_UNIX_US: i64 = -719_162 * US_PER_DAY;
const MAX_UNIX_US: i64 = 2_932_897 * US_PER_DAY - 1;
const EPOCH_MILLIS_FROM: i64 = 100_000_000_000;

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
        // year 0 is a leap year in the proleptic Gregorian calendar, as the reference has it
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn epoch(digits: &[u8]) -> Option<i64> {
    let significant = strip_zeros(digits);
    if significant.len() > 16 {
        return None;
    }
    let n = digits_value(significant) as i64;
    // 16 digits of milliseconds can overflow i64 microseconds: multiply checked
    let us = if n < EPOCH_MILLIS_FROM { n.checked_mul(US_PER_SEC) } else { n.checked_mul(1000) }?;
    (us <= MAX_UNIX_US).then_some(us)
}

#[inline]
fn two_digits(b: &[u8], i: usize) -> Option<i64> {
    let (x, y) = (b[i], b[i + 1]);
    (x.is_ascii_digit() && y.is_ascii_digit()).then(|| ((x - b'0') * 10 + (y - b'0')) as i64)
}

/// ISO-8601 text; `Err(Unsure)` for a naive time the kernel cannot place in a zone by itself.
fn iso(s: &str, naive_is_utc: bool) -> Result<Option<(i64, bool)>, Unsure> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return Ok(None);
    }
    let parts = (|| {
        let year = two_digits(b, 0)? * 100 + two_digits(b, 2)?;
        if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        if !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        Some((
            year,
            two_digits(b, 5)?,
            two_digits(b, 8)?,
            two_digits(b, 11)?,
            two_digits(b, 14)?,
            two_digits(b, 17)?,
        ))
    })();
    let Some((year, month, day, hh, mm, ss)) = parts else { return Ok(None) };
    let mut i = 19;
    let mut micros = 0i64;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n = i - fs;
        if n == 0 || n > 6 {
            return Ok(None);
        }
        for k in 0..6 {
            micros = micros * 10 + if k < n { (b[fs + k] - b'0') as i64 } else { 0 };
        }
    }
    let mut offset_us = 0i64;
    let mut naive = true;
    if i < b.len() {
        naive = false;
        match b[i] {
            b'Z' | b'z' => i += 1,
            b'+' | b'-' => {
                if b.len() != i + 6 || b[i + 3] != b':' {
                    return Ok(None);
                }
                let (Some(oh), Some(om)) = (two_digits(b, i + 1), two_digits(b, i + 4)) else {
                    return Ok(None);
                };
                if oh > 23 || om > 59 {
                    return Ok(None);
                }
                offset_us = (oh * 60 + om) * 60 * US_PER_SEC;
                if b[i] == b'-' {
                    offset_us = -offset_us;
                }
                i += 6;
            }
            _ => return Ok(None),
        }
    }
    if i != b.len() || hh > 23 || mm > 59 || ss > 59 {
        return Ok(None);
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Ok(None);
    }
    let local = days_from_civil(year, month, day) * US_PER_DAY
        + ((hh * 60 + mm) * 60 + ss) * US_PER_SEC
        + micros;
    if naive && !naive_is_utc {
        // the zone's offset moves the instant; at the edges of the range (and for year 0,
        // which borrows the offset of 0001-01-01) only the reference can tell validity
        if year <= 1 || year >= 9999 {
            return Err(Unsure);
        }
        return Ok(Some((local, true)));
    }
    let us = local - offset_us;
    Ok((MIN_UNIX_US..=MAX_UNIX_US).contains(&us).then_some((us, false)))
}

/// Event-time rule: ISO-8601 / RFC 3339, naive local, or epoch seconds / milliseconds.
pub fn event_time(v: &Val, naive_is_utc: bool) -> Result<Option<(i64, bool)>, Unsure> {
    match v {
        Val::Num(t) => {
            if !is_integer_text(t) {
                return Ok(None);
            }
            let b = t.as_bytes();
            if b[0] == b'-' {
                // a negative epoch fails; "-0" is the integer zero
                return Ok(if *t == "-0" { epoch(b"0").map(|us| (us, false)) } else { None });
            }
            Ok(epoch(b).map(|us| (us, false)))
        }
        Val::Str(s) => {
            let t = trim(s);
            if all_digits(t.as_bytes()) {
                Ok(epoch(t.as_bytes()).map(|us| (us, false)))
            } else {
                iso(t, naive_is_utc)
            }
        }
        _ => Ok(None),
    }
}

fn string_value<'v>(v: &'v Val) -> Option<&'v str> {
    match v {
        Val::Str(s) => Some(s),
        _ => None,
    }
}

fn upper(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|c| c.is_ascii_lowercase()) {
        Cow::Owned(s.to_ascii_uppercase())
    } else {
        Cow::Borrowed(s)
    }
}

pub fn symbol<'v>(v: &'v Val) -> Option<Cow<'v, str>> {
    let s = trim(string_value(v)?);
    let b = s.as_bytes();
    let ok = (1..=12).contains(&b.len())
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
    ok.then(|| upper(s))
}

pub fn currency<'v>(v: &'v Val) -> Option<Cow<'v, str>> {
    let s = trim(string_value(v)?);
    (s.len() == 3 && s.bytes().all(|c| c.is_ascii_alphabetic())).then(|| upper(s))
}

pub fn identifier<'v>(v: &'v Val) -> Option<Cow<'v, str>> {
    match v {
        Val::Num(t) => {
            if !is_integer_text(t) {
                return None;
            }
            // the integer's decimal text: JSON has no leading zeros, so only "-0" changes
            Some(Cow::Borrowed(if *t == "-0" { "0" } else { t }))
        }
        Val::Str(s) => {
            let t = trim(s);
            (!t.is_empty()).then_some(Cow::Borrowed(t))
        }
        _ => None,
    }
}

pub fn text<'v>(v: &'v Val) -> Option<Cow<'v, str>> {
    string_value(v).map(Cow::Borrowed)
}

/// Apply a field's rule to a present value: Ok(Some) valid, Ok(None) invalid.
pub fn convert<'v>(v: &'v Val, f: &Field, naive_is_utc: bool) -> Result<Option<Typed<'v>>, Unsure> {
    Ok(match f.kind {
        Kind::Integer => integer(v, f).map(Typed::Int),
        Kind::Decimal => decimal(v, f).map(Typed::Dec),
        Kind::EventTime => event_time(v, naive_is_utc)?.map(|(us, naive)| Typed::Time { us, naive }),
        Kind::Symbol => symbol(v).map(Typed::Str),
        Kind::Currency => currency(v).map(Typed::Str),
        Kind::Identifier => identifier(v).map(Typed::Str),
        Kind::Text => text(v).map(Typed::Str),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price() -> Field {
        Field {
            name: "price".into(),
            kind: Kind::Decimal,
            required: true,
            int_min: 0,
            int_max: 0,
            precision: 18,
            scale: 6,
            dec_exclusive_min: Some(0),
            dec_min: None,
            dec_max: Some(999_999_999_999_999_999),
            default: None,
            missing_reason: "missing_price".into(),
            invalid_reason: "invalid_price".into(),
        }
    }

    #[test]
    fn decimals_are_exact() {
        let f = price();
        let num = |t: &'static str| decimal(&Val::Num(t), &f);
        assert_eq!(num("12.5"), Some(12_500_000));
        assert_eq!(num("1.5e-3"), Some(1_500));
        assert_eq!(num("1.2500000000"), Some(1_250_000));
        assert_eq!(num("1e-7"), None);
        assert_eq!(num("0"), None);
        assert_eq!(num("999999999999.999999"), Some(999_999_999_999_999_999));
        assert_eq!(num("1000000000000"), None);
        assert_eq!(decimal(&Val::Str(Cow::Borrowed(" 7.25 ")), &f), Some(7_250_000));
    }

    #[test]
    fn times() {
        let t = |s: &'static str| event_time(&Val::Str(Cow::Borrowed(s)), true).ok().flatten();
        assert_eq!(t("1970-01-01T00:00:00Z"), Some((0, false)));
        assert_eq!(t("1970-01-01 00:00:01"), Some((1_000_000, false)));
        assert_eq!(t("1970-01-01T05:30:00+05:30"), Some((0, false)));
        assert_eq!(t("2023-02-29T00:00:00Z"), None);
        assert_eq!(t("100000000000"), Some((100_000_000_000_000, false)));
        assert_eq!(t("253402300799999"), Some((253_402_300_799_999_000, false)));
        assert_eq!(t("253402300800000"), None);
        assert_eq!(t("9999999999999999"), None); // would overflow i64 microseconds
        assert_eq!(t("9223372036854776"), None);
        assert!(event_time(&Val::Str(Cow::Borrowed("0001-01-01 00:00:00")), false).is_err());
    }
}
