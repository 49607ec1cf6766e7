#!/usr/bin/env python3
"""tests/fileserver/fsclient.py — a TLS client for tests/fileserver/fileserver.sh.

  raw PORT CA [--tls12]            stdin's bytes in one write; the whole answer (until the server closes
                                   or 5 s of silence) to stdout
  parse FILE [HEAD...]             split a stream of responses: one line per response
                                   "STATUS LENGTH SHA256 Header:value..." (HEAD: no body for that answer)
  slow PORT CA DELAY TEXT          TEXT one byte per DELAY seconds; prints "status=NNN after=S" or
                                   "closed after=S" (the server cut us), or "sent-all after=S"
  idle PORT CA N GOFILE            N connections, one HEAD / each (keep-alive), prints "ready N" and
                                   waits for GOFILE; then 20 of them GET / again: "alive K/20"
  urllib URL CA [--tls12] OUT      urllib.request download to OUT
  truncate PORT CA PATH FILE       GET PATH (FILE is that file on disk), read 1 MiB of the body, truncate FILE
                                   to 0, read on: "body=N of LENGTH end=closed|timeout"
  keepalive PORT CA                one GET / (keep-alive), then wait: "closed after=S" when the server
                                   closes the idle connection
"""
import hashlib, os, socket, ssl, sys, time


def ctx(ca, tls12=False):
    c = ssl.create_default_context(cafile=ca)
    c.set_alpn_protocols(["http/1.1"])
    if tls12:
        c.maximum_version = ssl.TLSVersion.TLSv1_2
    return c


def connect(port, ca, tls12=False, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx(ca, tls12).wrap_socket(s, server_hostname="localhost")


def read_all(s, silence=5.0):
    s.settimeout(silence)
    out = bytearray()
    while True:
        try:
            b = s.recv(65536)
        except (socket.timeout, ssl.SSLError, ConnectionResetError):
            break
        if not b:
            break
        out += b
    return bytes(out)


def parse(data, heads):
    res, i, k = [], 0, 0
    while i < len(data):
        end = data.find(b"\r\n\r\n", i)
        if end < 0:
            res.append("INCOMPLETE %d" % (len(data) - i))
            break
        lines = data[i:end].decode("latin-1").split("\r\n")
        status = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "?"
        hdr = {}
        for l in lines[1:]:
            n, _, v = l.partition(":")
            hdr[n.strip().lower()] = v.strip()
        length = int(hdr.get("content-length", "0"))
        body_len = 0 if (k in heads or status in ("304",)) else length
        body = data[end + 4:end + 4 + body_len]
        if len(body) < body_len:
            res.append("TRUNCATED %s %d/%d" % (status, len(body), body_len))
            break
        extra = " ".join("%s:%s" % (n, hdr[n].replace(" ", "_")) for n in sorted(hdr) if n in (
            "connection", "content-range", "etag", "last-modified", "allow", "location", "accept-ranges", "content-type"))
        res.append("%s %d %s %s" % (status, length, hashlib.sha256(body).hexdigest(), extra))
        i = end + 4 + body_len
        k += 1
    return res


def main():
    cmd = sys.argv[1]
    if cmd == "raw":
        port, ca = int(sys.argv[2]), sys.argv[3]
        s = connect(port, ca, "--tls12" in sys.argv)
        s.sendall(sys.stdin.buffer.read())
        sys.stdout.buffer.write(read_all(s))
    elif cmd == "parse":
        data = open(sys.argv[2], "rb").read()
        for l in parse(data, {int(x) for x in sys.argv[3:]}):
            print(l)
    elif cmd == "slow":
        port, ca, delay, text = int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5].encode()
        s = connect(port, ca)
        t0 = time.time()
        s.settimeout(delay)
        for ch in text:
            try:
                s.sendall(bytes([ch]))
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                print("closed after=%.1f" % (time.time() - t0)); return
            try:
                b = s.recv(4096)
            except socket.timeout:
                continue
            except (ConnectionResetError, ssl.SSLError):
                print("closed after=%.1f" % (time.time() - t0)); return
            if not b:
                print("closed after=%.1f" % (time.time() - t0)); return
            print("status=%s after=%.1f" % (b.split(b" ")[1].decode("latin-1", "replace"), time.time() - t0))
            return
        print("sent-all after=%.1f" % (time.time() - t0))
    elif cmd == "idle":
        port, ca, n, go = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
        c = ctx(ca)
        conns = []
        for _ in range(n):
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            s = c.wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            got = b""
            while b"\r\n\r\n" not in got:
                b = s.recv(4096)
                if not b:
                    raise SystemExit("connection %d closed early" % len(conns))
                got += b
            conns.append(s)
        print("ready %d" % len(conns), flush=True)
        deadline = time.time() + 300
        while not os.path.exists(go) and time.time() < deadline:
            time.sleep(0.1)
        alive = 0
        for s in conns[:: max(1, n // 20)][:20]:
            try:
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                s.settimeout(10)
                b = s.recv(4096)
                if b.startswith(b"HTTP/1.1 200"):
                    alive += 1
            except (OSError, ssl.SSLError):
                pass
        print("alive %d/20" % alive, flush=True)
    elif cmd == "urllib":
        import urllib.request
        url, ca, out = sys.argv[2], sys.argv[3], sys.argv[-1]
        with urllib.request.urlopen(url, context=ctx(ca, "--tls12" in sys.argv), timeout=20) as r:
            open(out, "wb").write(r.read())
    elif cmd == "truncate":
        s = connect(int(sys.argv[2]), sys.argv[3])
        s.sendall(b"GET " + sys.argv[4].encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(65536)
        head, _, body = got.partition(b"\r\n\r\n")
        length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
        n = len(body)
        while n < 1048576:
            n += len(s.recv(65536))
        os.truncate(sys.argv[5], 0)
        s.settimeout(15)
        end = "closed"
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                n += len(b)
        except socket.timeout:
            end = "timeout"
        except (ConnectionResetError, ssl.SSLError):
            pass
        print("body=%d of %d end=%s" % (n, length, end))
    elif cmd == "keepalive":
        s = connect(int(sys.argv[2]), sys.argv[3])
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        got = b""
        while b"\r\n\r\n" not in got:
            got += s.recv(4096)
        t0 = time.time()
        s.settimeout(30)
        try:
            while s.recv(4096):
                pass
        except (socket.timeout, ConnectionResetError, ssl.SSLError):
            pass
        print("closed after=%.1f" % (time.time() - t0))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
