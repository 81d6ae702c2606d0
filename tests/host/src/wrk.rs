//! Load generation with `wrk` (Debian package) against real Traefik on 127.0.0.1, for
//! `make bench`: bounded runs, several repetitions, medians and ratios.

use std::process::Command;

/// One wrk run's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkRun {
    /// Requests per second.
    pub rps: f64,
    /// Median latency in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: f64,
    /// Non-2xx/3xx responses.
    pub non2xx: u64,
    /// Socket errors (connect, read, write, timeout).
    pub errors: u64,
    /// Total requests.
    pub requests: u64,
}

/// Runs `wrk -t threads -c conns -d secs --latency` against `url` with extra headers.
pub fn run(url: &str, threads: u32, conns: u32, secs: u32, headers: &[(String, String)]) -> WrkRun {
    let mut cmd = command(threads, conns, secs);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    output(cmd.arg(url))
}

/// Runs wrk with a Lua script (e.g. one that varies a header per request) and environment
/// variables the script reads.
pub fn run_script(
    url: &str,
    threads: u32,
    conns: u32,
    secs: u32,
    script: &str,
    envs: &[(&str, &str)],
) -> WrkRun {
    let mut cmd = command(threads, conns, secs);
    cmd.envs(envs.iter().copied()).arg("-s").arg(script);
    output(cmd.arg(url))
}

fn command(threads: u32, conns: u32, secs: u32) -> Command {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency");
    cmd
}

fn output(cmd: &mut Command) -> WrkRun {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("wrk: {e} (run `make test-deps`)"));
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn ms(s: &str) -> f64 {
    let s = s.trim();
    if let Some(v) = s.strip_suffix("us") {
        v.parse::<f64>().unwrap_or(0.0) / 1000.0
    } else if let Some(v) = s.strip_suffix("ms") {
        v.parse().unwrap_or(0.0)
    } else if let Some(v) = s.strip_suffix('s') {
        v.parse::<f64>().unwrap_or(0.0) * 1000.0
    } else {
        0.0
    }
}

/// Parses wrk's text report.
pub fn parse(text: &str) -> WrkRun {
    let mut r = WrkRun::default();
    for line in text.lines() {
        let t = line.trim();
        let f: Vec<&str> = t.split_whitespace().collect();
        if t.starts_with("Requests/sec:") {
            r.rps = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        } else if t.starts_with("50%") {
            r.p50_ms = f.get(1).map(|v| ms(v)).unwrap_or(0.0);
        } else if t.starts_with("99%") {
            r.p99_ms = f.get(1).map(|v| ms(v)).unwrap_or(0.0);
        } else if t.starts_with("Non-2xx or 3xx responses:") {
            r.non2xx = f.last().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if t.starts_with("Socket errors:") {
            r.errors = t
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if t.contains("requests in") {
            r.requests = f.first().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    r
}

/// The median of `xs` (0 when empty).
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let text = "Running 2s test @ http://127.0.0.1:1/\n  2 threads and 16 connections\n  Latency Distribution\n     50%  412.00us\n     75%  1.20ms\n     90%  2.00ms\n     99%    5.31ms\n  40000 requests in 2.00s, 5.00MB read\n  Socket errors: connect 0, read 1, write 0, timeout 2\n  Non-2xx or 3xx responses: 7\nRequests/sec:  19999.50\n";
        let r = parse(text);
        assert_eq!(r.requests, 40000);
        assert!((r.rps - 19999.5).abs() < 1e-6);
        assert!((r.p50_ms - 0.412).abs() < 1e-9);
        assert!((r.p99_ms - 5.31).abs() < 1e-9);
        assert_eq!(r.non2xx, 7);
        assert_eq!(r.errors, 3);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
