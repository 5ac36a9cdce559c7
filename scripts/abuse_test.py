#!/usr/bin/env python3
"""Abuse test (not a unit test; called by scripts/abuse-test): 200 clients on loopback addresses
127.0.0.2-201 hammer the routes that cost at 10x the per-client limit for --seconds, while a few
well-behaved clients (127.0.1.x) ask at half the limit. Prints, and checks:
- the limit holds per client: no client got more than its allowance (burst + rate x time) of
  answers that were not 429;
- the day's budget is never exceeded: cut-outs made (x-cache MISS) <= DAILY_IMAGE_BUDGET;
- the well-behaved clients were never refused 429 rate_limited;
- the server's resident memory stays flat (last third vs first third of the run).
Standard library only: raw HTTP/1.1 over sockets bound to each client's address.
"""

import argparse
import json
import os
import random
import socket
import statistics
import struct
import sys
import threading
import time
import zlib


def tiny_png(seed):
    """A distinct 32x24 RGB PNG per seed (so each is a new cut-out)."""
    w, h = 32, 24
    rng = random.Random(seed)
    raw = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(w * 3)) for _ in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def form(fields):
    b = "abuseBoundary"
    body = b""
    for name, value in fields.items():
        if isinstance(value, bytes):
            body += f'--{b}\r\nContent-Disposition: form-data; name="{name}"; filename="p.png"\r\n\r\n'.encode() + value + b"\r\n"
        else:
            body += f'--{b}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    return body + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def ask(port, source, path, fields, timeout=30):
    body, ctype = form(fields)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(head + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    except OSError:
        return None, {}
    finally:
        s.close()
    line, _, rest = data.partition(b"\r\n")
    try:
        status = int(line.split()[1])
    except (IndexError, ValueError):
        return None, {}
    headers = {}
    for h in rest.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--limit", type=int, required=True, help="the server's RATE_LIMIT_PER_MINUTE")
    ap.add_argument("--budget", type=int, required=True, help="the server's DAILY_IMAGE_BUDGET")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    per_second = a.limit / 60 * 10  # 10x the limit
    stop = time.time() + a.seconds
    lock = threading.Lock()
    stats = {"status": {}, "made": 0, "polite_refused": 0, "polite_ok": 0}
    allowed = {}

    def abuser(i):
        source = f"127.0.{i // 250}.{2 + i % 250}"
        n = 0
        while time.time() < stop:
            t0 = time.time()
            if n % 2:
                status, h = ask(a.port, source, "/api/v2/remove-background",
                                {"image": tiny_png(i * 100_000 + n), "refine": "off"})
            else:
                status, h = ask(a.port, source, "/api/v2/share-image", {"platform": "facebook"})
            n += 1
            with lock:
                stats["status"][status] = stats["status"].get(status, 0) + 1
                if status != 429:
                    allowed[source] = allowed.get(source, 0) + 1
                if status == 200 and h.get("x-cache") == "MISS":
                    stats["made"] += 1
            time.sleep(max(0.0, 1 / per_second - (time.time() - t0)))

    def polite(i):
        source = f"127.0.1.{10 + i}"
        while time.time() < stop:
            status, _ = ask(a.port, source, "/api/v2/share-image", {"platform": "facebook"})
            with lock:
                if status == 429:
                    stats["polite_refused"] += 1
                elif status is not None:
                    stats["polite_ok"] += 1
            time.sleep(60 / a.limit * 2)

    rss = []
    threads = [threading.Thread(target=abuser, args=(i,)) for i in range(a.clients)]
    threads += [threading.Thread(target=polite, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    while time.time() < stop:
        rss.append(rss_kib(a.pid))
        time.sleep(1)
    for t in threads:
        t.join()
    allowance = a.limit + a.limit * a.seconds / 60 + 1
    most = max(allowed.values()) if allowed else 0
    third = max(1, len(rss) // 3)
    first, last = statistics.mean(rss[:third]), statistics.mean(rss[-third:])
    result = {
        "clients": a.clients, "seconds": a.seconds, "limit_per_minute": a.limit,
        "answers": {str(k): v for k, v in sorted(stats["status"].items(), key=lambda kv: str(kv[0]))},
        "most_allowed_per_client": most, "allowance_per_client": allowance,
        "cutouts_made": stats["made"], "budget": a.budget,
        "polite_answered": stats["polite_ok"], "polite_refused_429": stats["polite_refused"],
        "rss_mib_first_third": round(first / 1024, 1), "rss_mib_last_third": round(last / 1024, 1),
    }
    print(json.dumps(result, indent=1))
    checks = [
        ("the limit holds per client", most <= allowance),
        ("the budget is never exceeded", stats["made"] <= a.budget),
        ("well-behaved clients are answered", stats["polite_refused"] == 0 and stats["polite_ok"] > 0),
        ("memory stays flat", last <= first * 1.3 + 20 * 1024),
    ]
    for name, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
