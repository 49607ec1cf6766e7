#!/usr/bin/env python3
"""tls_hold.py PORT N MODE: open N TLS 1.3 connections to 127.0.0.1:PORT and hold them until stdin closes.
MODE "mid": each sends a real ClientHello, reads the server's whole first flight, then stops: the
server is mid-handshake (keys derived, waiting for the client's Finished).  MODE "done": each
completes the handshake.  Prints "holding N" once all are in that state (the figure a bench reads
the server's memory at)."""
import select
import socket
import ssl
import sys

port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if mode == "done":
        held.append(ctx.wrap_socket(s, server_hostname="localhost"))
        continue
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s.sendall(out.read())
    # the server's flight: read until a record boundary leaves the handshake waiting for more
    s.settimeout(10)
    while True:
        data = s.recv(65536)
        if not data:
            break
        inc.write(data)
        try:
            obj.do_handshake()
            break  # done: the client would now send its Finished — it does not
        except ssl.SSLWantReadError:
            continue
    held.append((s, obj))
print(f"holding {len(held)}", flush=True)
sys.stdin.read()
