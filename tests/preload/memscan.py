#!/usr/bin/env python3
"""memscan.py PID NEEDLE-HEX... : search the readable memory of PID (/proc/PID/maps + /proc/PID/mem)
for each needle; print "found HEX at ADDR (region)" or "absent HEX", and the bytes scanned.
Regions are read in 16 MiB pieces (overlapping by the longest needle); mappings larger than 1 GiB are
skipped and counted (ASan's shadow and allocator reserves: terabytes of address space, no program data).
Exit 0 when every needle is absent, 1 when one was found, 2 on an error (nothing scanned)."""
import re
import sys


def main():
    pid = int(sys.argv[1])
    needles = [bytes.fromhex(h) for h in sys.argv[2:]]
    found = {}
    scanned = 0
    skipped = 0
    piece = 16 << 20
    overlap = max(len(n) for n in needles) - 1
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)", line)
            if not m or m.group(3)[0] != "r" or m.group(4) in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            lo, hi = int(m.group(1), 16), int(m.group(2), 16)
            if hi - lo > (1 << 30):
                skipped += 1
                continue
            pos = lo
            while pos < hi:
                end = min(hi, pos + piece)
                try:
                    mem.seek(pos)
                    data = mem.read(end - pos + (overlap if end < hi else 0))
                except (OSError, ValueError, OverflowError):
                    break
                scanned += end - pos
                for n in needles:
                    if n in found:
                        continue
                    i = data.find(n)
                    if i >= 0:
                        found[n] = f"{pos + i:#x} ({m.group(4) or 'anonymous'})"
                pos = end
    for n in needles:
        print(f"found {n.hex()} at {found[n]}" if n in found else f"absent {n.hex()}")
    print(f"scanned {scanned} bytes, skipped {skipped} mappings over 1 GiB")
    if scanned == 0:
        sys.exit(2)
    sys.exit(1 if found else 0)


try:
    main()
except Exception as e:  # noqa: BLE001 - any failure is "could not scan", never "found"
    print(f"memscan: {e!r}")
    sys.exit(2)
