#!/usr/bin/env python3
"""Fail the build when a .wasm imports anything its host cannot provide.

usage: check-wasm.py traefik|bridge FILE

- traefik artifact: only `http_handler` and `wasi_snapshot_preview1`; WasmEdge socket imports in
  their V2 shapes only (no sock_accept/sock_getlocaladdr/sock_getpeeraddr, which flip Traefik to
  V1, no epoll_oneoff); and it MUST import `sock_open`: without a socket import Traefik serves
  WASI from wazero, whose random_get is a fixed-seed PRNG (seed 42) identical in every instance.
- bridge artifact: `http_handler`, `wasi_snapshot_preview1` and `oidc_guard_bridge_v1`; no sockets.
- both: export what the http-wasm host calls (`memory`, `_start`, `handle_request`,
  `handle_response`) with the ABI's signatures.
"""
import os
import sys


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def sections(path):
    """The module's sections as (id, bytes)."""
    b = open(path, "rb").read()
    if b[:4] != b"\0asm":
        sys.exit(f"{path}: not a wasm module")
    i, out = 8, []
    while i < len(b):
        sid = b[i]
        n, j = leb(b, i + 1)
        out.append((sid, b[j:j + n]))
        i = j + n
    return out


def vec(b, i, item):
    count, i = leb(b, i)
    out = []
    for _ in range(count):
        x, i = item(b, i)
        out.append(x)
    return out, i


def name(b, i):
    ln, i = leb(b, i)
    return b[i:i + ln].decode(), i + ln


def exports(secs, imps):
    """Exports as {name: (kind, signature)}; a function's signature is (params, results) of
    value-type bytes."""
    types, funcs, out = [], [], {}
    for sid, b in secs:
        if sid == 1:  # type
            def ftype(b, i):
                assert b[i] == 0x60
                p, i = vec(b, i + 1, lambda b, i: (b[i], i + 1))
                r, i = vec(b, i, lambda b, i: (b[i], i + 1))
                return (tuple(p), tuple(r)), i
            types, _ = vec(b, 0, ftype)
        elif sid == 3:  # function
            funcs, _ = vec(b, 0, leb)
    imported = sum(1 for _, _, k in imps if k == 0)
    for sid, b in secs:
        if sid == 7:  # export
            def export(b, i):
                n, i = name(b, i)
                kind = b[i]
                idx, i = leb(b, i + 1)
                sig = None
                if kind == 0 and idx >= imported:
                    sig = types[funcs[idx - imported]]
                return (n, kind, sig), i
            for n, kind, sig in vec(b, 0, export)[0]:
                out[n] = (kind, sig)
    return out


I32, I64 = 0x7F, 0x7E
REQUIRED_EXPORTS = {
    "memory": (2, None),
    "_start": (0, ((), ())),
    "handle_request": (0, ((), (I64,))),
    "handle_response": (0, ((I32, I32), ())),
}


def imports(secs):
    """Imports as (module, name, kind)."""
    out = []
    for sid, b in secs:
        if sid != 2:
            continue

        def item(b, i):
            mod, i = name(b, i)
            field, i = name(b, i)
            kind = b[i]
            i += 1
            if kind == 0:
                _, i = leb(b, i)
            elif kind == 1:  # table
                i += 1
                flags, i = leb(b, i)
                _, i = leb(b, i)
                if flags & 1:
                    _, i = leb(b, i)
            elif kind == 2:  # memory
                flags, i = leb(b, i)
                _, i = leb(b, i)
                if flags & 1:
                    _, i = leb(b, i)
            elif kind == 3:  # global
                i += 2
            return (mod, field, kind), i

        out.extend(vec(b, 0, item)[0])
    return out


def main():
    kind, path = sys.argv[1], sys.argv[2]
    secs = sections(path)
    imps = imports(secs)
    allowed = {"http_handler", "wasi_snapshot_preview1"}
    if kind == "bridge":
        allowed.add("oidc_guard_bridge_v1")
    errors = []
    names = {(m, n) for m, n, _ in imps}
    for m, n, _ in imps:
        if m not in allowed:
            errors.append(f"imports {m}.{n}: module {m!r} is not provided by the {kind} host")
    v1_triggers = {"sock_accept", "sock_getlocaladdr", "sock_getpeeraddr", "epoll_oneoff"}
    for m, n in names:
        if m == "wasi_snapshot_preview1" and n in v1_triggers:
            errors.append(f"imports {n}: flips Traefik's socket extension to V1 or does not link")
    sockets = sorted(n for m, n in names if m == "wasi_snapshot_preview1" and n.startswith("sock_"))
    if kind == "traefik" and ("wasi_snapshot_preview1", "sock_open") not in names:
        errors.append("does not import sock_open: Traefik would serve WASI from wazero, whose "
                      "random_get is deterministic (seed 42)")
    if kind == "bridge" and sockets:
        errors.append(f"the bridge artifact imports sockets: {sockets}")
    exps = exports(secs, imps)
    for n, want in REQUIRED_EXPORTS.items():
        if exps.get(n) != want:
            errors.append(f"export {n}: expected {want}, found {exps.get(n)}")
    size = os.path.getsize(path)
    print(f"{path}: {size} bytes, {len(imps)} imports from {sorted({m for m, _, _ in imps})}, "
          f"exports {sorted(exps)}")
    if errors:
        for e in errors:
            print(f"error: {path}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
