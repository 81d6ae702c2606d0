//! Small helpers shared by the launchers: free ports, scratch directories, waiting, paths.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The workspace root (the plugin crate's directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// A free TCP port on 127.0.0.1 for a server started later (Traefik, redis-server, …).
///
/// Taken from 10000–20999, below the kernel's ephemeral range (32768+ by default) and below the
/// cluster launcher's range (21000+), so the client side of some other connection cannot grab
/// it between this check and the server's bind (that race made CI fail with "address already
/// in use"); a per-process counter, seeded by the pid, never hands out the same port twice.
pub fn free_port() -> u16 {
    const BASE: u32 = 10_000;
    const SPAN: u32 = 11_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port =
            u16::try_from(BASE + seed.wrapping_add(n.wrapping_mul(13)) % SPAN).expect("< 21000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {BASE}..{}", BASE + SPAN)
}

/// A fresh scratch directory under `target/test-tmp/`, removed by the caller's `Drop` if wanted.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = workspace_root()
        .join("target/test-tmp")
        .join(format!("{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    dir
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends a signal to a pid with the `kill` command (no unsafe code in tests).
pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Path of a built artifact under `dist/`; panics with a hint when it is missing.
pub fn artifact(name: &str) -> PathBuf {
    let p = workspace_root().join("dist").join(name);
    if !p.exists() {
        panic!("{} is missing: run `make build` first", p.display());
    }
    p
}

/// Parses the echo backend's JSON document: the headers it received, lower-cased names.
pub fn echoed_headers(body: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v.get("headers")
        .and_then(|h| h.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| {
                    let k = p.get(0)?.as_str()?.to_ascii_lowercase();
                    let v = p.get(1)?.as_str()?.to_string();
                    Some((k, v))
                })
                .collect()
        })
        .unwrap_or_default()
}
