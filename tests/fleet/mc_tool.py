#!/usr/bin/env python3
"""tests/fleet/mc_tool.py — what an attacker with write access to memcached does to the
fleet's session store (issue 12), over memcached's text protocol (stdlib only).

  mc_tool.py HOST PORT keys                 the store's keys (ktlsx1:...), one a line
  mc_tool.py HOST PORT corrupt KEY          flip one byte in the middle of KEY's entry
  mc_tool.py HOST PORT forge KEY            replace KEY's entry by a well-shaped forgery:
                                            "KXM1", then random bytes of the same length
  mc_tool.py HOST PORT copy SRC DST         put SRC's entry (a genuine one) under DST's key
  mc_tool.py HOST PORT has KEY              exit 0 if KEY is there, 1 if not

Every socket operation has a 5 s deadline; errors exit 2 with the reason.
"""
import os
import socket
import sys
import urllib.parse


def talk(sock, data, until):
    sock.sendall(data)
    buf = b""
    while not any(buf.endswith(u) for u in until):
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("memcached closed the connection")
        buf += chunk
    return buf


def get(sock, key):
    r = talk(sock, b"get " + key.encode() + b"\r\n", [b"END\r\n"])
    if r.startswith(b"END"):
        return None, 0
    head, rest = r.split(b"\r\n", 1)
    _, _, flags, length = head.split()[:4]
    return rest[: int(length)], int(flags)


def put(sock, key, value, flags):
    r = talk(sock, b"set %s %d 600 %d\r\n" % (key.encode(), flags, len(value)) + value + b"\r\n",
             [b"STORED\r\n", b"ERROR\r\n", b"SERVER_ERROR\r\n"])
    if not r.startswith(b"STORED"):
        raise OSError("set %s: %r" % (key, r))


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, cmd, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    sock = socket.create_connection((host, port), timeout=5)
    if cmd == "keys":
        r = talk(sock, b"lru_crawler metadump all\r\n", [b"END\r\n", b"ERROR\r\n"])
        for line in r.decode().splitlines():
            if line.startswith("key="):
                key = urllib.parse.unquote(line.split()[0][4:])
                if key.startswith("ktlsx1:"):
                    print(key)
        return 0
    if cmd == "has":
        value, _ = get(sock, args[0])
        return 0 if value is not None else 1
    value, flags = get(sock, args[0])
    if value is None:
        print("mc_tool: %s: not in memcached" % args[0], file=sys.stderr)
        return 2
    if cmd == "corrupt":
        b = bytearray(value)
        b[len(b) // 2] ^= 0x01
        put(sock, args[0], bytes(b), flags)
    elif cmd == "forge":
        put(sock, args[0], b"KXM1" + os.urandom(len(value) - 4), flags)
    elif cmd == "copy":
        put(sock, args[1], value, flags)
    else:
        print("mc_tool: unknown command %s" % cmd, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as e:
        print("mc_tool: %s" % e, file=sys.stderr)
        sys.exit(2)
