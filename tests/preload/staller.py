#!/usr/bin/env python3
"""staller.py PORT SECONDS: connect, send the first bytes of a ClientHello, then nothing for SECONDS.
Prints "closed-by-server after N s" if the server drops it before that, else "still-open"."""
import socket
import sys
import time

s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes.fromhex("160301020001000200fc0303"))  # record + handshake header: a 512-byte ClientHello, cut
t0 = time.monotonic()
s.settimeout(float(sys.argv[2]))
try:
    while s.recv(4096):
        pass
    print(f"closed-by-server after {time.monotonic() - t0:.1f} s", flush=True)
except (socket.timeout, TimeoutError):
    print("still-open", flush=True)
except OSError as e:
    print(f"closed-by-server after {time.monotonic() - t0:.1f} s ({e})", flush=True)
