#!/usr/bin/env python3
"""gpu-server against a real S3 API: moto's server (PyPI `moto[server]`) on loopback, reached
through object_store's S3 client as an operator configures it (`s3://bucket[/prefix]`,
`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`). Results and shares are stored, read back and cached; and a
slow store (a loopback proxy that holds every connection) is given up on after
`STORAGE_TIMEOUT_SECS`, cleanly: the cut-out is still answered, sharing is a 503.

Run by scripts/test:
    GPU_SERVER_BIN=target/debug/gpu-server .cache/testvenv-moto/bin/python tests/clients/s3_storage_test.py
"""

import json
import os
import pathlib
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid

import boto3

ROOT = pathlib.Path(__file__).resolve().parents[2]
PHOTO = (ROOT / "tests/fixtures/u2netp/chelsea.png").read_bytes()
SECRET = "s3-test-secret-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url, want=200, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == want:
                    return
        except urllib.error.HTTPError as e:
            if e.code == want:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer {want}")


def multipart(fields):
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in fields.items():
        if isinstance(value, bytes):
            head = f'Content-Disposition: form-data; name="{name}"; filename="f.png"\r\nContent-Type: application/octet-stream\r\n\r\n'
        else:
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
            value = value.encode()
        body += f"--{boundary}\r\n".encode() + head.encode() + value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(base, path, fields, accept=None, timeout=120):
    body, ctype = multipart(fields)
    req = urllib.request.Request(base + path, data=body, method="POST", headers={"Content-Type": ctype})
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get(base, path):
    try:
        with urllib.request.urlopen(base + path, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class SlowProxy:
    """A loopback TCP proxy that holds each connection `delay` seconds before forwarding."""

    def __init__(self, target_port, delay):
        self.target, self.delay = target_port, delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        time.sleep(self.delay)
        try:
            up = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            conn.close()
            return

        def pipe(a, b):
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                b.close()

        threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
        pipe(up, conn)


class S3Storage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.procs = []
        cls.dir = tempfile.TemporaryDirectory()
        moto_port = free_port()
        moto = pathlib.Path(os.environ.get("VIRTUAL_ENV", "")) / "bin/moto_server"
        if not moto.exists():
            moto = pathlib.Path(__import__("sys").executable).parent / "moto_server"
        cls.procs.append(subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(moto_port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        cls.endpoint = f"http://127.0.0.1:{moto_port}"
        wait(cls.endpoint + "/moto-api/")
        cls.s3 = boto3.client("s3", endpoint_url=cls.endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        for bucket in ("cache", "shares"):
            cls.s3.create_bucket(Bucket=bucket)
        cls.base = cls.start_server(moto_port, timeout_secs=10)
        cls.slow = SlowProxy(moto_port, delay=4)
        cls.slow_base = cls.start_server(cls.slow.port, timeout_secs=1, ready=False)

    @classmethod
    def start_server(cls, s3_port, timeout_secs, ready=True):
        port = free_port()
        env = dict(os.environ, AWS_ENDPOINT=f"http://127.0.0.1:{s3_port}", AWS_ALLOW_HTTP="true",
                   AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
                   STORAGE_TIMEOUT_SECS=str(timeout_secs), RATE_LIMIT_PER_MINUTE="0", LOG_LEVEL="warn")
        cls.procs.append(subprocess.Popen(
            [os.environ["GPU_SERVER_BIN"], "serve", "--port", str(port),
             "--storage-bucket", "s3://cache", "--customer-storage-bucket", "s3://shares/pets",
             "--share-token-secret", SECRET],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        wait(base + "/health")
        if ready:
            wait(base + "/ready")
        return base

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            p.terminate()
            p.wait(timeout=30)
        cls.dir.cleanup()

    def object(self, bucket, key):
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def test_results_and_shares_are_stored_read_back_and_cached(self):
        status, headers, cut = post(self.base, "/api/v2/remove-background", {"image": PHOTO, "refine": "off"})
        self.assertEqual(status, 200, cut[:300])
        headers = {k.lower(): v for k, v in headers.items()}
        rid, tok = headers["x-result-id"], headers["x-share-token"]
        self.assertEqual(headers["x-cache"], "MISS")
        self.assertEqual(self.object("cache", f"results/{rid}"), cut, "the stored result is the answer")
        box = json.loads(self.object("cache", f"results/{rid}.box"))
        self.assertEqual(box["width"], int(headers["x-foreground-width"]))
        status, headers, again = post(self.base, "/api/v2/remove-background", {"image": PHOTO, "refine": "off"})
        self.assertEqual((status, {k.lower(): v for k, v in headers.items()}["x-cache"]), (200, "HIT"))
        self.assertEqual(again, cut)
        self.assertEqual(get(self.base, f"/api/v2/results/{rid}"), (200, cut))

        status, _, body = post(self.base, "/api/v2/share-image",
                               {"result_id": rid, "token": tok, "platform": "pinterest"}, accept="application/json")
        self.assertEqual(status, 200, body[:300])
        sid = json.loads(body)["id"]
        keys = {o["Key"] for o in self.s3.list_objects_v2(Bucket="shares", Prefix=f"pets/shares/{sid}/")["Contents"]}
        self.assertEqual(keys, {f"pets/shares/{sid}/{f}" for f in ("meta.json", "image.png", "og.jpg", "pin.jpg", "square.jpg")})
        status, og = get(self.base, f"/og/{sid}.jpg")
        self.assertEqual((status, og), (200, self.object("shares", f"pets/shares/{sid}/og.jpg")))
        status, page = get(self.base, f"/s/{sid}")
        self.assertEqual(status, 200)
        self.assertIn(f"/og/{sid}.jpg".encode(), page)

    def test_a_slow_store_is_given_up_on_cleanly(self):
        status, _ = get(self.slow_base, "/ready")
        self.assertEqual(status, 503, "a store that does not answer in time is not ready")
        t0 = time.time()
        status, headers, cut = post(self.slow_base, "/api/v2/remove-background", {"image": PHOTO, "refine": "off"})
        self.assertEqual(status, 200, "the cut-out is still answered, uncached")
        self.assertTrue(cut.startswith(b"\x89PNG"))
        tok = {k.lower(): v for k, v in headers.items()}["x-share-token"]
        status, headers, body = post(self.slow_base, "/api/v2/share-image",
                                     {"image": cut, "token": tok, "platform": "facebook"}, accept="application/json")
        self.assertEqual(status, 503, body[:300])
        self.assertEqual(json.loads(body)["error"]["code"], "storage_unavailable")
        self.assertIn("retry-after", {k.lower() for k in headers})
        self.assertLess(time.time() - t0, 30, "bounded by STORAGE_TIMEOUT_SECS, not the store")


if __name__ == "__main__":
    unittest.main(verbosity=2)
