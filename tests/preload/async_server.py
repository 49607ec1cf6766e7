#!/usr/bin/env python3
"""async_server.py DIR PORT: an asyncio HTTP/1.0 file server (nonblocking listener, nonblocking sockets,
epoll through the selector event loop), in the style of a typical event-loop server."""
import asyncio
import os
import sys

root = sys.argv[1]


async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode().lstrip("/")
        with open(os.path.join(root, os.path.basename(path)), "rb") as f:
            body = f.read()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError, IndexError) as e:
        print("request failed:", e, file=sys.stderr, flush=True)
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[2]))
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
