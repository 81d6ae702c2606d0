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

/// The Lua script of [`run_interleaved`]: every connection sends `BENCH_PATH_A` in even phases
/// and `BENCH_PATH_B` in odd ones, a phase being `BENCH_PHASE_MS` of `CLOCK_MONOTONIC` (so every
/// thread switches at the same moment), and the requests sent in each phase are counted. With
/// one request in flight per connection, requests sent in a phase are those answered in it,
/// give or take the connections.
const INTERLEAVE_LUA: &str = r#"local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local phase_ms = tonumber(os.getenv("BENCH_PHASE_MS"))
local req = {}
local threads = {}
counts = {}

local function phase()
  ffi.C.clock_gettime(1, ts)
  return math.floor((tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6) / phase_ms)
end

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  req[0] = wrk.format(nil, os.getenv("BENCH_PATH_A"))
  req[1] = wrk.format(nil, os.getenv("BENCH_PATH_B"))
end

function request()
  local p = phase()
  counts[p] = (counts[p] or 0) + 1
  return req[p % 2]
end

function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for p, n in pairs(t:get("counts")) do
      all[p] = (all[p] or 0) + n
    end
  end
  for p, n in pairs(all) do
    io.write(string.format("phase %d %d\n", p, n))
  end
end
"#;

/// Requests sent per phase by [`run_interleaved`], in phase order: `a[i]` and `b[i]` are the
/// `i`-th phase of each path (phases alternate A, B, A, B…; the first and last, partial, and the
/// one after the start are dropped).
#[derive(Debug, Clone, Default)]
pub struct Interleaved {
    /// Counts of the phases in order, each with whether it was path B's.
    pub phases: Vec<(bool, u64)>,
    /// Non-2xx/3xx responses (of either path).
    pub non2xx: u64,
    /// Socket errors.
    pub errors: u64,
}

impl Interleaved {
    /// Parses the script's `phase P N` lines and wrk's report.
    pub fn parse(text: &str) -> Interleaved {
        let mut raw: Vec<(u64, u64)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.strip_prefix("phase ")?.split_whitespace();
                Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
            })
            .collect();
        raw.sort_unstable();
        // The first phase is partial and the second starts cold (connections, instances); the
        // last is cut by the end of the run. Phases without a request cannot occur under load,
        // so a gap means a stalled run: it ends the series.
        let mut phases = Vec::new();
        for (i, &(p, n)) in raw.iter().enumerate().skip(2) {
            if i + 1 == raw.len() || raw.get(i - 1).is_some_and(|&(q, _)| q + 1 != p) {
                break;
            }
            phases.push((p % 2 == 1, n));
        }
        let r = parse(text);
        Interleaved {
            phases,
            non2xx: r.non2xx,
            errors: r.errors,
        }
    }

    /// B's throughput over A's, once per B phase, against the mean of the A phases either side
    /// of it (so a host that speeds up or slows down steadily moves both alike).
    pub fn ratios(&self) -> Vec<f64> {
        self.phases
            .windows(3)
            .filter(|w| w[1].0 && !w[0].0 && !w[2].0)
            .filter(|w| w[0].1 + w[2].1 > 0)
            .map(|w| w[1].1 as f64 * 2.0 / (w[0].1 + w[2].1) as f64)
            .collect()
    }

    /// B's requests over A's across whole A-B pairs of phases.
    pub fn overall(&self) -> f64 {
        let start = self.phases.iter().position(|p| !p.0).unwrap_or(0);
        let whole = &self.phases[start..];
        let whole = &whole[..whole.len() - whole.len() % 2];
        let (a, b) = whole.iter().fold(
            (0u64, 0u64),
            |(a, b), &(is_b, n)| {
                if is_b {
                    (a, b + n)
                } else {
                    (a + n, b)
                }
            },
        );
        if a == 0 {
            0.0
        } else {
            b as f64 / a as f64
        }
    }
}

/// Runs one wrk load of `secs` seconds that alternates between `path_a` and `path_b` of `base`
/// every `phase_ms` milliseconds, with the same headers: both paths see the same host, moment by
/// moment, where back-to-back runs of a few seconds each see a shared host's speed change
/// between them.
pub fn run_interleaved(
    base: &str,
    (path_a, path_b): (&str, &str),
    (threads, conns, secs): (u32, u32, u32),
    phase_ms: u32,
    headers: &[(String, String)],
    script_dir: &std::path::Path,
) -> Interleaved {
    let script = script_dir.join("interleave.lua");
    std::fs::write(&script, INTERLEAVE_LUA)
        .unwrap_or_else(|e| panic!("writing {}: {e}", script.display()));
    let mut cmd = command(threads, conns, secs);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.env("BENCH_PATH_A", path_a)
        .env("BENCH_PATH_B", path_b)
        .env("BENCH_PHASE_MS", phase_ms.to_string())
        .arg("-s")
        .arg(&script)
        .arg(format!("{base}{path_a}"));
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("wrk: {e} (run `make test-deps`)"));
    Interleaved::parse(&String::from_utf8_lossy(&out.stdout))
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

    #[test]
    fn interleaved_phases_pair_each_b_with_the_a_either_side() {
        // Phases 10..=17 (10 partial, 11 cold, 17 cut): 12..=16 are kept, A B A B A.
        let text = "phase 13 90\nphase 10 5\nphase 11 70\nphase 12 100\nphase 14 110\nphase 15 99\nphase 16 90\nphase 17 3\n  Non-2xx or 3xx responses: 2\n";
        let r = Interleaved::parse(text);
        assert_eq!(
            r.phases,
            vec![
                (false, 100),
                (true, 90),
                (false, 110),
                (true, 99),
                (false, 90)
            ]
        );
        assert_eq!(r.non2xx, 2);
        let q = r.ratios();
        assert_eq!(q.len(), 2);
        assert!((q[0] - 90.0 / 105.0).abs() < 1e-12);
        assert!((q[1] - 99.0 / 100.0).abs() < 1e-12);
        // Whole pairs from the first A: (100, 90), (110, 99); the last A has no B.
        assert!((r.overall() - 189.0 / 210.0).abs() < 1e-12);
        // A gap (a stalled run) ends the series.
        let gap = Interleaved::parse("phase 1 1\nphase 2 5\nphase 3 6\nphase 5 7\nphase 6 8\n");
        assert_eq!(gap.phases, vec![(true, 6)]);
    }
}
