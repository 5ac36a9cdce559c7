#!/usr/bin/env python3
"""A real remove.bg client against the real gpu-server: PyPI `removebg` 0.4 (the client whose
users point it elsewhere by setting `removebg.removebg.API_ENDPOINT`), unchanged.

Run by scripts/test with the client's virtualenv:
    GPU_SERVER_BIN=target/debug/gpu-server .cache/testvenv-clients/bin/python \
        tests/clients/removebg_client_test.py
It starts `gpu-server serve` on a free port with API_KEYS set, and checks that the client's
file, base64 and error paths work as they do against remove.bg.
"""

import base64
import os
import pathlib
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import urllib.request

import requests
import removebg.removebg as removebg_module
from removebg import RemoveBg

ROOT = pathlib.Path(__file__).resolve().parents[2]
PHOTO = ROOT / "tests/fixtures/u2netp/chelsea.png"
KEY = "client-test-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_size(data):
    """(width, height) from a PNG's IHDR; fails on anything else."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    return struct.unpack(">II", data[16:24])


def jpeg_size(data):
    """(width, height) from a JPEG's SOF marker."""
    assert data[:2] == b"\xff\xd8", data[:2]
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    raise AssertionError("no SOF marker")


class RemoveBgClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        port = free_port()
        cls.base = f"http://127.0.0.1:{port}"
        env = dict(os.environ, API_KEYS=f"other,{KEY}", LOG_LEVEL="warn")
        d = cls.dir.name
        cls.server = subprocess.Popen(
            [os.environ["GPU_SERVER_BIN"], "serve", "--port", str(port),
             "--storage-bucket", f"{d}/cache", "--customer-storage-bucket", f"{d}/shares"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(cls.base + "/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline or cls.server.poll() is not None:
                raise RuntimeError("gpu-server did not become ready")
            time.sleep(0.2)
        # How the client's users point it elsewhere.
        removebg_module.API_ENDPOINT = cls.base + "/v1.0/removebg"

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(timeout=30)
        cls.dir.cleanup()

    def client(self, key=KEY):
        return RemoveBg(key, os.path.join(self.dir.name, "client.log"))

    def test_file_upload_at_preview_size(self):
        src = pathlib.Path(self.dir.name) / "cat.png"
        src.write_bytes(PHOTO.read_bytes())
        self.client().remove_background_from_img_file(str(src))
        out = (pathlib.Path(str(src) + "_no_bg.png")).read_bytes()
        # The client's default size is `regular`: remove.bg's 0.25 MP preview, which this
        # 451x300 photo is under, so it keeps its size.
        self.assertEqual(png_size(out), (451, 300))

    def test_base64_at_full_size_on_a_colour(self):
        out = pathlib.Path(self.dir.name) / "b64.png"
        data = base64.b64encode(PHOTO.read_bytes()).decode()
        self.client().remove_background_from_base64_img(
            data, size="full", new_file_name=str(out), bg_color="81d4fa")
        # An opaque result: remove.bg's format=auto makes it a JPEG (the client names it .png).
        self.assertEqual(jpeg_size(out.read_bytes()), (451, 300))

    def test_refusals_reach_the_client_as_remove_bg_errors(self):
        with self.assertRaises(requests.HTTPError) as e:
            self.client("wrong").remove_background_from_base64_img("aGk=")
        self.assertEqual(e.exception.response.status_code, 403)
        self.assertEqual(e.exception.response.json()["errors"][0]["code"], "auth_failed")
        with self.assertRaises(requests.HTTPError) as e:
            self.client().remove_background_from_img_url("https://example.com/cat.jpg")
        self.assertEqual(e.exception.response.status_code, 400)
        err = e.exception.response.json()["errors"][0]
        self.assertEqual(err["code"], "unsupported_parameter")
        self.assertIn("image_url", err["title"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
