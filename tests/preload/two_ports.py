#!/usr/bin/env python3
"""two_ports.py DIR PORT_A PORT_B: one process, two http.server listeners serving DIR (threads).
Under the shim with a serve rule for one port only: that one speaks TLS, the other stays plaintext."""
import functools
import http.server
import sys
import threading

handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
servers = [http.server.ThreadingHTTPServer(("127.0.0.1", int(p)), handler) for p in sys.argv[2:4]]
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
print("listening", *sys.argv[2:4], flush=True)
servers[0].serve_forever()
