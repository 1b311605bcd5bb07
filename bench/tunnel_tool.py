#!/usr/bin/env python3
"""Helpers for bench/tunnel.sh: target services on the "server" side, load
clients on the local side, and a user-space delay/rate proxy for the SSH link.

  sink PORT                 read each connection to EOF, answer "<bytes>\\n"
  echo PORT                 echo every byte back
  push A,B LABEL_A,LABEL_B FILE N
                            N times per target, alternating: send FILE,
                            half-close, wait for the answer; best and median MB/s
  ping A,B LABEL_A,LABEL_B N
                            N one-byte round trips on one connection to each
                            target, alternating; median and p90 in microseconds
  smtp A,B LABEL_A,LABEL_B N RCPT
                            N sequential SMTP transactions (new connection
                            each) per target, alternating; median and p90 in ms
  burst A,B LABEL_A,LABEL_B N
                            N SMTP connections at once per target; the time
                            until all have their greeting
  proxy LPORT HOST:PORT DELAY_MS RATE_KBIT
                            forwards LPORT to HOST:PORT, each direction delayed
                            by DELAY_MS and paced to RATE_KBIT (0 = unlimited)
"""

import asyncio
import smtplib
import socket
import statistics
import sys
import threading
import time


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


def listen(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


def serve(port, handler):
    s = listen(port)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


def sink_conn(conn):
    n = 0
    while True:
        b = conn.recv(1 << 16)
        if not b:
            break
        n += len(b)
    conn.sendall(b"%d\n" % n)
    conn.close()


def echo_conn(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        b = conn.recv(1 << 16)
        if not b:
            break
        conn.sendall(b)
    conn.close()


def push(targets, labels, path, times):
    """Pushes alternate between the targets."""
    data = open(path, "rb").read()
    rates = [[] for _ in targets]
    for _ in range(times):
        for k, target in enumerate(targets):
            t = time.perf_counter()
            c = socket.create_connection(addr(target))
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                b = c.recv(100)
                if not b:
                    break
                answer += b
            elapsed = time.perf_counter() - t
            assert int(answer) == len(data), (answer, len(data))
            rates[k].append(len(data) / elapsed / 1e6)
    for k, label in enumerate(labels):
        print("push %s %.1f MB: best %.1f MB/s, median %.1f MB/s" % (
            label, len(data) / 1e6, max(rates[k]), statistics.median(rates[k])))


def report(name, labels, samples, unit, extra=None):
    for k, label in enumerate(labels):
        xs = sorted(samples[k])
        line = "%s %s: median %.2f %s, p90 %.2f %s" % (
            name, label, statistics.median(xs), unit, xs[int(len(xs) * 0.9)], unit)
        if extra:
            line += extra(k)
        print(line)


def ping(targets, labels, n):
    """Round trips alternate between the targets, so that load on the
    machine hits every forward alike."""
    conns = []
    for t in targets:
        c = socket.create_connection(addr(t))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(c)
    samples = [[] for _ in targets]
    for _ in range(n):
        for k, c in enumerate(conns):
            t = time.perf_counter()
            c.sendall(b"x")
            assert c.recv(1) == b"x"
            samples[k].append((time.perf_counter() - t) * 1e6)
    report("ping", labels, samples, "us")


def smtp(targets, labels, n, rcpt):
    """Sequential transactions (new connection each), alternating between
    the targets."""
    msg = ("From: bench@example.org\r\nTo: %s\r\nSubject: tunnel bench\r\n\r\n" % rcpt
           + "A line of an ordinary short message body.\r\n" * 40)
    samples = [[] for _ in targets]
    greets = [[] for _ in targets]
    for _ in range(n):
        for k, target in enumerate(targets):
            host, port = addr(target)
            t = time.perf_counter()
            s = smtplib.SMTP(host, port, timeout=60)
            greets[k].append((time.perf_counter() - t) * 1e3)
            s.sendmail("bench@example.org", [rcpt], msg)
            s.quit()
            samples[k].append((time.perf_counter() - t) * 1e3)
    report("smtp", labels, samples, "ms per transaction",
           lambda k: "; greeting after %.2f ms" % statistics.median(greets[k]))


def burst(targets, labels, n):
    """N connections opened at once to each target in turn: the time until
    every one has its SMTP greeting (channel opens in flight at once)."""
    for label, target in zip(labels, targets):
        done = []

        def greet():
            t = time.perf_counter()
            c = socket.create_connection(addr(target))
            assert c.recv(512).startswith(b"220")
            done.append((time.perf_counter() - t) * 1e3)
            c.sendall(b"QUIT\r\n")
            c.recv(512)
            c.close()

        threads = [threading.Thread(target=greet) for _ in range(n)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("burst %s: %d connections, all greeted after %.1f ms (median %.1f ms)" % (
            label, n, max(done), statistics.median(done)))


async def proxy(lport, target, delay_ms, rate_kbit):
    host, port = addr(target)
    delay = delay_ms / 1000.0
    rate = rate_kbit * 1000 / 8  # bytes per second, 0 = unlimited

    async def pipe(reader, writer):
        # A queue of (due time, chunk): bytes leave `delay` after they came
        # in, no faster than `rate`.
        q = asyncio.Queue()

        async def read():
            while True:
                b = await reader.read(1 << 14)
                await q.put((time.monotonic() + delay, b))
                if not b:
                    return

        async def write():
            free_at = time.monotonic()
            while True:
                due, b = await q.get()
                now = time.monotonic()
                wait = max(due, free_at) - now
                if wait > 0:
                    await asyncio.sleep(wait)
                if not b:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(b)
                await writer.drain()
                if rate:
                    free_at = max(free_at, now) + len(b) / rate

        await asyncio.gather(read(), write())

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection(host, port)
        except OSError:
            cw.close()
            return
        try:
            await asyncio.gather(pipe(cr, sw), pipe(sr, cw))
        except (ConnectionError, OSError):
            pass
        cw.close()
        sw.close()

    server = await asyncio.start_server(handle, "127.0.0.1", lport)
    async with server:
        await server.serve_forever()


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "sink":
        serve(int(args[0]), sink_conn)
    elif cmd == "echo":
        serve(int(args[0]), echo_conn)
    elif cmd == "push":
        push(args[0].split(","), args[1].split(","), args[2], int(args[3]))
    elif cmd == "ping":
        ping(args[0].split(","), args[1].split(","), int(args[2]))
    elif cmd == "smtp":
        smtp(args[0].split(","), args[1].split(","), int(args[2]), args[3])
    elif cmd == "burst":
        burst(args[0].split(","), args[1].split(","), int(args[2]))
    elif cmd == "proxy":
        asyncio.run(proxy(int(args[0]), args[1], float(args[2]), float(args[3])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
