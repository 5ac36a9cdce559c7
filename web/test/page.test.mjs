// The page in a real browser (Debian's chromium driven by playwright-core) against the real
// gpu-server (GPU_SERVER_BIN) with the real model and local folders for storage. Screenshots of
// every state go to tests/out/screenshots/.
//
//   GPU_SERVER_BIN=target/debug/gpu-server node --test web/test/page.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const shots = join(root, "tests/out/screenshots");
mkdirSync(shots, { recursive: true });
const photo = join(root, "tests/fixtures/u2netp/chelsea.png");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let server;
let base;
let browser;

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

before(async () => {
  const bin = process.env.GPU_SERVER_BIN;
  assert.ok(bin, "set GPU_SERVER_BIN to the gpu-server binary (scripts/test does)");
  const dir = mkdtempSync(join(tmpdir(), "web-test-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(bin, ["serve", "--port", String(port), "--storage-bucket", join(dir, "cache"), "--customer-storage-bucket", join(dir, "shares"), "--share-token-secret", "web-test-secret-0123456789"], { stdio: "ignore" });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${base}/ready`)).status === 200) break;
    } catch {}
    if (i > 300) assert.fail("gpu-server not ready");
    await new Promise((r) => setTimeout(r, 100));
  }
  // launch() gives the browser a fresh temporary profile (user-data-dir): a first visit.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

after(async () => {
  await browser?.close();
  server?.kill();
});

const VIEWPORTS = {
  desktop: { viewport: { width: 1280, height: 900 } },
  phone: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
};

async function openPage(kind, { slowWarmup = 0 } = {}) {
  const context = await browser.newContext({ ...VIEWPORTS[kind], acceptDownloads: true });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  // Nothing leaves the machine: the social sites' share dialogs answer a stub.
  await context.route(/^https:\/\/(www\.facebook\.com|x\.com|www\.pinterest\.com|wa\.me|www\.linkedin\.com)\//, (route) =>
    route.fulfill({ status: 200, contentType: "text/html", body: "<title>share dialog</title>" }),
  );
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  if (slowWarmup) {
    // A cold start: the GPU service takes a while to answer /warmup.
    await page.route("**/warmup", async (route) => {
      await new Promise((r) => setTimeout(r, slowWarmup));
      await route.continue();
    });
  }
  await page.goto(base);
  return { context, page, errors };
}

const shot = (page, name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

async function uploadPhoto(page) {
  await page.setInputFiles("#file", photo);
  await page.waitForSelector("#result:not([hidden])", { timeout: 60_000 });
}

/** Alpha and colour of the result canvas at (fx, fy) as fractions of its size. */
function pixel(page, fx, fy) {
  return page.evaluate(([fx, fy]) => {
    const c = document.getElementById("after");
    const d = c.getContext("2d").getImageData(Math.floor(c.width * fx), Math.floor(c.height * fy), 1, 1).data;
    return [...d];
  }, [fx, fy]);
}

test("desktop: warm-up, upload, cut-out, background, download, share", async () => {
  const { context, page, errors } = await openPage("desktop", { slowWarmup: 2500 });
  try {
    // The honest warm-up state, with its seconds counting, naming what is warming: this
    // service runs on the CPU, so no GPU is promised.
    await page.waitForFunction(() => /Starting the cut-out service… \d+ s/.test(document.getElementById("status").textContent));
    assert.equal(await page.getAttribute("#app", "data-backend"), "cpu");
    assert.equal(await page.getAttribute("#app", "data-state"), "warming");
    await shot(page, "desktop-1-warming");
    const answers = [];
    const stored = [];
    page.on("response", (r) => {
      if (r.url().endsWith("/api/v2/remove-background")) answers.push(r);
      if (r.url().includes("/api/v2/results/")) stored.push(r.url());
    });
    // An upload during the warm-up waits for it instead of failing.
    await uploadPhoto(page);
    // What came back to show is the WebP preview; the PNG stays stored until it is wanted.
    assert.equal(answers.length, 1);
    assert.equal(answers[0].headers()["content-type"], "image/webp");
    assert.equal(answers[0].headers()["x-result-type"], "image/png");
    const resultUrl = `${base}/api/v2/results/${answers[0].headers()["x-result-id"]}`;
    const storedPng = Buffer.from(await (await fetch(resultUrl)).arrayBuffer());
    assert.ok((await answers[0].body()).length * 3 < storedPng.length, "the preview is a fraction of the PNG");
    assert.deepEqual(stored, []);
    assert.match(await page.textContent("#status"), /^Done/);
    await shot(page, "desktop-2-cutout");

    // The cut-out: the photo's corners are background (transparent), its middle is the cat.
    const corner = await pixel(page, 0.02, 0.02);
    const middle = await pixel(page, 0.5, 0.55);
    assert.equal(corner[3], 0, `corner ${corner}`);
    assert.ok(middle[3] > 200, `middle ${middle}`);

    // Before/after slider.
    await page.fill("#slider", "20");
    assert.match(await page.$eval("#before-wrap", (e) => e.style.clipPath), /inset\(0(px)? 80% 0(px)? 0(px)?\)/);

    // Background: white, then a colour.
    await page.check('input[name="bg"][value="white"]');
    await page.waitForFunction(() => document.getElementById("after").dataset.background === "#ffffff");
    assert.deepEqual(await pixel(page, 0.02, 0.02), [255, 255, 255, 255]);
    await shot(page, "desktop-3-white-background");
    await page.check('input[name="bg"][value="color"]');
    await page.waitForFunction(() => document.getElementById("after").dataset.background === "#ffd6a5");
    assert.deepEqual(await pixel(page, 0.02, 0.02), [0xff, 0xd6, 0xa5, 255]);

    // Download: the stored full-size PNG, fetched now, on the chosen background.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    const file = readFileSync(await download.path());
    assert.deepEqual([...file.subarray(1, 4)], [...Buffer.from("PNG")]);
    assert.equal(download.suggestedFilename(), "pet-cutout.png");
    assert.deepEqual(stored, [resultUrl]);
    assert.deepEqual([file.readUInt32BE(16), file.readUInt32BE(20)], [storedPng.readUInt32BE(16), storedPng.readUInt32BE(20)]);
    assert.notDeepEqual(file, storedPng, "the background is in the download");
    // Transparent: the stored file itself, byte for byte, not fetched again.
    await page.check('input[name="bg"][value="transparent"]');
    const [plain] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    assert.deepEqual(readFileSync(await plain.path()), storedPng);
    assert.equal(stored.length, 1);

    // Share on Facebook: the dialog opens with the share page, whose og:image is the card.
    await page.check('input[name="bg"][value="transparent"]');
    const [popup] = await Promise.all([context.waitForEvent("page"), page.click('button[data-platform="facebook"]')]);
    await popup.waitForURL(/facebook\.com\/sharer/);
    const shareUrl = decodeURIComponent(new URL(popup.url()).searchParams.get("u"));
    assert.match(shareUrl, new RegExp(`^${base}/s/[0-9a-f]{32}$`));
    assert.equal(await page.textContent("#share-url"), shareUrl);
    const html = await (await fetch(shareUrl)).text();
    const og = html.match(/<meta property="og:image" content="([^"]+)">/)[1];
    assert.equal(og, shareUrl.replace("/s/", "/og/") + ".jpg");
    const card = Buffer.from(await (await fetch(og)).arrayBuffer());
    assert.deepEqual([...card.subarray(0, 2)], [0xff, 0xd8]);
    await shot(page, "desktop-4-shared");

    // X with the white background: the picture as shown is uploaded and shared.
    await page.check('input[name="bg"][value="white"]');
    await page.waitForFunction(() => document.getElementById("after").dataset.background === "#ffffff");
    const [xPopup] = await Promise.all([context.waitForEvent("page"), page.click('button[data-platform="x"]')]);
    await xPopup.waitForURL(/x\.com\/intent\/post/);
    const xShare = new URL(xPopup.url()).searchParams.get("url");
    assert.notEqual(xShare, shareUrl, "a different picture, a different share");

    // Copy link.
    await page.click('button[data-platform="copy"]');
    await page.waitForFunction(() => document.getElementById("status").textContent === "Link copied.");
    assert.match(await page.evaluate(() => navigator.clipboard.readText()), new RegExp(`^${base}/s/[0-9a-f]{32}$`));

    // The native share button shows exactly where the browser says it can share the file.
    const canShare = await page.evaluate(() => !!navigator.canShare?.({ files: [new File([], "pet-cutout.png", { type: "image/png" })] }));
    assert.equal(await page.isVisible("#native-share"), canShare);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

/** Counts of the result canvas's pixels: opaque white, and dark half-transparent (shadow). */
function census(page) {
  return page.evaluate(() => {
    const c = document.getElementById("after");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let white = 0;
    let shadow = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i] === 255 && d[i + 1] === 255 && d[i + 2] === 255 && d[i + 3] === 255) white++;
      if (d[i + 3] > 10 && d[i + 3] < 200 && d[i] < 40 && d[i + 1] < 40 && d[i + 2] < 40) shadow++;
    }
    return { width: c.width, height: c.height, white, shadow };
  });
}

/** Waits for the next layout the service answers (the page counts them) and for quiet. */
async function settle(page) {
  const before = Number((await page.getAttribute("#app", "data-layouts")) || 0);
  await page.waitForFunction(
    (n) => Number(document.getElementById("app").dataset.layouts || 0) > n && document.getElementById("app").dataset.effects === "",
    before,
  );
}

test("sticker and print: outline, shadow, crop and a print size, previewed live", async () => {
  const { context, page, errors } = await openPage("desktop");
  try {
    await uploadPhoto(page);
    const plain = await census(page);
    assert.deepEqual([plain.width, plain.height], [451, 300]);

    let next = settle(page);
    await page.check("#fx-outline");
    await next;
    const sticker = await census(page);
    assert.equal(await page.getAttribute("#compare", "data-effects"), "on");
    assert.ok(sticker.white > plain.white + 500, `a white border: ${sticker.white} vs ${plain.white}`);
    await shot(page, "print-1-sticker-outline");

    next = settle(page);
    await page.check("#fx-shadow");
    await next;
    const shadowed = await census(page);
    assert.ok(shadowed.shadow > sticker.shadow + 200, `a soft dark shadow: ${shadowed.shadow}`);
    await shot(page, "print-2-sticker-shadow");

    next = settle(page);
    await page.check("#fx-crop");
    await next;
    const cropped = await census(page);
    // Framed to the pet with its border and shadow, no longer the photo's frame.
    assert.notDeepEqual([cropped.width, cropped.height], [451, 300]);
    await shot(page, "print-3-cropped");

    await page.selectOption("#fx-size", "4x6in");
    await page.check('input[name="bg"][value="white"]');
    await page.waitForFunction(
      () => document.getElementById("app").dataset.effects === "" && /at 300 dpi/.test(document.getElementById("status").textContent) && document.getElementById("download").textContent === "Download JPEG",
    );
    const print = await census(page);
    assert.deepEqual([print.width, print.height], [1200, 1800]);
    assert.match(await page.textContent("#status"), /1200×1800 pixels at 300 dpi/);
    await shot(page, "print-4-print-4x6in");
    // The download is the service's file, a JPEG (opaque) with its 300 dpi in JFIF.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    const file = readFileSync(await download.path());
    assert.equal(download.suggestedFilename(), "pet-cutout.jpg");
    assert.deepEqual([...file.subarray(6, 11)], [...Buffer.from("JFIF\0")]);
    assert.equal(file.readUInt16BE(14), 300);

    // Sharing the print shares that result (its own token).
    await page.click('button[data-platform="copy"]');
    await page.waitForFunction(() => document.getElementById("status").textContent === "Link copied.");

    // Everything off: the plain cut-out again, the comparison back.
    await page.check('input[name="bg"][value="transparent"]');
    await page.selectOption("#fx-size", "");
    for (const id of ["#fx-outline", "#fx-shadow", "#fx-crop"]) await page.uncheck(id);
    await page.waitForFunction(() => document.getElementById("compare").dataset.effects === "off");
    const back = await census(page);
    assert.deepEqual([back.width, back.height, back.white], [plain.width, plain.height, plain.white]);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("errors: a file that is not a photo, a busy service with a retry", async () => {
  const { context, page, errors } = await openPage("desktop");
  try {
    await page.waitForFunction(() => document.getElementById("app").dataset.state === "ready");
    await page.setInputFiles("#file", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not a photo") });
    await page.waitForSelector("#error:not([hidden])");
    assert.match(await page.textContent("#error-text"), /not a photo we can read/);
    assert.equal(await page.evaluate(() => document.activeElement.id), "error", "the message takes focus");
    await shot(page, "desktop-5-error-not-a-photo");

    // The API's own refusal of a damaged file, bypassing the browser's check.
    const broken = readFileSync(photo).subarray(0, 3000);
    await page.evaluate(async (bytes) => {
      const form = new FormData();
      form.append("image", new Blob([new Uint8Array(bytes)], { type: "image/png" }), "x.png");
      const res = await fetch("/api/v2/remove-background", { method: "POST", body: form });
      window.__apiError = [res.status, (await res.json()).error.code];
    }, [...broken]);
    assert.deepEqual(await page.evaluate(() => window.__apiError), [422, "invalid_image"]);

    // The service answers 503 queue_full once: a human message and a retry that works.
    let refused = false;
    await page.route("**/api/v2/remove-background", async (route) => {
      if (refused) return route.continue();
      refused = true;
      await route.fulfill({ status: 503, contentType: "application/json", headers: { "retry-after": "2" }, body: JSON.stringify({ error: { code: "queue_full", message: "busy" } }) });
    });
    await page.setInputFiles("#file", photo);
    await page.waitForFunction(() => /Lots of pets/.test(document.getElementById("error-text").textContent) && !document.getElementById("error").hidden);
    await shot(page, "desktop-6-error-busy");
    await page.click("#retry");
    await page.waitForSelector("#result:not([hidden])", { timeout: 60_000 });
    assert.equal(await page.isHidden("#error"), true);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("a 20 MP photo is scaled down in the browser before it is uploaded", async () => {
  const { context, page, errors } = await openPage("desktop");
  try {
    await page.waitForFunction(() => document.getElementById("app").dataset.state === "ready");
    const uploaded = [];
    page.on("request", (r) => {
      if (r.url().endsWith("/api/v2/remove-background")) uploaded.push(r.postDataBuffer()?.length ?? 0);
    });
    // A 5000×4000 photo (a phone's 20 MP), drawn in the page and handed to the picker.
    await page.evaluate(async () => {
      const canvas = document.createElement("canvas");
      canvas.width = 5000;
      canvas.height = 4000;
      const ctx = canvas.getContext("2d");
      const grad = ctx.createLinearGradient(0, 0, 5000, 4000);
      grad.addColorStop(0, "#8a6d52");
      grad.addColorStop(1, "#e9dccb");
      ctx.fillStyle = grad;
      ctx.fillRect(0, 0, 5000, 4000);
      ctx.fillStyle = "#3b2a1d";
      ctx.beginPath();
      ctx.ellipse(2500, 2100, 1300, 1500, 0, 0, Math.PI * 2);
      ctx.fill();
      const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.9));
      const dt = new DataTransfer();
      dt.items.add(new File([blob], "phone.jpg", { type: "image/jpeg" }));
      const input = document.getElementById("file");
      input.files = dt.files;
      input.dispatchEvent(new Event("change", { bubbles: true }));
    });
    await page.waitForSelector("#result:not([hidden])", { timeout: 120_000 });
    // The preview shown is at most 2048 px a side; the download is the cut-out at the
    // scaled photo's size.
    const size = await page.$eval("#after", (c) => [c.width, c.height]);
    assert.deepEqual(size, [2048, 1639], "the preview");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
    const file = readFileSync(await download.path());
    assert.deepEqual([file.readUInt32BE(16), file.readUInt32BE(20)], [3072, 2458], "the cut-out at the scaled size");
    assert.equal(uploaded.length, 1);
    await shot(page, "desktop-7-scaled-photo");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test("phone: the same flow fits the screen, and the controls are labelled", async () => {
  const { context, page, errors } = await openPage("phone");
  try {
    await page.waitForFunction(() => document.getElementById("app").dataset.state === "ready");
    await shot(page, "phone-1-ready");
    await uploadPhoto(page);
    await shot(page, "phone-2-cutout");
    const overflow = await page.evaluate(() => document.scrollingElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
    // Every form control has an accessible name; every button has text or a label.
    const unnamed = await page.evaluate(() =>
      [...document.querySelectorAll("input, button, select, a[href]")]
        .filter((el) => el.offsetParent !== null || el.type === "file")
        .filter((el) => {
          const labelled = el.labels?.length || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
          return !(labelled || el.textContent.trim());
        })
        .map((el) => el.outerHTML.slice(0, 80)),
    );
    assert.deepEqual(unnamed, []);
    // Keyboard: the photo picker and the share buttons are reachable with Tab.
    const reached = new Set();
    for (let i = 0; i < 40; i++) {
      await page.keyboard.press("Tab");
      reached.add(await page.evaluate(() => document.activeElement.id || document.activeElement.dataset.platform || ""));
    }
    for (const id of ["file", "slider", "download", "facebook", "copy"]) assert.ok(reached.has(id), `Tab never reaches ${id}: ${[...reached]}`);
    const [popup] = await Promise.all([context.waitForEvent("page"), page.tap('button[data-platform="whatsapp"]')]);
    await popup.waitForURL(/wa\.me/);
    assert.match(decodeURIComponent(popup.url()), new RegExp(`${base}/s/[0-9a-f]{32}`));
    await shot(page, "phone-3-shared");
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

writeFileSync(join(shots, "README.txt"), "Written by web/test/page.test.mjs: one screenshot per state, desktop and phone.\n");
