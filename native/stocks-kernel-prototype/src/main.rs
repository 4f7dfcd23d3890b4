mod rules;
mod scan;
mod serde_path;

use rules::{Columns, Val};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

type LineParser = for<'a> fn(&'a str, &mut [Val<'a>; 8]) -> Result<u32, scan::Whole>;

fn run(lines: &[(usize, &[u8])], parser: LineParser) -> Columns {
    let mut cols = Columns::with_capacity(lines.len());
    for &(_, line) in lines {
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(_) => { cols.push_whole(rules::INVALID_UTF8); continue; }
        };
        let mut vals: [Val; 8] = Default::default();
        match parser(text, &mut vals) {
            Ok(unknown) => cols.decide(&vals, unknown),
            Err(scan::Whole::InvalidJson) => cols.push_whole(rules::INVALID_JSON),
            Err(scan::Whole::NotObject) => cols.push_whole(rules::NOT_AN_OBJECT),
            Err(scan::Whole::Duplicate) => cols.push_whole(rules::DUPLICATE_KEY),
        }
    }
    cols
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map(String::as_str)
        .unwrap_or("/work/main/.cache/bench/data-s1000000-f100000-seed42/stocks/part-00000.jsonl");
    let sample_n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let out_prefix = args.get(3).map(String::as_str).unwrap_or("/tmp/rustkernel/out");

    let data = std::fs::read(path).expect("read");
    let mut body: &[u8] = &data;
    if body.starts_with(b"\xef\xbb\xbf") { body = &body[3..]; }
    // split lines (excluded from timing, like the file read)
    let mut lines: Vec<(usize, &[u8])> = Vec::new();
    for (no, mut l) in body.split(|&c| c == b'\n').enumerate() {
        if l.last() == Some(&b'\r') { l = &l[..l.len() - 1]; }
        if l.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)) { continue; }
        lines.push((no + 1, l));
    }
    eprintln!("{} non-blank lines, {} bytes", lines.len(), data.len());

    let parsers: [(&str, LineParser); 2] = [("scanner", scan::parse_line), ("serde_json", serde_path::parse_line)];
    let mut results = Vec::new();
    for (name, p) in parsers {
        let mut best = f64::MAX;
        let mut cols = None;
        for _ in 0..3 {
            let t = Instant::now();
            let c = run(&lines, p);
            let dt = t.elapsed().as_secs_f64();
            best = best.min(dt);
            cols = Some(c);
        }
        let cols = cols.unwrap();
        println!("{name}: best of 3 = {:.1} ms, {:.3} us/record", best * 1e3, best * 1e6 / lines.len() as f64);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for &r in &cols.reason { *counts.entry(rules::reason_name(r)).or_default() += 1; }
        let unknown_total: u64 = cols.unknown_keys.iter().map(|&u| u as u64).sum();
        let rows_with_unknown = cols.unknown_keys.iter().filter(|&&u| u > 0).count();
        println!("  first-reason counts: {counts:?}");
        println!("  unknown keys: {unknown_total} in {rows_with_unknown} rows");
        let mut f = std::io::BufWriter::new(std::fs::File::create(format!("{out_prefix}_{name}.tsv")).unwrap());
        for (k, &(no, _)) in lines.iter().enumerate().take(sample_n) {
            let r = cols.reason[k];
            if r == 0 {
                writeln!(f, "{no}\tok\t{}\t{}\t{}", cols.stock_id[k], cols.price[k], cols.event_time[k]).unwrap();
            } else {
                writeln!(f, "{no}\t{}\t\t\t", rules::reason_name(r)).unwrap();
            }
        }
        results.push(cols);
    }
    // cross-check the two parsers on every line
    let (a, b) = (&results[0], &results[1]);
    let mut diff = 0;
    for k in 0..lines.len() {
        let same = a.reason[k] == b.reason[k] && a.reason_mask[k] == b.reason_mask[k] && a.stock_id[k] == b.stock_id[k]
            && a.price[k] == b.price[k] && a.event_time[k] == b.event_time[k] && a.volume[k] == b.volume[k]
            && a.unknown_keys[k] == b.unknown_keys[k] && a.currency[k] == b.currency[k];
        if !same {
            diff += 1;
            if diff <= 10 {
                println!("  parser disagreement line {}: scanner={} serde={} :: {}", lines[k].0,
                    rules::reason_name(a.reason[k]), rules::reason_name(b.reason[k]), String::from_utf8_lossy(lines[k].1));
            }
        }
    }
    println!("scanner vs serde_json: {} of {} rows differ", diff, lines.len());
}
