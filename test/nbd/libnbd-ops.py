#!/usr/bin/python3
# Runs a list of libnbd operations (the Python binding nbdsh uses) and prints what happened,
# one JSON object per operation, so the TypeScript test asserts on it (test/nbd/libnbd.ts).
#
# stdin: {"uri": "...", "handles": 1, "structured": true, "strict": null, "meta": true,
#         "ops": [{"op": "pwrite", "h": 0, "offset": 0, "length": 65536, "byte": 171, "flags": ["FUA"]}, ...]}
# stdout: {"handles": [{"structured": bool, "size": int, "can": {...}, "block": {...}}],
#          "results": [{"ok": true, ...} | {"ok": false, "errno": "EINVAL", "message": "..."}]}
#
# Errors of one operation are results, not failures of the script: the test decides. A failure
# to connect is fatal (exit 2, message on stderr).

import hashlib
import json
import sys

import nbd

FLAGS = {
    "FUA": nbd.CMD_FLAG_FUA,
    "NO_HOLE": nbd.CMD_FLAG_NO_HOLE,
    "FAST_ZERO": nbd.CMD_FLAG_FAST_ZERO,
    "REQ_ONE": nbd.CMD_FLAG_REQ_ONE,
    "DF": nbd.CMD_FLAG_DF,
}
CAN = ["trim", "zero", "fast_zero", "flush", "fua", "multi_conn", "cache", "df"]


def flags_of(op):
    f = 0
    for name in op.get("flags", []):
        f |= FLAGS[name]
    return f


def describe_data(buf):
    """sha256 and, when every byte is the same, that byte (the common case in the tests)."""
    uniform = len(buf) > 0 and buf.count(buf[:1]) == len(buf)
    return {
        "length": len(buf),
        "sha256": hashlib.sha256(buf).hexdigest(),
        "byte": buf[0] if uniform else None,
    }


def block_status(h, op):
    """base:allocation extents [offset, length, flags] from offset to offset+length, asking as
    often as the server needs (it may answer a prefix)."""
    offset, end = op["offset"], op["offset"] + op["length"]
    extents = []
    calls = 0
    while offset < end:
        got = []

        def cb(context, start, entries, err):
            if context == nbd.CONTEXT_BASE_ALLOCATION:
                got.append((start, list(entries)))
            return 0

        h.block_status(end - offset, offset, cb, flags_of(op))
        calls += 1
        if not got or not got[0][1]:
            raise RuntimeError(f"block status at {offset}: no base:allocation extents")
        pos = got[0][0]
        entries = got[0][1]
        for i in range(0, len(entries), 2):
            length, flags = entries[i], entries[i + 1]
            if extents and extents[-1][2] == flags and extents[-1][0] + extents[-1][1] == pos:
                extents[-1][1] += length
            else:
                extents.append([pos, length, flags])
            pos += length
        if op.get("once"):
            break
        offset = pos
    return {"extents": extents, "calls": calls}


def run(h, op):
    kind = op["op"]
    if kind == "pwrite":
        data = bytes([op["byte"]]) * op["length"]
        h.pwrite(data, op["offset"], flags_of(op))
        return {}
    if kind == "pread":
        return describe_data(h.pread(op["length"], op["offset"], flags_of(op)))
    if kind == "pread_structured":
        # The reply chunks as the server sent them: ["data" | "hole", offset, length].
        chunks = []

        def chunk(subbuf, offset, status, err):
            kind = "data" if status == nbd.READ_DATA else "hole" if status == nbd.READ_HOLE else "error"
            chunks.append([kind, offset, len(subbuf)])
            return 0

        buf = h.pread_structured(op["length"], op["offset"], chunk, flags_of(op))
        out = describe_data(buf)
        out["chunks"] = sorted(chunks, key=lambda c: c[1])
        return out
    if kind == "zero":
        h.zero(op["length"], op["offset"], flags_of(op))
        return {}
    if kind == "trim":
        h.trim(op["length"], op["offset"], flags_of(op))
        return {}
    if kind == "cache":
        h.cache(op["length"], op["offset"], flags_of(op))
        return {}
    if kind == "flush":
        h.flush(flags_of(op))
        return {}
    if kind == "status":
        return block_status(h, op)
    raise ValueError(f"unknown op {kind}")


def main():
    req = json.load(sys.stdin)
    handles = []
    for _ in range(req.get("handles", 1)):
        h = nbd.NBD()
        h.set_request_structured_replies(req.get("structured", True))
        if req.get("meta", True):
            h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
        try:
            h.connect_uri(req["uri"])
        except nbd.Error as e:
            print(f"libnbd-ops: connect {req['uri']}: {e.string}", file=sys.stderr)
            sys.exit(2)
        if req.get("strict") is not None:
            h.set_strict_mode(req["strict"])
        handles.append(h)
    info = []
    for h in handles:
        can = {}
        for name in CAN:
            can[name] = bool(getattr(h, "can_" + name)())
        info.append(
            {
                "structured": bool(h.get_structured_replies_negotiated()),
                "size": h.get_size(),
                "readOnly": bool(h.is_read_only()),
                "can": can,
                "meta": bool(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)),
                "block": {
                    "minimum": h.get_block_size(nbd.SIZE_MINIMUM),
                    "preferred": h.get_block_size(nbd.SIZE_PREFERRED),
                    "maximum": h.get_block_size(nbd.SIZE_MAXIMUM),
                },
            }
        )
    results = []
    for op in req.get("ops", []):
        h = handles[op.get("h", 0)]
        try:
            out = run(h, op)
            out["ok"] = True
        except nbd.Error as e:
            # e.errno is the symbolic name ("EINVAL"), e.args[1] the number
            out = {"ok": False, "errno": e.errno, "message": e.string}
        results.append(out)
    for h in handles:
        try:
            h.shutdown()
        except nbd.Error:
            pass
    json.dump({"handles": info, "results": results}, sys.stdout)


main()
