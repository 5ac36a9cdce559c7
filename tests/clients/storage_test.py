#!/usr/bin/env python3
"""gpu-server against real storage APIs on loopback, reached through object_store's clients as
an operator configures them:

- S3: moto's server (PyPI `moto[server]`), `s3://bucket[/prefix]` with `AWS_ENDPOINT` and
  `AWS_ALLOW_HTTP`;
- GCS: gcp-storage-emulator (PyPI), `gs://bucket[/prefix]` with a service-account file that
  names the endpoint (`gcs_base_url`) and turns OAuth off, as object_store's own tests do.

On each, results and shares are stored, read back and cached. On GCS, the server is killed
(SIGKILL) while a share's images are being written: no `meta.json` is left pointing at a missing
image, the share is not served, and sharing again after a restart completes it. On S3, a slow
store (a loopback proxy that holds every connection) is given up on after
`STORAGE_TIMEOUT_SECS`, cleanly: the cut-out is still answered, sharing is a 503.

Run by scripts/test:
    GPU_SERVER_BIN=target/debug/gpu-server .cache/testvenv-storage/bin/python tests/clients/storage_test.py
"""

import email.utils
import json
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime
from http import HTTPStatus

import boto3
from gcp_storage_emulator import server as gcs_server
from gcp_storage_emulator.exceptions import NotFound

ROOT = pathlib.Path(__file__).resolve().parents[2]
PHOTO = (ROOT / "tests/fixtures/u2netp/chelsea.png").read_bytes()
SECRET = "storage-test-secret-0123456789"
SHARE_FILES = ("meta.json", "image.png", "og.jpg", "pin.jpg", "square.jpg")


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


def start_server(env, cache, shares, timeout_secs=10, ready=True):
    """`gpu-server serve` on a free port with the given stores; returns (process, base URL)."""
    port = free_port()
    env = dict(os.environ, STORAGE_TIMEOUT_SECS=str(timeout_secs), RATE_LIMIT_PER_MINUTE="0",
               LOG_LEVEL="warn", **env)
    proc = subprocess.Popen(
        [os.environ["GPU_SERVER_BIN"], "serve", "--port", str(port), "--storage-bucket", cache,
         "--customer-storage-bucket", shares, "--share-token-secret", SECRET],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait(base + "/health")
    if ready:
        wait(base + "/ready")
    return proc, base


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


class StoredAndReadBack:
    """The same test on every store: `self.base` serves `gs://cache` or `s3://cache` and
    `…://shares/pets`; `self.object(bucket, key)` and `self.keys(bucket, prefix)` read the store
    through its own API."""

    def test_results_and_shares_are_stored_read_back_and_cached(self):
        status, headers, cut = post(self.base, "/api/v2/remove-background", {"image": PHOTO, "refine": "off"})
        self.assertEqual(status, 200, cut[:300])
        headers = lower(headers)
        rid, tok = headers["x-result-id"], headers["x-share-token"]
        self.assertEqual(headers["x-cache"], "MISS")
        self.assertEqual(self.object("cache", f"results/{rid}"), cut, "the stored result is the answer")
        box = json.loads(self.object("cache", f"results/{rid}.box"))
        self.assertEqual(box["width"], int(headers["x-foreground-width"]))
        status, headers, again = post(self.base, "/api/v2/remove-background", {"image": PHOTO, "refine": "off"})
        self.assertEqual((status, lower(headers)["x-cache"]), (200, "HIT"))
        self.assertEqual(again, cut)
        self.assertEqual(get(self.base, f"/api/v2/results/{rid}"), (200, cut))

        status, _, body = post(self.base, "/api/v2/share-image",
                               {"result_id": rid, "token": tok, "platform": "pinterest"}, accept="application/json")
        self.assertEqual(status, 200, body[:300])
        sid = json.loads(body)["id"]
        self.assertEqual(self.keys("shares", f"pets/shares/{sid}/"),
                         {f"pets/shares/{sid}/{f}" for f in SHARE_FILES})
        status, og = get(self.base, f"/og/{sid}.jpg")
        self.assertEqual((status, og), (200, self.object("shares", f"pets/shares/{sid}/og.jpg")))
        status, page = get(self.base, f"/s/{sid}")
        self.assertEqual(status, 200)
        self.assertIn(f"/og/{sid}.jpg".encode(), page)


class S3Storage(StoredAndReadBack, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.procs = []
        moto_port = free_port()
        moto = pathlib.Path(sys.executable).parent / "moto_server"
        cls.procs.append(subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(moto_port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        cls.endpoint = f"http://127.0.0.1:{moto_port}"
        wait(cls.endpoint + "/moto-api/")
        cls.s3 = boto3.client("s3", endpoint_url=cls.endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        for bucket in ("cache", "shares"):
            cls.s3.create_bucket(Bucket=bucket)
        cls.base = cls.start(moto_port, timeout_secs=10)
        cls.slow = SlowProxy(moto_port, delay=4)
        cls.slow_base = cls.start(cls.slow.port, timeout_secs=1, ready=False)

    @classmethod
    def start(cls, s3_port, timeout_secs, ready=True):
        env = dict(AWS_ENDPOINT=f"http://127.0.0.1:{s3_port}", AWS_ALLOW_HTTP="true",
                   AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")
        proc, base = start_server(env, "s3://cache", "s3://shares/pets", timeout_secs, ready)
        cls.procs.append(proc)
        return base

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            p.terminate()
            p.wait(timeout=30)

    def object(self, bucket, key):
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket, prefix):
        return {o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}
    def test_a_slow_store_is_given_up_on_cleanly(self):
        status, _ = get(self.slow_base, "/ready")
        self.assertEqual(status, 503, "a store that does not answer in time is not ready")
        t0 = time.time()
        status, headers, cut = post(self.slow_base, "/api/v2/remove-background", {"image": PHOTO, "refine": "off"})
        self.assertEqual(status, 200, "the cut-out is still answered, uncached")
        self.assertTrue(cut.startswith(b"\x89PNG"))
        tok = lower(headers)["x-share-token"]
        status, headers, body = post(self.slow_base, "/api/v2/share-image",
                                     {"image": cut, "token": tok, "platform": "facebook"}, accept="application/json")
        self.assertEqual(status, 503, body[:300])
        self.assertEqual(json.loads(body)["error"]["code"], "storage_unavailable")
        self.assertIn("retry-after", {k.lower() for k in headers})
        self.assertLess(time.time() - t0, 30, "bounded by STORAGE_TIMEOUT_SECS, not the store")


class Gate:
    """Holds the `nth` object write under `prefix` until released, then fails it unstored: a
    write the server started and never finished."""

    def __init__(self):
        self.prefix, self.nth, self.count = None, 0, 0
        self.held, self.release = threading.Event(), threading.Event()

    def arm(self, prefix, nth):
        self.prefix, self.nth, self.count = prefix, nth, 0
        self.held.clear()
        self.release.clear()

    def holds(self, key):
        if self.prefix is None or not key.startswith(self.prefix):
            return False
        self.count += 1
        if self.count != self.nth:
            return False
        self.held.set()
        self.release.wait(120)
        self.prefix = None
        return True


def gcs_emulator(gate):
    """gcp-storage-emulator in this process. Its JSON API is complete, but its XML API, which
    object_store uses for objects, lacks what real GCS sends and object_store needs: `HEAD`, and
    `ETag` and `Last-Modified` on uploads and downloads. Those three are added here, from the
    emulator's own object metadata; and object writes pass through `gate`."""
    xml = next(h for regex, h in gcs_server.HANDLERS if regex.startswith("^/(?P<bucket_name>"))
    download, upload = xml[gcs_server.GET], xml[gcs_server.PUT]

    def validators(request, response, storage):
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except NotFound:
            return
        response["ETag"] = '"{}"'.format(obj["md5Hash"])
        updated = datetime.fromisoformat(obj["updated"].replace("Z", "+00:00"))
        response["Last-Modified"] = email.utils.format_datetime(updated, usegmt=True)

    def get_object(request, response, storage, *args, **kwargs):
        download(request, response, storage, *args, **kwargs)
        validators(request, response, storage)

    def put_object(request, response, storage, *args, **kwargs):
        request.data  # read the whole body first, as a server does before answering
        if gate.holds(request.params["object_id"]):
            response.status = HTTPStatus.SERVICE_UNAVAILABLE
            return
        upload(request, response, storage, *args, **kwargs)
        validators(request, response, storage)

    xml[gcs_server.GET], xml[gcs_server.PUT] = get_object, put_object

    def do_head(handler):
        # A GET whose body is not sent: the headers go out in one write, the body in the next.
        real = handler.wfile

        class HeadersOnly:
            sent = False

            def write(self, data):
                if not self.sent:
                    self.sent = True
                    return real.write(data)
                return len(data)

            def flush(self):
                real.flush()

        handler.wfile = HeadersOnly()
        try:
            gcs_server.Router(handler).handle(gcs_server.GET)
        finally:
            handler.wfile = real

    gcs_server.RequestHandler.do_HEAD = do_head
    # The held write's client is dead by the time it is answered: not an error of the test.
    http_server = gcs_server.server.HTTPServer
    report = http_server.handle_error

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            report(self, request, client_address)

    http_server.handle_error = handle_error
    # Missing objects are answered 404 as they should be, and also logged as errors.
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
    port = free_port()
    emulator = gcs_server.create_server("127.0.0.1", port, in_memory=True)
    emulator.start()
    return emulator, f"http://127.0.0.1:{port}"


class GcsStorage(StoredAndReadBack, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.gate = Gate()
        cls.emulator, cls.endpoint = gcs_emulator(cls.gate)
        for bucket in ("cache", "shares"):
            req = urllib.request.Request(f"{cls.endpoint}/storage/v1/b?project=test", method="POST",
                                         data=json.dumps({"name": bucket}).encode(),
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).read()
        account = pathlib.Path(cls.dir.name) / "service-account.json"
        account.write_text(json.dumps({"private_key": "", "private_key_id": "", "client_email": "",
                                       "disable_oauth": True, "gcs_base_url": cls.endpoint}))
        cls.env = {"GOOGLE_SERVICE_ACCOUNT": str(account)}
        cls.proc, cls.base = cls.start()

    @classmethod
    def start(cls):
        return start_server(cls.env, "gs://cache", "gs://shares/pets")

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=30)
        cls.emulator.stop()
        cls.dir.cleanup()

    def object(self, bucket, key):
        quoted = urllib.parse.quote(key, safe="")
        with urllib.request.urlopen(f"{self.endpoint}/download/storage/v1/b/{bucket}/o/{quoted}?alt=media",
                                    timeout=10) as r:
            return r.read()

    def keys(self, bucket, prefix):
        query = urllib.parse.urlencode({"prefix": prefix})
        with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b/{bucket}/o?{query}", timeout=10) as r:
            return {o["name"] for o in json.load(r).get("items", [])}

    def assert_no_manifest_points_at_a_missing_image(self):
        keys = self.keys("shares", "pets/shares/")
        for key in (k for k in keys if k.endswith("/meta.json")):
            folder = key[: -len("meta.json")]
            for f in SHARE_FILES:
                self.assertIn(folder + f, keys, f"{key} is stored but {f} is not")

    def test_a_server_killed_mid_share_leaves_no_half_written_share(self):
        proc, base = self.start()
        try:
            # Another result than the other test's (which expects a cache miss).
            status, headers, _ = post(base, "/api/v2/remove-background",
                                      {"image": PHOTO, "refine": "off", "crop": "true"})
            self.assertEqual(status, 200)
            headers = lower(headers)
            rid, tok = headers["x-result-id"], headers["x-share-token"]
            fields = {"result_id": rid, "token": tok, "platform": "facebook", "title": "Killed"}
            before = self.keys("shares", "pets/shares/")
            # The share's second object write is held; the server dies while it waits.
            self.gate.arm("pets/shares/", 2)

            def share_and_lose_the_answer():
                try:
                    post(base, "/api/v2/share-image", fields, accept="application/json", timeout=60)
                except OSError:
                    pass  # the server died mid-request, as meant

            threading.Thread(target=share_and_lose_the_answer, daemon=True).start()
            self.assertTrue(self.gate.held.wait(60), "the share never wrote its objects")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            self.gate.release.set()
            if proc.poll() is None:
                proc.kill()
        time.sleep(0.5)  # writes already queued at the emulator land (or not)
        written = self.keys("shares", "pets/shares/") - before
        self.assertTrue(written, "the server died before writing anything: nothing was tested")
        self.assertFalse([k for k in written if k.endswith("meta.json")],
                         f"a manifest was written before its images: {sorted(written)}")
        self.assert_no_manifest_points_at_a_missing_image()
        sid = next(iter(written)).split("/")[2]
        self.assertEqual(get(self.base, f"/s/{sid}")[0], 404, "a half-written share is not served")
        self.assertEqual(get(self.base, f"/og/{sid}.jpg")[0], 404, "nor are its images")

        # Sharing again (another instance, the same token) completes it.
        status, _, body = post(self.base, "/api/v2/share-image", fields, accept="application/json")
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(json.loads(body)["id"], sid)
        self.assertEqual(self.keys("shares", f"pets/shares/{sid}/"),
                         {f"pets/shares/{sid}/{f}" for f in SHARE_FILES})
        self.assert_no_manifest_points_at_a_missing_image()
        self.assertEqual(get(self.base, f"/s/{sid}")[0], 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
