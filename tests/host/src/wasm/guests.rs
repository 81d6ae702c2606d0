//! Builds the `.wasm` files the tests run: the plugin's two artifacts and the small test guests
//! in `tests/host/guests/`. Builds go to `target/host-wasm/` (a target directory of their own, so
//! they never wait on the lock of the `cargo test` that runs them) and are copied to
//! `target/host-wasm/out/<name>.wasm`. Each is built at most once per test process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Context as _, Result};

/// Which plugin artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Artifact {
    /// Default features: http-wasm + WASI (+ WasmEdge sockets when the plugin uses them).
    Traefik,
    /// `--no-default-features --features bridge`: + `oidc_guard_bridge_v1`.
    Bridge,
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

fn out_dir() -> PathBuf {
    workspace_root().join("target/host-wasm")
}

fn cargo_build(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--release", "--target", "wasm32-wasip1"])
        .args(args)
        .env("CARGO_TARGET_DIR", out_dir())
        .env("CC_wasm32_wasip1", "clang")
        .env("AR_wasm32_wasip1", "llvm-ar-14")
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!(
            "cargo build {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn once(key: &str, build: impl FnOnce() -> Result<PathBuf>) -> Result<PathBuf> {
    static BUILT: OnceLock<Mutex<HashMap<String, std::result::Result<PathBuf, String>>>> =
        OnceLock::new();
    let map = BUILT.get_or_init(Default::default);
    // Hold the lock while building: one cargo at a time from this process.
    let mut g = map
        .lock()
        .map_err(|_| anyhow!("guest build lock poisoned"))?;
    if let Some(r) = g.get(key) {
        return r.clone().map_err(|e| anyhow!("{e}"));
    }
    let r = build().map_err(|e| format!("{e:#}"));
    g.insert(key.to_string(), r.clone());
    r.map_err(|e| anyhow!("{e}"))
}

fn copy_out(built: &Path, name: &str) -> Result<PathBuf> {
    let dst_dir = out_dir().join("out");
    std::fs::create_dir_all(&dst_dir)?;
    let dst = dst_dir.join(format!("{name}.wasm"));
    // Copy then rename, so a reader never sees a half-written file.
    let tmp = dst_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::copy(built, &tmp).with_context(|| format!("copying {}", built.display()))?;
    std::fs::rename(&tmp, &dst).with_context(|| format!("renaming to {}", dst.display()))?;
    Ok(dst)
}

/// The plugin artifact, built from the working tree (or taken from `OIDC_GUARD_WASM` /
/// `OIDC_GUARD_BRIDGE_WASM` when set, e.g. to test the files `make build` wrote).
///
/// # Errors
/// When the build fails.
pub fn plugin(kind: Artifact) -> Result<PathBuf> {
    let var = match kind {
        Artifact::Traefik => "OIDC_GUARD_WASM",
        Artifact::Bridge => "OIDC_GUARD_BRIDGE_WASM",
    };
    if let Ok(p) = std::env::var(var) {
        return Ok(PathBuf::from(p));
    }
    once(&format!("plugin-{kind:?}"), || {
        let name = match kind {
            Artifact::Traefik => "oidc-guard",
            Artifact::Bridge => "oidc-guard-bridge",
        };
        // Both artifacts are the same binary with other features, written to the same file:
        // another test process may build the other one between our build and our copy, so the
        // copy is checked (the bridge artifact imports `oidc_guard_bridge_v1`, the Traefik one
        // does not) and the build repeated when it is the wrong one.
        for _ in 0..5 {
            match kind {
                Artifact::Traefik => cargo_build(&["-p", "oidc-guard"])?,
                Artifact::Bridge => cargo_build(&[
                    "-p",
                    "oidc-guard",
                    "--no-default-features",
                    "--features",
                    "bridge",
                ])?,
            }
            let out = copy_out(
                &out_dir().join("wasm32-wasip1/release/oidc-guard.wasm"),
                name,
            )?;
            let bytes = std::fs::read(&out)?;
            let is_bridge = bytes.windows(20).any(|w| w == b"oidc_guard_bridge_v1");
            if is_bridge == (kind == Artifact::Bridge) {
                return Ok(out);
            }
        }
        bail!("another process kept rebuilding the other artifact; set OIDC_GUARD_WASM / OIDC_GUARD_BRIDGE_WASM")
    })
}

/// A test guest of `tests/host/guests/` (binary `name`, e.g. `probe`).
///
/// # Errors
/// When the build fails.
pub fn test_guest(name: &str) -> Result<PathBuf> {
    // One build of the crate produces every test guest.
    once("test-guests", || {
        cargo_build(&["-p", "oidc-guard-test-guests", "--bins"])?;
        Ok(out_dir().join("wasm32-wasip1/release"))
    })?;
    once(&format!("guest-{name}"), || {
        copy_out(
            &out_dir().join(format!("wasm32-wasip1/release/{name}.wasm")),
            name,
        )
    })
}
