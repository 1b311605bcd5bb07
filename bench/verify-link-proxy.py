#!/usr/bin/env python3
"""Checks examples/link_proxy.rs against the link it is told to emulate.

For each profile it starts the proxy in front of a small loopback server and
measures, through it:
  * RTT: 20 one-byte ping-pongs (median and spread);
  * rate down: a request byte, then N bytes back; rate = N*8 / (t - RTT);
  * rate up: N bytes sent, then one byte back;   rate = N*8 / (t - RTT);
  * the proxy's byte counters against the bytes really sent.

    python3 bench/verify-link-proxy.py target/release/examples/link_proxy
"""
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PROFILES = [
    # name, down bit/s, up bit/s, RTT ms, bytes down, bytes up
    ("modem", 1_000_000, 256_000, 100, 500_000, 128_000),
    ("dsl", 10_000_000, 1_000_000, 40, 5_000_000, 500_000),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def recv_exact(sock, n):
    got = 0
    while got < n:
        b = sock.recv(min(1 << 16, n - got))
        if not b:
            raise EOFError(f"closed after {got} of {n} bytes")
        got += len(b)


def server(listener):
    """Serves one request per connection: 'p' echo 20 bytes one by one,
    'd'+size: send size bytes, 'u'+size: read size bytes, answer one byte."""
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        kind = conn.recv(1)
        if kind == b"p":
            for _ in range(20):
                recv_exact(conn, 1)
                conn.sendall(b"x")
        else:
            size = int(conn.recv(16).decode().strip())
            if kind == b"d":
                conn.sendall(b"m" * size)
            else:
                conn.sendall(b"k")  # header read; now the upload
                recv_exact(conn, size)
                conn.sendall(b"k")
        conn.close()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/examples/link_proxy"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    target = listener.getsockname()[1]
    threading.Thread(target=server, args=(listener,), daemon=True).start()
    ok = True
    print(f"{'profile':8} {'set':>22} {'RTT med (min-max) ms':>22} {'down kbit/s':>12} {'up kbit/s':>10}  counters")
    for name, down_bps, up_bps, rtt_ms, n_down, n_up in PROFILES:
        port = free_port()
        stats = tempfile.NamedTemporaryFile(prefix="link-", suffix=".stats", delete=False).name
        proxy = subprocess.Popen(
            [binary, "--listen", f"127.0.0.1:{port}", "--target", f"127.0.0.1:{target}",
             "--down-bps", str(down_bps), "--up-bps", str(up_bps), "--rtt-ms", str(rtt_ms),
             "--stats", stats],
            stdout=subprocess.PIPE, text=True)
        proxy.stdout.readline()  # "listening on ..."

        s = connect(port)
        s.sendall(b"p")
        rtts = []
        for _ in range(20):
            t = time.monotonic()
            s.sendall(b"x")
            recv_exact(s, 1)
            rtts.append((time.monotonic() - t) * 1000)
        s.close()
        rtt = statistics.median(rtts)

        s = connect(port)
        t = time.monotonic()
        s.sendall(b"d" + str(n_down).encode().ljust(16))
        recv_exact(s, n_down)
        down = n_down * 8 / (time.monotonic() - t - rtt_ms / 1000)
        s.close()

        s = connect(port)
        s.sendall(b"u" + str(n_up).encode().ljust(16))
        recv_exact(s, 1)
        t = time.monotonic()
        s.sendall(b"u" * n_up)
        recv_exact(s, 1)
        up = n_up * 8 / (time.monotonic() - t - rtt_ms / 1000)
        s.close()

        time.sleep(0.3)
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=10)
        counted = dict(line.split() for line in open(stats))
        os.unlink(stats)
        # What the client sent and what the server sent, request headers included.
        want_up = 1 + 20 + 17 + 17 + n_up
        want_down = 20 + n_down + 2
        counters_ok = int(counted["up_bytes"]) == want_up and int(counted["down_bytes"]) == want_down
        good = (abs(rtt - rtt_ms) <= max(3, 0.05 * rtt_ms)
                and abs(down / down_bps - 1) <= 0.05 and abs(up / up_bps - 1) <= 0.05
                and counters_ok)
        ok &= good
        print(f"{name:8} {down_bps/1000:>6.0f}/{up_bps/1000:.0f} kbit/s {rtt_ms:>4} ms "
              f"{rtt:>9.1f} ({min(rtts):.1f}-{max(rtts):.1f}) {down/1000:>12.1f} {up/1000:>10.1f}  "
              f"up {counted['up_bytes']}/{want_up} down {counted['down_bytes']}/{want_down}"
              f"  {'ok' if good else 'OFF'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
