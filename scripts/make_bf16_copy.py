#!/usr/bin/env python3
"""Writes a bf16 copy of a float32 safetensors file (round to nearest even; non-F32 tensors kept).

The device machine gets the real model this way: the bf16 copy (45 MB for all-MiniLM-L6-v2)
fits the 64 MiB a device call may carry, where the 90 MB float32 original does not.
Standard library only (no numpy, no torch), so CI and fresh machines can run it.

usage: make_bf16_copy.py IN.safetensors OUT.safetensors
"""
import array
import json
import os
import struct
import sys


def to_bf16(raw: bytes) -> bytes:
    words = array.array("I")
    words.frombytes(raw)
    out = array.array("H", bytes(2 * len(words)))
    for i, u in enumerate(words):
        if (u & 0x7FFFFFFF) > 0x7F800000:          # NaN: keep it NaN
            out[i] = (u >> 16) | 0x40
        else:                                        # round to nearest even
            out[i] = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    return out.tobytes()


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    out_header, chunks, offset = {}, [], 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        dtype = info["dtype"]
        if dtype == "F32":
            raw, dtype = to_bf16(raw), "BF16"
        out_header[name] = {"dtype": dtype, "shape": info["shape"], "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if meta is not None:
        out_header["__metadata__"] = meta
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)
    os.replace(tmp, dst)
    print(f"wrote {dst}: {8 + len(text) + offset} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
