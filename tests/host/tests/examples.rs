//! Every plugin configuration in `examples/` is accepted by the configuration parser, in the
//! form Traefik hands it to the guest (the file provider turns scalars into strings; the
//! Kubernetes CRD keeps native JSON types and resolves `urn:k8s:secret:` values).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use oidc_guard::config::{Config, Platform};
use oidc_guard_testhost::util::workspace_root;
use serde_json::Value;

/// What Traefik's file provider does to plugin settings: scalars become strings (floats with
/// six decimals), lists keep their elements' types, maps recurse.
fn stringify(v: &Value, in_list: bool) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), stringify(v, false)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| stringify(v, true)).collect()),
        Value::Bool(b) if !in_list => Value::String(b.to_string()),
        Value::Number(n) if !in_list => Value::String(match n.as_i64() {
            Some(i) => i.to_string(),
            None => format!("{:.6}", n.as_f64().unwrap_or(0.0)),
        }),
        other => other.clone(),
    }
}

fn parse(plugin: &Value, origin: &str) {
    let json = serde_json::to_vec(plugin).unwrap();
    // The secrets the examples name through `<key>Env`; every other variable is unset.
    let env = |k: &str| {
        [
            "OIDC_CLIENT_SECRET",
            "OIDC_SESSION_KEY",
            "REDIS_PASSWORD",
            "DEMO_SESSION_KEY",
        ]
        .contains(&k)
        .then(|| "an-environment-secret-of-at-least-32-bytes".to_string())
    };
    let read = |_: &str| Ok(b"a-file-secret-of-at-least-32-bytes-long\n".to_vec());
    if let Err(e) = Config::parse(&json, &env, &read, Platform::default()) {
        panic!("{origin}: refused: {e}");
    }
}

fn plugins_in(doc: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(mws) = doc.pointer("/http/middlewares").and_then(Value::as_object) {
        for mw in mws.values() {
            if let Some(p) = mw.get("plugin").and_then(Value::as_object) {
                out.extend(p.values().cloned());
            }
        }
    }
    if doc.get("kind").and_then(Value::as_str) == Some("Middleware") {
        if let Some(p) = doc.pointer("/spec/plugin").and_then(Value::as_object) {
            out.extend(p.values().cloned());
        }
    }
    out
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\n---")
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            serde_yaml_ng::from_str::<Value>(d)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

#[test]
fn file_provider_examples_parse() {
    let root = workspace_root();
    let mut seen = 0;
    for dir in ["examples/traefik", "examples/demo"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yml") {
                continue;
            }
            for doc in yaml_docs(&path) {
                for plugin in plugins_in(&doc) {
                    parse(&stringify(&plugin, false), &path.display().to_string());
                    seen += 1;
                }
            }
        }
    }
    assert!(seen >= 4, "found only {seen} plugin configurations");
}

#[test]
fn kubernetes_example_parses() {
    let path = workspace_root().join("examples/kubernetes/middleware.yaml");
    let mut seen = 0;
    for doc in yaml_docs(&path) {
        for mut plugin in plugins_in(&doc) {
            resolve_secrets(&mut plugin);
            parse(&plugin, "examples/kubernetes/middleware.yaml");
            seen += 1;
        }
    }
    assert_eq!(seen, 1);
}

fn resolve_secrets(v: &mut Value) {
    match v {
        Value::String(s) if s.starts_with("urn:k8s:secret:") => {
            *s = "a-kubernetes-secret-of-at-least-32-bytes".into()
        }
        Value::Object(m) => m.values_mut().for_each(resolve_secrets),
        Value::Array(a) => a.iter_mut().for_each(resolve_secrets),
        _ => {}
    }
}

#[test]
fn traefik_yml_test_data_parses() {
    let text = std::fs::read_to_string(workspace_root().join(".traefik.yml")).unwrap();
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    for key in [
        "displayName",
        "type",
        "runtime",
        "wasmPath",
        "summary",
        "testData",
    ] {
        assert!(doc.get(key).is_some(), ".traefik.yml lacks {key}");
    }
    assert_eq!(doc["runtime"], "wasm");
    assert_eq!(doc["type"], "middleware");
    parse(&stringify(&doc["testData"], false), ".traefik.yml testData");
}
