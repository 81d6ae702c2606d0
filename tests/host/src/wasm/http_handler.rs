//! The `http_handler` host module exactly as http-wasm-host-go v0.7.0 with its `nethttp` host
//! implements it for Traefik (platform report §5): signatures, buffer conventions, traps.
//!
//! A Go `panic` inside a host function becomes a trap of the guest; here that is an `Err`
//! returned from the host function, with Go's message where it matters.

use std::sync::atomic::Ordering;

use wasmtime::{Caller, Linker};

use super::gohttp::{GoHeader, RequestTarget, TRAILER_PREFIX};
use super::memory;
use super::state::{feature, InstanceState, LogRecord, RequestState};

const MODULE: &str = "http_handler";

type Res<T> = wasmtime::Result<T>;

/// The current request, or the trap Traefik produces when a request function is called outside
/// a request (during `_start`): a nil type assertion in `requestStateFromContext`.
fn req(st: &mut InstanceState) -> Res<&mut RequestState> {
    match st.req.as_deref_mut() {
        Some(r) => Ok(r),
        None => wasmtime::bail!(
            "interface conversion: interface {{}} is nil, not *handler.requestState (no request in context)"
        ),
    }
}

/// `mustBeforeNext`.
fn must_before_next(r: &RequestState, op: &str, kind: &str) -> Res<()> {
    if r.after_next {
        wasmtime::bail!("can't {op} {kind} after next handler");
    }
    Ok(())
}

/// `mustBeforeNextOrFeature`.
fn must_before_next_or_feature(r: &RequestState, feature: u32, op: &str, kind: &str) -> Res<()> {
    if r.after_next && r.features & feature == 0 {
        let name = match feature {
            feature::BUFFER_REQUEST => "buffer_request",
            feature::BUFFER_RESPONSE => "buffer_response",
            _ => "trailers",
        };
        wasmtime::bail!("can't {op} {kind} after next handler unless {name} is enabled");
    }
    Ok(())
}

/// `mustHeaderMutable`.
fn must_header_mutable(r: &RequestState, op: &str, kind: i32) -> Res<()> {
    match kind {
        0 => must_before_next(r, op, "request header"),
        2 => must_before_next(r, op, "request trailer"),
        1 => must_before_next_or_feature(r, feature::BUFFER_RESPONSE, op, "response header"),
        3 => must_before_next_or_feature(r, feature::BUFFER_RESPONSE, op, "response trailer"),
        _ => wasmtime::bail!("unsupported header kind: {kind}"),
    }
}

/// Notes the wasm operators run since the last host call, before `call`
/// ([`super::engine::traces_wasm_ops`]).
fn mark(caller: &mut Caller<'_, InstanceState>, call: &'static str) {
    if !super::engine::traces_wasm_ops() {
        return;
    }
    if let Ok(fuel) = caller.get_fuel() {
        let st = caller.data_mut();
        let ran = st.ops_mark.saturating_sub(fuel);
        st.ops_mark = fuel;
        st.ops_trace.push((call, ran));
    }
}

/// A scalar getter: returns the full length; writes only when it fits and is non-empty
/// (`writeIfUnderLimit`; wazero's `Memory.Write` result is ignored, so an out-of-range buffer
/// silently receives nothing).
fn scalar(
    mut caller: Caller<'_, InstanceState>,
    buf: i32,
    limit: i32,
    value: impl FnOnce(&mut InstanceState) -> Res<Vec<u8>>,
) -> Res<i32> {
    let mem = memory::of(&mut caller)?;
    let (data, st) = mem.data_and_store_mut(&mut caller);
    let v = value(st)?;
    let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
    if len > limit as u32 || len == 0 {
        return Ok(len as i32);
    }
    memory::try_write(data, buf as u32, &v);
    Ok(len as i32)
}

/// `writeNULTerminated`: `count<<32 | byte_len`, byte_len including one NUL per entry; nothing
/// written when it does not fit; traps when the region is outside memory.
fn nul_terminated(data: &mut [u8], buf: i32, limit: i32, items: &[Vec<u8>]) -> Res<i64> {
    if items.is_empty() {
        return Ok(0);
    }
    let count = items.len() as u64;
    let byte_len: u64 = items.iter().map(|s| s.len() as u64 + 1).sum();
    let result = (count << 32 | byte_len) as i64;
    if byte_len > u64::from(limit as u32) {
        return Ok(result);
    }
    let dst = match memory::range(data.len(), buf as u32, byte_len as u32)
        .and_then(|r| data.get_mut(r))
    {
        Some(d) => d,
        None => wasmtime::bail!("out of memory"),
    };
    let mut off = 0;
    for s in items {
        if let Some(d) = dst.get_mut(off..off + s.len()) {
            d.copy_from_slice(s);
        }
        off += s.len();
        if let Some(d) = dst.get_mut(off) {
            *d = 0;
        }
        off += 1;
    }
    Ok(result)
}

fn read_name(data: &[u8], ptr: i32, len: i32) -> Res<Vec<u8>> {
    if len == 0 {
        wasmtime::bail!("HTTP header name cannot be empty");
    }
    Ok(memory::read(data, ptr as u32, len as u32, "name")?.to_vec())
}

fn read_string(data: &[u8], ptr: i32, len: i32, what: &str) -> Res<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    Ok(memory::read(data, ptr as u32, len as u32, what)?.to_vec())
}

fn is_trailer_key(k: &[u8]) -> bool {
    k.starts_with(TRAILER_PREFIX)
}

/// `GetRequestHeaderNames`: `Host` first when `r.Host` is set, then the header keys without
/// trailers, sorted (Go sorts the canonical names, the handler lower-cases them afterwards).
fn request_header_names(r: &RequestState) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    if !r.host.is_empty() {
        names.push(b"Host".to_vec());
    }
    names.extend(r.header.keys().into_iter().filter(|k| !is_trailer_key(k)));
    names.sort();
    names
}

fn response_header_names(h: &GoHeader) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = h
        .keys()
        .into_iter()
        .filter(|k| !is_trailer_key(k))
        .collect();
    names.sort();
    names
}

fn trailer_names(h: &GoHeader) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = h
        .keys()
        .into_iter()
        .filter_map(|k| k.strip_prefix(TRAILER_PREFIX).map(<[u8]>::to_vec))
        .collect();
    names.sort();
    names
}

fn trailer_key(name: &[u8]) -> Vec<u8> {
    let mut k = TRAILER_PREFIX.to_vec();
    k.extend_from_slice(name);
    k
}

/// The response header map as the guest mutates it (`s.w.Header()`; the buffering writer
/// delegates `Header()` to the client writer).
fn resp_header(r: &mut RequestState) -> &mut GoHeader {
    &mut r.client.header
}

/// Adds the `http_handler` module to `linker`.
///
/// # Errors
/// When a definition clashes.
pub(crate) fn add(linker: &mut Linker<InstanceState>) -> Res<()> {
    linker.func_wrap(
        MODULE,
        "enable_features",
        |mut caller: Caller<'_, InstanceState>, features: i32| -> Res<i32> {
            let st = caller.data_mut();
            let f = features as u32;
            if let Some(r) = st.req.as_deref_mut() {
                // handler: s.features = host.EnableFeatures(ctx, s.features.WithEnabled(f));
                // nethttp's EnableFeatures calls its own requestState.enableFeatures with that set.
                let all = r.features | f;
                r.nethttp_enable(all);
                r.features = all;
                Ok(all as i32)
            } else {
                let all = st.shared.features.fetch_or(f, Ordering::SeqCst) | f;
                Ok(all as i32)
            }
        },
    )?;

    linker.func_wrap(
        MODULE,
        "get_config",
        |caller: Caller<'_, InstanceState>, buf: i32, limit: i32| -> Res<i32> {
            scalar(caller, buf, limit, |st| Ok(st.shared.config.clone()))
        },
    )?;

    // Traefik's WasmLogger.IsEnabled always answers true.
    linker.func_wrap(
        MODULE,
        "log_enabled",
        |_caller: Caller<'_, InstanceState>, _level: i32| -> Res<i32> { Ok(1) },
    )?;

    linker.func_wrap(
        MODULE,
        "log",
        |mut caller: Caller<'_, InstanceState>, level: i32, msg: i32, msg_len: i32| -> Res<()> {
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let m = read_string(data, msg, msg_len, "message")?;
            let rec = LogRecord {
                level,
                message: String::from_utf8_lossy(&m).into_owned(),
                instance: st.id,
            };
            if st.shared.echo_logs {
                eprintln!(
                    "[guest #{} {}] {}",
                    rec.instance,
                    rec.level_name(),
                    rec.message
                );
            }
            if let Ok(mut logs) = st.shared.logs.lock() {
                logs.push(rec);
            }
            Ok(())
        },
    )?;

    linker.func_wrap(
        MODULE,
        "get_method",
        |mut caller: Caller<'_, InstanceState>, buf: i32, limit: i32| -> Res<i32> {
            mark(&mut caller, "get_method");
            scalar(caller, buf, limit, |st| Ok(req(st)?.method.clone()))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "set_method",
        |mut caller: Caller<'_, InstanceState>, ptr: i32, len: i32| -> Res<()> {
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let r = req(st)?;
            must_before_next(r, "set", "method")?;
            if len == 0 {
                wasmtime::bail!("HTTP method cannot be empty");
            }
            r.method = read_string(data, ptr, len, "method")?;
            Ok(())
        },
    )?;

    linker.func_wrap(
        MODULE,
        "get_uri",
        |mut caller: Caller<'_, InstanceState>, buf: i32, limit: i32| -> Res<i32> {
            mark(&mut caller, "get_uri");
            scalar(caller, buf, limit, |st| Ok(req(st)?.target.uri()))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "set_uri",
        |mut caller: Caller<'_, InstanceState>, ptr: i32, len: i32| -> Res<()> {
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let r = req(st)?;
            must_before_next(r, "set", "uri")?;
            let uri = read_string(data, ptr, len, "uri")?;
            if uri.is_empty() {
                r.target = RequestTarget {
                    raw_path: b"/".to_vec(),
                    query: None,
                };
                return Ok(());
            }
            match RequestTarget::parse(&uri) {
                Ok(t) => {
                    r.target = t;
                    Ok(())
                }
                // SetURI panics on a url.ParseRequestURI error.
                Err(e) => wasmtime::bail!("{e}"),
            }
        },
    )?;

    linker.func_wrap(
        MODULE,
        "get_protocol_version",
        |caller: Caller<'_, InstanceState>, buf: i32, limit: i32| -> Res<i32> {
            scalar(caller, buf, limit, |st| {
                let p = req(st)?.proto.clone();
                if p.is_empty() {
                    wasmtime::bail!("HTTP protocol version cannot be empty");
                }
                Ok(p)
            })
        },
    )?;

    linker.func_wrap(
        MODULE,
        "get_source_addr",
        |mut caller: Caller<'_, InstanceState>, buf: i32, limit: i32| -> Res<i32> {
            mark(&mut caller, "get_source_addr");
            scalar(caller, buf, limit, |st| Ok(req(st)?.remote_addr.clone()))
        },
    )?;

    linker.func_wrap(
        MODULE,
        "get_header_names",
        |mut caller: Caller<'_, InstanceState>, kind: i32, buf: i32, limit: i32| -> Res<i64> {
            mark(&mut caller, "get_header_names");
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let r = req(st)?;
            let names = match kind {
                0 => request_header_names(r),
                1 => response_header_names(&r.client.header),
                // nethttp reads request trailers from the *response* header map (host-go bug).
                2 | 3 => trailer_names(&r.client.header),
                _ => wasmtime::bail!("unsupported header kind: {kind}"),
            };
            let lower: Vec<Vec<u8>> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
            nul_terminated(data, buf, limit, &lower)
        },
    )?;

    linker.func_wrap(
        MODULE,
        "get_header_values",
        |mut caller: Caller<'_, InstanceState>,
         kind: i32,
         name: i32,
         name_len: i32,
         buf: i32,
         limit: i32|
         -> Res<i64> {
            mark(&mut caller, "get_header_values");
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let n = read_name(data, name, name_len)?;
            let r = req(st)?;
            let values = match kind {
                0 => {
                    if super::gohttp::canonical_key(&n) == b"Host" {
                        vec![r.host.clone()]
                    } else {
                        r.header.values(&n)
                    }
                }
                1 => r.client.header.values(&n),
                2 | 3 => r.client.header.values(&trailer_key(&n)),
                _ => wasmtime::bail!("unsupported header kind: {kind}"),
            };
            nul_terminated(data, buf, limit, &values)
        },
    )?;

    for (fname, op) in [("set_header_value", "set"), ("add_header_value", "add")] {
        linker.func_wrap(
            MODULE,
            fname,
            move |mut caller: Caller<'_, InstanceState>,
                  kind: i32,
                  name: i32,
                  name_len: i32,
                  value: i32,
                  value_len: i32|
                  -> Res<()> {
                mark(&mut caller, fname);
                let mem = memory::of(&mut caller)?;
                let (data, st) = mem.data_and_store_mut(&mut caller);
                if name_len == 0 {
                    wasmtime::bail!("HTTP header name cannot be empty");
                }
                let r = req(st)?;
                must_header_mutable(r, op, kind)?;
                let n = read_name(data, name, name_len)?;
                let v = read_string(data, value, value_len, "value")?;
                let set = op == "set";
                match kind {
                    0 if set => r.header.set(&n, &v),
                    0 => r.header.add(&n, &v),
                    1 if set => resp_header(r).set(&n, &v),
                    1 => resp_header(r).add(&n, &v),
                    // addTrailer calls Header.Set too (host-go bug); both kinds use the
                    // response header map.
                    2 | 3 => resp_header(r).set(&trailer_key(&n), &v),
                    _ => wasmtime::bail!("unsupported header kind: {kind}"),
                }
                Ok(())
            },
        )?;
    }

    linker.func_wrap(
        MODULE,
        "remove_header",
        |mut caller: Caller<'_, InstanceState>, kind: i32, name: i32, name_len: i32| -> Res<()> {
            mark(&mut caller, "remove_header");
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            if name_len == 0 {
                wasmtime::bail!("HTTP header name cannot be empty");
            }
            let r = req(st)?;
            must_header_mutable(r, "remove", kind)?;
            let n = read_name(data, name, name_len)?;
            match kind {
                0 => r.header.del(&n),
                1 => resp_header(r).del(&n),
                2 | 3 => resp_header(r).del(&trailer_key(&n)),
                _ => wasmtime::bail!("unsupported header kind: {kind}"),
            }
            Ok(())
        },
    )?;

    linker.func_wrap(MODULE, "read_body", |mut caller: Caller<'_, InstanceState>, kind: i32, buf: i32, limit: i32| -> Res<i64> {
        let mem = memory::of(&mut caller)?;
        let (data, st) = mem.data_and_store_mut(&mut caller);
        let r = req(st)?;
        match kind {
            0 => must_before_next_or_feature(r, feature::BUFFER_REQUEST, "read", "request body")?,
            1 => {
                must_before_next_or_feature(r, feature::BUFFER_RESPONSE, "read", "response body")?;
                if r.response_body_reader.is_none() {
                    // ResponseBodyReader type-asserts *bufferingResponseWriter.
                    let Some(b) = r.buffered.as_ref() else {
                        wasmtime::bail!(
                            "interface conversion: http.ResponseWriter is not *wasm.bufferingResponseWriter"
                        );
                    };
                    r.response_body_reader = Some((b.body.clone(), 0));
                }
            }
            _ => wasmtime::bail!("unsupported body kind: {kind}"),
        }
        if limit == 0 {
            wasmtime::bail!("buf_limit==0 reading body");
        }
        let out = memory::slice_mut(data, buf as u32, limit as u32, "body")?;
        let (n, eof) = if kind == 0 {
            r.body.read(out)
        } else {
            // bytes.Reader: data with nil, then (0, EOF).
            let (body, pos) = r.response_body_reader.get_or_insert_with(|| (Vec::new(), 0));
            let mut n = 0;
            let mut eof = false;
            while n < out.len() {
                let remaining = body.len().saturating_sub(*pos);
                if remaining == 0 {
                    eof = true;
                    break;
                }
                let k = remaining.min(out.len() - n);
                if let (Some(d), Some(s)) = (out.get_mut(n..n + k), body.get(*pos..*pos + k)) {
                    d.copy_from_slice(s);
                }
                *pos += k;
                n += k;
            }
            (n, eof)
        };
        Ok((u64::from(eof) << 32 | n as u64) as i64)
    })?;

    linker.func_wrap(
        MODULE,
        "write_body",
        |mut caller: Caller<'_, InstanceState>, kind: i32, ptr: i32, len: i32| -> Res<()> {
            let mem = memory::of(&mut caller)?;
            let (data, st) = mem.data_and_store_mut(&mut caller);
            let r = req(st)?;
            match kind {
                0 => must_before_next(r, "write", "request body")?,
                1 => must_before_next_or_feature(
                    r,
                    feature::BUFFER_RESPONSE,
                    "write",
                    "response body",
                )?,
                _ => wasmtime::bail!("unsupported body kind: {kind}"),
            }
            let b = read_string(data, ptr, len, "body")?;
            if kind == 0 {
                if !r.request_body_writer {
                    // RequestBodyWriter: r.Body = a fresh buffer (ContentLength is not updated).
                    r.request_body_writer = true;
                    r.body.replaced = Some(Vec::new());
                    r.body.replaced_pos = 0;
                }
                r.body
                    .replaced
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(&b);
            } else if let Some(buffered) = r.buffered.as_mut() {
                if !r.response_body_writer {
                    // ResponseBodyWriter resets the buffered body once.
                    buffered.body.clear();
                }
                r.response_body_writer = true;
                buffered.body.extend_from_slice(&b);
            } else {
                r.response_body_writer = true;
                r.client.write(&b);
            }
            Ok(())
        },
    )?;

    linker.func_wrap(
        MODULE,
        "get_status_code",
        |mut caller: Caller<'_, InstanceState>| -> Res<i32> {
            let r = req(caller.data_mut())?;
            match r.buffered.as_ref() {
                Some(b) if b.status == 0 => Ok(200),
                Some(b) => Ok(b.status as i32),
                None => wasmtime::bail!(
                "interface conversion: http.ResponseWriter is not *wasm.bufferingResponseWriter"
            ),
            }
        },
    )?;

    linker.func_wrap(
        MODULE,
        "set_status_code",
        |mut caller: Caller<'_, InstanceState>, code: i32| -> Res<()> {
            let r = req(caller.data_mut())?;
            must_before_next_or_feature(r, feature::BUFFER_RESPONSE, "set", "status code")?;
            match r.buffered.as_mut() {
                Some(b) => b.status = code as u32,
                None => {
                    // net/http's checkWriteHeaderCode panics outside 100..=999.
                    if !(100..=999).contains(&code) {
                        wasmtime::bail!("invalid WriteHeader code {code}");
                    }
                    r.client.write_header(code as u16);
                }
            }
            Ok(())
        },
    )?;

    Ok(())
}
