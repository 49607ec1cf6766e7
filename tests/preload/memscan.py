#!/usr/bin/env python3
"""memscan.py PID NEEDLE-HEX... : search the readable memory of PID (/proc/PID/maps + /proc/PID/mem)
for each needle; print "found HEX at ADDR (region)" or "absent HEX", and the bytes scanned.
Exit 0 when every needle is absent, 1 when one was found, 2 on an error (nothing scanned)."""
import re
import sys


def main():
    pid = int(sys.argv[1])
    needles = [bytes.fromhex(h) for h in sys.argv[2:]]
    found = {}
    scanned = 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)", line)
            if not m or m.group(3)[0] != "r" or m.group(4) in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            lo, hi = int(m.group(1), 16), int(m.group(2), 16)
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            scanned += len(data)
            for n in needles:
                if n in found:
                    continue
                i = data.find(n)
                if i >= 0:
                    found[n] = f"{lo + i:#x} ({m.group(4) or 'anonymous'})"
    for n in needles:
        print(f"found {n.hex()} at {found[n]}" if n in found else f"absent {n.hex()}")
    print(f"scanned {scanned} bytes")
    if scanned == 0:
        sys.exit(2)
    sys.exit(1 if found else 0)


main()
