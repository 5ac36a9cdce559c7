// The built Worker (edge-share/build) in the real runtime: workerd, through Miniflare, with a
// local R2 bucket, the Cache API and the rate limiter. One test also runs the real gpu-server
// (GPU_SERVER_BIN) to check that both shells store the same bytes for the same share.
//
//   scripts/build-worker && GPU_SERVER_BIN=target/debug/gpu-server node --test edge-share/test/worker.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { Miniflare } from "miniflare";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const SECRET = "edge-share-test-secret-0123456789";
const BASE = "https://share.test";
const photo = readFileSync(join(root, "tests/fixtures/u2netp/chelsea.png"));

function worker(extra = {}) {
  return new Miniflare({
    modules: true,
    scriptPath: join(root, "edge-share/build/index.js"),
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: "2026-04-01",
    r2Buckets: ["BUCKET"],
    bindings: {
      SITE_NAME: "Pet Cutout",
      SHOP_URL: "https://shop.test/",
      CORS_ALLOWED_ORIGINS: "https://shop.test",
      PUBLIC_BASE_URL: "",
      SHARE_TOKEN_SECRET: SECRET,
      BENCH_ROUTES: "1",
      ...extra.bindings,
    },
    ratelimits: { SHARE_LIMITER: { simple: { limit: extra.limit ?? 1000, period: 60 } } },
    cf: false,
  });
}

/** A token as gpu-server signs it (shared::token): `<id>.<exp>.<hmac-sha256 hex>`. */
function token(id = "ab".repeat(16), expiresAt = Math.floor(Date.now() / 1000) + 3600, secret = SECRET) {
  const tag = createHmac("sha256", secret).update(`share-token/v1|${id}|${expiresAt}`).digest("hex");
  return `${id}.${expiresAt}.${tag}`;
}

function form(fields) {
  const f = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Uint8Array) f.append(k, new Blob([v]), "upload");
    else f.append(k, v);
  }
  return f;
}

/** Width and height from a JPEG's SOF marker. */
function jpegSize(buf) {
  assert.equal(buf[0], 0xff);
  assert.equal(buf[1], 0xd8, "a JPEG");
  let i = 2;
  while (i < buf.length) {
    if (buf[i] !== 0xff) throw new Error("bad marker");
    const m = buf[i + 1];
    const len = buf.readUInt16BE(i + 2);
    if (m >= 0xc0 && m <= 0xc2) return [buf.readUInt16BE(i + 7), buf.readUInt16BE(i + 5)];
    i += 2 + len;
  }
  throw new Error("no SOF");
}

/** A multipart body as bytes with its content type (Miniflare's fetch does not take Node's FormData). */
async function multipart(fields, headers = {}) {
  const req = new Request("http://encode.invalid/", { method: "POST", body: form(fields) });
  return {
    method: "POST",
    headers: { "content-type": req.headers.get("content-type"), ...headers },
    body: Buffer.from(await req.arrayBuffer()),
  };
}

let mf;
before(async () => {
  mf = worker();
  await mf.ready;
});
after(async () => {
  await mf?.dispose();
});

async function share(fields, headers = {}) {
  const res = await mf.dispatchFetch(`${BASE}/api/v2/share-image`, await multipart(fields, headers));
  const body = await res.text();
  let json = null;
  try {
    json = JSON.parse(body);
  } catch {}
  return { res, json, body };
}

async function untilHit(url, init) {
  for (let i = 0; i < 50; i++) {
    const res = await mf.dispatchFetch(url, init);
    await res.arrayBuffer();
    if (res.headers.get("x-edge-cache") === "HIT") return res;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`${url} never came from the edge cache`);
}

test("health answers, unknown routes answer route_not_found", async () => {
  const h = await mf.dispatchFetch(`${BASE}/health`);
  assert.equal(h.status, 200);
  assert.deepEqual(await h.json(), { status: "ok" });
  const r = await mf.dispatchFetch(`${BASE}/api/v2/share-images`);
  assert.equal(r.status, 404);
  assert.equal((await r.json()).error.code, "route_not_found");
  const root = await mf.dispatchFetch(`${BASE}/`);
  assert.equal(root.status, 404);
  assert.equal((await root.json()).error.code, "route_not_found");
  const wrongMethod = await mf.dispatchFetch(`${BASE}/s/${"ab".repeat(16)}`, { method: "PUT", body: "x" });
  assert.equal(wrongMethod.status, 405);
  assert.equal((await wrongMethod.json()).error.code, "method_not_allowed");
});

test("an upload needs a valid token", async () => {
  let r = await share({ image: photo, platform: "facebook" });
  assert.equal(r.res.status, 400, r.body);
  assert.equal(r.json.error.code, "missing_token");

  const bad = token().replace(/.$/, (c) => (c === "0" ? "1" : "0"));
  r = await share({ image: photo, platform: "facebook", token: bad });
  assert.equal(r.res.status, 403, r.body);
  assert.equal(r.json.error.code, "invalid_token");

  r = await share({ image: photo, platform: "facebook", token: token(undefined, undefined, "another-secret-0123456789") });
  assert.equal(r.res.status, 403, r.body);

  r = await share({ image: photo, platform: "facebook", token: token(undefined, 1000) });
  assert.equal(r.res.status, 403, r.body);
  assert.equal(r.json.error.code, "token_expired");

  // Nothing was stored by any refused upload.
  const listed = await (await mf.getR2Bucket("BUCKET")).list();
  assert.equal(listed.objects.length, 0);
});

test("a share stores its images and manifest, and serves page, cards and image", async () => {
  const r = await share({ image: photo, platform: "x", title: "Chelsea <3", token: token() });
  assert.equal(r.res.status, 200, r.body);
  const s = r.json;
  assert.match(s.id, /^[0-9a-f]{32}$/);
  assert.equal(s.share_url, `${BASE}/s/${s.id}`);
  assert.equal(s.og_image_url, `${BASE}/og/${s.id}.jpg`);
  assert.equal(s.platform, "x");
  assert.ok(s.intent_url.startsWith("https://x.com/intent/") || s.intent_url.startsWith("https://twitter.com/intent/"), s.intent_url);
  assert.ok(s.intent_url.includes(encodeURIComponent(s.share_url)), s.intent_url);
  for (const p of ["facebook", "pinterest", "whatsapp", "linkedin", "email", "copy"]) assert.ok(s.intents[p], p);

  const bucket = await mf.getR2Bucket("BUCKET");
  const keys = (await bucket.list({ prefix: `shares/${s.id}/` })).objects.map((o) => o.key).sort();
  assert.deepEqual(keys, ["image.png", "meta.json", "og.jpg", "pin.jpg", "square.jpg"].map((k) => `shares/${s.id}/${k}`));
  const meta = await (await bucket.get(`shares/${s.id}/meta.json`)).json();
  assert.equal(meta.title, "Chelsea <3");
  assert.deepEqual([meta.og.width, meta.og.height], [1200, 630]);

  // The same picture and title again: the same share, nothing rendered twice.
  const again = await share({ image: photo, platform: "facebook", title: "Chelsea <3", token: token() });
  assert.equal(again.json.id, s.id);

  // The page carries the tags, escaped.
  const page = await mf.dispatchFetch(s.share_url);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /text\/html/);
  const html = await page.text();
  assert.ok(html.includes(`<meta property="og:image" content="${s.og_image_url}">`), html);
  assert.ok(html.includes('name="twitter:card" content="summary_large_image"'), html);
  assert.ok(html.includes("Chelsea &lt;3"), "title escaped");
  assert.ok(!html.includes("Chelsea <3"), "title never raw");
  assert.ok(html.includes("https://shop.test/"), "shop link");

  // The Open Graph card: a 1200×630 JPEG, immutable, cached at the edge after the first ask.
  const og = await mf.dispatchFetch(s.og_image_url);
  assert.equal(og.status, 200);
  assert.equal(og.headers.get("content-type"), "image/jpeg");
  assert.equal(og.headers.get("cache-control"), "public, max-age=31536000, immutable");
  assert.equal(og.headers.get("x-edge-cache"), "MISS");
  const ogBytes = Buffer.from(await og.arrayBuffer());
  assert.deepEqual(jpegSize(ogBytes), [1200, 630]);
  const hit = await untilHit(s.og_image_url);
  assert.equal(hit.status, 200);
  const etag = og.headers.get("etag");
  assert.ok(etag);

  // Crawlers' conditional and range requests.
  const cond = await mf.dispatchFetch(s.og_image_url, { headers: { "if-none-match": etag } });
  assert.equal(cond.status, 304);
  const part = await mf.dispatchFetch(s.og_image_url, { headers: { range: "bytes=0-99" } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get("content-range"), `bytes 0-99/${ogBytes.length}`);
  assert.deepEqual(Buffer.from(await part.arrayBuffer()), ogBytes.subarray(0, 100));
  const tail = await mf.dispatchFetch(s.og_image_url, { headers: { range: "bytes=-10" } });
  assert.deepEqual(Buffer.from(await tail.arrayBuffer()), ogBytes.subarray(ogBytes.length - 10));
  const beyond = await mf.dispatchFetch(s.og_image_url, { headers: { range: `bytes=${ogBytes.length}-` } });
  assert.equal(beyond.status, 416);

  for (const [url, size] of [[s.pinterest_image_url, [1000, 1500]], [s.square_image_url, [1080, 1080]]]) {
    const res = await mf.dispatchFetch(url);
    assert.equal(res.status, 200, url);
    assert.deepEqual(jpegSize(Buffer.from(await res.arrayBuffer())), size);
  }
  const png = await mf.dispatchFetch(s.image_url);
  assert.equal(png.headers.get("content-type"), "image/png");
  assert.deepEqual(Buffer.from(await png.arrayBuffer()).subarray(1, 4), Buffer.from("PNG"));

  // The page is cached at the edge too.
  await untilHit(s.share_url);
  const head = await mf.dispatchFetch(s.og_image_url, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal((await head.arrayBuffer()).byteLength, 0);
});

test("bad inputs get 4xx JSON errors with stable codes", async () => {
  const t = token();
  const cases = [
    [{ image: new TextEncoder().encode("not an image at all"), platform: "facebook", token: t }, 415, "unsupported_format"],
    [{ image: new Uint8Array(), platform: "facebook", token: t }, 422, "empty_file"],
    [{ image: photo.subarray(0, 200), platform: "facebook", token: t }, 422, "invalid_image"],
    [{ image: photo, token: t }, 400, "missing_platform"],
    [{ image: photo, platform: "myspace", token: t }, 400, "invalid_platform"],
    [{ image: photo, platform: "facebook", title: "x".repeat(141), token: t }, 400, "invalid_title"],
    [{ platform: "facebook", token: t }, 400, "missing_image"],
    [{ image: "text, not a file", platform: "facebook", token: t }, 400, "invalid_multipart"],
    [{ result_id: "../../etc/passwd", platform: "facebook", token: t }, 404, "result_not_found"],
    [{ result_id: "cd".repeat(16), platform: "facebook", token: t }, 403, "invalid_token"],
  ];
  for (const [fields, status, code] of cases) {
    const r = await share(fields);
    assert.equal(r.res.status, status, `${code}: ${r.body}`);
    assert.equal(r.json?.error?.code, code, r.body);
    assert.ok(r.json.error.message.length > 0);
  }
  const notForm = await mf.dispatchFetch(`${BASE}/api/v2/share-image`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(notForm.status, 415);
  assert.equal((await notForm.json()).error.code, "invalid_multipart");
  // Over the size limit: refused before the form is read (declared length), or at the file.
  const small = worker({ bindings: { MAX_UPLOAD_BYTES: "10000" } });
  try {
    const big = await small.dispatchFetch(`${BASE}/api/v2/share-image`, await multipart({ image: new Uint8Array(2 << 20), platform: "facebook", token: t }));
    assert.equal(big.status, 413);
    assert.equal((await big.json()).error.code, "file_too_large");
    const over = await small.dispatchFetch(`${BASE}/api/v2/share-image`, await multipart({ image: photo, platform: "facebook", token: t }));
    assert.equal(over.status, 413);
    assert.equal((await over.json()).error.code, "file_too_large");
  } finally {
    await small.dispose();
  }
  for (const path of ["/s/nope", "/s/..%2F..%2Fetc", "/og/..%2Fmeta.json", "/og/" + "0".repeat(32) + ".jpg", "/i/x.png"]) {
    const r = await mf.dispatchFetch(`${BASE}${path}`, { headers: { accept: "application/json" } });
    assert.equal(r.status, 404, path);
    assert.equal((await r.json()).error.code, "share_not_found", path);
  }
  const html404 = await mf.dispatchFetch(`${BASE}/s/${"0".repeat(32)}`);
  assert.equal(html404.status, 404);
  assert.match(await html404.text(), /does not exist/);
});

test("CORS: the shop's origin only", async () => {
  const ok = await mf.dispatchFetch(`${BASE}/api/v2/share-image`, {
    method: "OPTIONS",
    headers: { origin: "https://shop.test", "access-control-request-method": "POST" },
  });
  assert.equal(ok.status, 204);
  assert.equal(ok.headers.get("access-control-allow-origin"), "https://shop.test");
  const no = await mf.dispatchFetch(`${BASE}/api/v2/share-image`, {
    method: "OPTIONS",
    headers: { origin: "https://evil.test", "access-control-request-method": "POST" },
  });
  assert.equal(no.status, 403);
  assert.equal(no.headers.get("access-control-allow-origin"), null);
});

test("uploads are rate limited per client", async () => {
  const limited = worker({ limit: 2 });
  try {
    // The local limiter counts in fixed windows of the period (60 s, aligned to the clock) and
    // starts afresh in each: keep the four requests inside one window.
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 10_000) await new Promise((r) => setTimeout(r, left + 100));
    const codes = [];
    for (let i = 0; i < 4; i++) {
      const res = await limited.dispatchFetch(
        `${BASE}/api/v2/share-image`,
        await multipart({ image: photo, platform: "facebook", token: token() }, { "cf-connecting-ip": "203.0.113.7" }),
      );
      codes.push(res.status);
      if (res.status === 429) {
        assert.equal((await res.json()).error.code, "rate_limited");
        assert.equal(res.headers.get("retry-after"), "60");
      } else await res.arrayBuffer();
    }
    assert.deepEqual(codes, [200, 200, 429, 429]);
    // Another client is not affected.
    const other = await limited.dispatchFetch(
      `${BASE}/api/v2/share-image`,
      await multipart({ image: photo, platform: "facebook", token: token() }, { "cf-connecting-ip": "198.51.100.9" }),
    );
    assert.equal(other.status, 200);
  } finally {
    await limited.dispose();
  }
});

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** A real `gpu-server serve` (GPU_SERVER_BIN) on a free port, once it is ready. */
async function startGpuServer(storageBucket, env = {}) {
  const bin = process.env.GPU_SERVER_BIN;
  assert.ok(bin, "set GPU_SERVER_BIN to the gpu-server binary (scripts/test does)");
  const port = await freePort();
  const server = spawn(bin, ["serve", "--port", String(port), "--storage-bucket", storageBucket, "--customer-storage-bucket", "memory://", "--share-token-secret", SECRET], {
    stdio: "ignore",
    env: { ...process.env, ...env },
  });
  const api = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${api}/ready`)).status === 200) break;
    } catch {}
    if (i > 300) {
      server.kill();
      assert.fail("gpu-server not ready");
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { server, api };
}

test("one renderer, two shells: gpu-server and the Worker store the same bytes", async () => {
  // Results in a folder, to hand them to the Worker's bucket as a shared bucket would.
  const results = mkdtempSync(join(tmpdir(), "pet-cutout-results-"));
  const { server, api } = await startGpuServer(`file://${results}`);
  try {
    // The real flow: gpu-server cuts the pet out and signs a token; the Worker accepts it.
    const removed = await fetch(`${api}/api/v2/remove-background`, { method: "POST", body: form({ image: photo }) });
    assert.equal(removed.status, 200);
    const serverToken = removed.headers.get("x-share-token");
    const cutout = new Uint8Array(await removed.arrayBuffer());

    const edge = await share({ image: cutout, platform: "pinterest", title: "Chelsea", token: serverToken });
    assert.equal(edge.res.status, 200, edge.body);
    assert.equal(edge.res.headers.get("x-card-subjects"), "none", "an upload has no share-ready subjects");
    const origin = await fetch(`${api}/api/v2/share-image`, { method: "POST", body: form({ image: cutout, platform: "pinterest", title: "Chelsea", token: serverToken }) });
    assert.equal(origin.status, 200);
    const o = await origin.json();
    assert.equal(edge.json.id, o.id, "the same share id");
    for (const name of [`og/${o.id}.jpg`, `og/${o.id}-pin.jpg`, `og/${o.id}-square.jpg`, `i/${o.id}.png`]) {
      const a = Buffer.from(await (await mf.dispatchFetch(`${BASE}/${name}`)).arrayBuffer());
      const b = Buffer.from(await (await fetch(`${api}/${name}`)).arrayBuffer());
      assert.ok(a.length > 1000, name);
      assert.ok(a.equals(b), `${name}: the Worker's ${a.length} bytes differ from gpu-server's ${b.length}`);
    }

    // A stored result is shared by its id: gpu-server stored its share-ready card subjects
    // beside it, and both shells make the same cards from them as from the picture.
    const resultId = removed.headers.get("x-result-id");
    const stored = readFileSync(join(results, "results", resultId));
    assert.ok(Buffer.from(cutout).equals(stored), "the stored result is the answered one");
    // Stored just after the answer.
    const cardsPath = join(results, "results", `${resultId}.cards`);
    for (let i = 0; i < 200 && !existsSync(cardsPath); i++) await new Promise((r) => setTimeout(r, 25));
    const cards = readFileSync(cardsPath);
    assert.equal(cards.subarray(0, 8).toString(), "PCCARDS1");
    const bucket = await mf.getR2Bucket("BUCKET");
    // Copies that own their memory (Miniflare's proxy refuses a view into Node's buffer pool).
    await bucket.put(`results/${resultId}`, new Uint8Array(stored));
    await bucket.put(`results/${resultId}.cards`, new Uint8Array(cards));
    const files = (id) => [`og/${id}.jpg`, `og/${id}-pin.jpg`, `og/${id}-square.jpg`, `i/${id}.png`];
    const edgeStored = await share({ result_id: resultId, platform: "facebook", title: "Chelsea, stored", token: serverToken });
    assert.equal(edgeStored.res.status, 200, edgeStored.body);
    assert.equal(edgeStored.res.headers.get("x-card-subjects"), "used");
    const originStored = await fetch(`${api}/api/v2/share-image`, { method: "POST", body: form({ result_id: resultId, token: serverToken, platform: "facebook", title: "Chelsea, stored" }) });
    assert.equal(originStored.status, 200);
    assert.equal(originStored.headers.get("x-card-subjects"), "used");
    assert.equal((await originStored.json()).id, edgeStored.json.id, "the same share id");
    const uploaded = files(o.id);
    for (const [i, name] of files(edgeStored.json.id).entries()) {
      const a = Buffer.from(await (await mf.dispatchFetch(`${BASE}/${name}`)).arrayBuffer());
      const b = Buffer.from(await (await fetch(`${api}/${name}`)).arrayBuffer());
      const c = Buffer.from(await (await fetch(`${api}/${uploaded[i]}`)).arrayBuffer());
      assert.ok(a.equals(b), `${name}: the Worker's ${a.length} bytes differ from gpu-server's ${b.length}`);
      assert.ok(a.equals(c), `${name}: from the card subjects, ${a.length} bytes; from the picture, ${c.length}`);
    }
    // Damaged subjects are not used: the cards are made from the picture, the same bytes.
    const damaged = Buffer.from(cards);
    damaged[cards.length - 5] ^= 0xff;
    await bucket.put(`results/${resultId}.cards`, new Uint8Array(damaged));
    const edgeDamaged = await share({ result_id: resultId, platform: "facebook", title: "Chelsea, damaged", token: serverToken });
    assert.equal(edgeDamaged.res.status, 200, edgeDamaged.body);
    assert.equal(edgeDamaged.res.headers.get("x-card-subjects"), "none");
    for (const [i, name] of files(edgeDamaged.json.id).entries()) {
      const a = Buffer.from(await (await mf.dispatchFetch(`${BASE}/${name}`)).arrayBuffer());
      const c = Buffer.from(await (await fetch(`${api}/${uploaded[i]}`)).arrayBuffer());
      assert.ok(a.equals(c), `${name} from damaged card subjects`);
    }

    // One share flow (shared::publish): both shells refuse the same requests with the same
    // status and code.
    const t = token();
    const refusals = [
      ["missing token", { image: photo, platform: "facebook" }],
      ["forged token", { image: photo, platform: "facebook", token: token(undefined, undefined, "another-secret-0123456789") }],
      ["expired token", { image: photo, platform: "facebook", token: token(undefined, 1000) }],
      ["another result's token", { result_id: resultId, platform: "facebook", token: t }],
      ["missing image", { platform: "facebook", token: t }],
      ["image as text", { image: "text, not a file", platform: "facebook", token: t }],
      ["missing platform", { image: photo, token: t }],
      ["bad platform", { image: photo, platform: "myspace", token: t }],
      ["long title", { image: photo, platform: "x", title: "x".repeat(141), token: t }],
      ["unknown result", { result_id: "ef".repeat(16), platform: "facebook", token: token("ef".repeat(16)) }],
      ["bad result id", { result_id: "../../etc/passwd", platform: "facebook", token: t }],
      ["not an image", { image: new TextEncoder().encode("not an image at all"), platform: "facebook", token: t }],
      ["too large", { image: new Uint8Array(26_500_000), platform: "facebook", token: t }],
    ];
    for (const [what, fields] of refusals) {
      const edgeRes = await share(fields);
      const originRes = await fetch(`${api}/api/v2/share-image`, { method: "POST", body: form(fields) }).catch((e) => {
        throw new Error(`${what}: gpu-server did not answer (${e.cause?.code ?? e.message})`);
      });
      const originJson = await originRes.json();
      assert.ok(edgeRes.res.status >= 400 && edgeRes.res.status < 500, `${what}: ${edgeRes.body}`);
      assert.deepEqual(
        [edgeRes.res.status, edgeRes.json?.error?.code],
        [originRes.status, originJson.error.code],
        `${what}: the Worker answered ${edgeRes.body}, gpu-server ${JSON.stringify(originJson)}`,
      );
    }
  } finally {
    server.kill();
    rmSync(results, { recursive: true, force: true });
  }
});

test("SHARE_STYLE=sticker on both shells: the same sticker cards, bytes for bytes", async () => {
  const { server, api } = await startGpuServer("memory://", { SHARE_STYLE: "sticker" });
  const sticker = worker({ bindings: { SHARE_STYLE: "sticker" } });
  try {
    const removed = await fetch(`${api}/api/v2/remove-background`, { method: "POST", body: form({ image: photo }) });
    assert.equal(removed.status, 200);
    const cutout = new Uint8Array(await removed.arrayBuffer());
    const tok = removed.headers.get("x-share-token");
    const fields = { image: cutout, platform: "facebook", title: "Sticker", token: tok };
    const edge = await sticker.dispatchFetch(`${BASE}/api/v2/share-image`, await multipart(fields));
    assert.equal(edge.status, 200, await edge.clone().text());
    const e = await edge.json();
    const origin = await fetch(`${api}/api/v2/share-image`, { method: "POST", body: form(fields) });
    assert.equal(origin.status, 200);
    const o = await origin.json();
    assert.equal(e.id, o.id, "the same share id");
    // Not the plain style's share: the style is part of the id.
    const plain = await share(fields);
    assert.equal(plain.res.status, 200, plain.body);
    assert.notEqual(plain.json.id, o.id);
    for (const name of [`og/${o.id}.jpg`, `og/${o.id}-pin.jpg`, `og/${o.id}-square.jpg`, `i/${o.id}.png`]) {
      const a = Buffer.from(await (await sticker.dispatchFetch(`${BASE}/${name}`)).arrayBuffer());
      const b = Buffer.from(await (await fetch(`${api}/${name}`)).arrayBuffer());
      assert.ok(a.length > 1000, name);
      assert.ok(a.equals(b), `${name}: the Worker's ${a.length} bytes differ from gpu-server's ${b.length}`);
    }
  } finally {
    server.kill();
    await sticker.dispose();
  }
});

test("the Worker's deploy dry run bundles and lists its bindings, offline", async () => {
  const { spawnSync } = await import("node:child_process");
  const out = spawnSync(join(root, "scripts/deploy"), ["worker", "--dry-run"], { cwd: root, encoding: "utf8", timeout: 600_000 });
  const all = out.stdout + out.stderr;
  assert.equal(out.status, 0, all);
  assert.match(all, /\+ env WRANGLER_SEND_METRICS=false \S*wrangler deploy --dry-run/);
  assert.match(all, /env\.BUCKET \(pet-cutout-shares\)\s+R2 Bucket/);
  assert.match(all, /env\.SHARE_LIMITER \(10 requests\/60s\)\s+Rate Limit/);
  assert.match(all, /--dry-run: exiting now\./);
});
