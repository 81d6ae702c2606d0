//! The middleware JSON flattened onto the key table: every key known (by its canonical path or
//! an alias, any ASCII case), every unknown key an error that names the closest known key.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::keys::{self, KeySpec, Kind};
use super::KeyError;

/// A value as the user wrote it.
#[derive(Debug, Clone)]
pub(crate) struct Given {
    /// The path as spelled in the configuration (for error messages).
    pub spelled: String,
    pub value: Value,
}

/// The configuration after the unknown-key check, indexed by canonical path.
#[derive(Debug, Default)]
pub(crate) struct Raw {
    pub map: BTreeMap<&'static str, Given>,
}

impl Raw {
    /// Flattens the top-level object. `null` and `{}` give an empty map (the caller reports
    /// "nothing configured"); any other non-object is an error.
    pub(crate) fn from_json(root: &Value, errors: &mut Vec<KeyError>) -> Raw {
        let mut raw = Raw::default();
        match root {
            Value::Null => {}
            Value::Object(obj) => raw.walk(obj, "", "", errors),
            other => errors.push(KeyError::new(
                "(configuration)",
                format!(
                    "expected a map of settings, found {}",
                    super::value::describe(other)
                ),
            )),
        }
        raw
    }

    fn walk(
        &mut self,
        obj: &Map<String, Value>,
        spelled_prefix: &str,
        canon_prefix: &str,
        errors: &mut Vec<KeyError>,
    ) {
        for (key, value) in obj {
            let spelled = join(spelled_prefix, key);
            let canon = join(canon_prefix, key);
            if let Some((spec, _)) = keys::resolve(&canon) {
                self.insert(spec, spelled, value.clone(), errors);
            } else if let Some(section) = keys::section(&canon) {
                match value {
                    Value::Object(inner) => self.walk(inner, &spelled, &section, errors),
                    other => errors.push(KeyError::new(
                        &spelled,
                        format!(
                            "expected a map of settings ({section}.*), found {}",
                            super::value::describe(other)
                        ),
                    )),
                }
            } else {
                let hint = match suggest(&canon) {
                    Some(s) => format!("unknown key; did you mean {s}?"),
                    None => "unknown key (see docs/config-reference.md)".to_string(),
                };
                errors.push(KeyError::new(&spelled, hint));
            }
        }
    }

    fn insert(
        &mut self,
        spec: &'static KeySpec,
        spelled: String,
        value: Value,
        errors: &mut Vec<KeyError>,
    ) {
        if let Some(prev) = self.map.get(spec.path) {
            errors.push(KeyError::new(
                &spelled,
                format!(
                    "given twice: as {} and as {} (both mean {})",
                    prev.spelled, spelled, spec.path
                ),
            ));
            return;
        }
        if value.is_null() && spec.kind != Kind::Compat {
            errors.push(KeyError::new(
                &spelled,
                "has no value (null); give a value or remove the key",
            ));
            return;
        }
        self.map.insert(spec.path, Given { spelled, value });
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The known name closest to `unknown`, if it is close enough to be a plausible typo.
///
/// Compares both the whole path and its last segment (so `address` at the top level suggests
/// `redis.address`), ignoring ASCII case.
pub(crate) fn suggest(unknown: &str) -> Option<&'static str> {
    let u = unknown.to_ascii_lowercase();
    let u_last = u.rsplit('.').next().unwrap_or(&u).to_string();
    let mut best: Option<(usize, &'static str)> = None;
    for name in keys::all_names() {
        let n = name.to_ascii_lowercase();
        let n_last = n.rsplit('.').next().unwrap_or(&n);
        let whole = levenshtein(&u, &n);
        // A matching last segment in another section costs one edit for the move.
        let last = levenshtein(&u_last, n_last) + usize::from(u != u_last || n != n_last);
        let d = whole.min(last);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, name));
        }
    }
    let (d, name) = best?;
    let limit = (u_last.chars().count() / 3).max(2);
    (d <= limit).then_some(name)
}

/// Edit distance (insertions, deletions, substitutions) between two strings.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        if let Some(first) = cur.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            if let Some(c) = cur.get_mut(j + 1) {
                *c = sub.min(del).min(ins);
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0)
}
