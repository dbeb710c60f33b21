#!/usr/bin/env python3
"""Writes the `pgoutput` fuzz target's seed corpus from the golden captures.

Each seed is the target's options byte (protocol version - 1, | 4 for parallel streaming)
followed by a window of consecutive captured frames in the capture format (u32 BE length +
payload). One window starts at the first occurrence of each message tag in each capture, so
every kind is seeded in its real context (inside or outside a streamed block).

    python3 fuzz_seeds.py [OUT_DIR]   # default: <repo>/fuzz/corpus/pgoutput
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../../../fuzz/corpus/pgoutput")
CAPTURES = {
    "pgoutput-v1-text.bin": 0,
    "pgoutput-v1-binary.bin": 0,
    "pgoutput-v2-stream.bin": 1,
    "pgoutput-v3-twophase.bin": 2,
    "pgoutput-v3-twophase-binary.bin": 2,
}
WINDOW = 12
MAX_FRAME = 1024


def frames(path):
    data = open(path, "rb").read()
    i = 0
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        yield data[i + 4 : i + 4 + n]
        i += 4 + n


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, opts in CAPTURES.items():
        fs = list(frames(os.path.join(HERE, name)))
        # The target starts outside a streamed block: a window starts at the first occurrence
        # of each tag outside one, or, for a tag first seen inside one, with that block's
        # Stream Start followed by the frames from that occurrence on.
        windows, seen, start = [], set(), None
        for i, f in enumerate(fs):
            tag = chr(f[0])
            key = (tag, start is not None)
            if key not in seen:
                seen.add(key)
                prefix = [fs[start]] if start is not None and start != i else []
                windows.append((i, "s" if start is not None else "", prefix + fs[i : i + WINDOW]))
            if tag == "S":
                start = i
            elif tag == "E":
                start = None
        for i, inside, window in windows:
            window = [f for f in window if len(f) <= MAX_FRAME]
            seed = bytes([opts]) + b"".join(struct.pack(">I", len(f)) + f for f in window)
            tag = chr(fs[i][0])
            label = (tag if tag.isupper() else f"lower-{tag}") + ("-in-stream" if inside else "")
            out = os.path.join(OUT, f"{name.removesuffix('.bin')}-{i:05}-{label}")
            open(out, "wb").write(seed)
    print(f"seeds in {os.path.normpath(OUT)}: {len(os.listdir(OUT))}")


if __name__ == "__main__":
    main()
