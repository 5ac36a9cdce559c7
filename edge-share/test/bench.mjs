// Times the built Worker's share render inside workerd (Miniflare): POST the PNG (and the same
// picture's share-ready card subjects) to the bench route N times, one render per request and
// several per request; prints the render's own median time and the whole request's, as JSON. Usage: node edge-share/test/bench.mjs INPUT.png [runs]
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { Miniflare } from "miniflare";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const png = readFileSync(process.argv[2]);
const runs = Number(process.argv[3] ?? 30);
const wasm = readFileSync(join(root, "edge-share/build/index_bg.wasm"));
const mf = new Miniflare({
  modules: true,
  scriptPath: join(root, "edge-share/build/index.js"),
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
  compatibilityDate: "2026-04-01",
  r2Buckets: ["BUCKET"],
  bindings: { BENCH_ROUTES: "1" },
  cf: false,
});
const timed = async (path, body) => {
  const t0 = performance.now();
  const res = await mf.dispatchFetch(`https://bench.test${path}`, body ? { method: "POST", body } : {});
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (res.status !== 200) throw new Error(`${path}: ${res.status} ${new TextDecoder().decode(bytes)}`);
  return performance.now() - t0;
};
const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
// The same picture as a result's share-ready card subjects (written by the native benchmark).
const cards = readFileSync(process.argv[2].replace(/\.png$/, ".cards"));
const first = await timed("/__bench/render", png);
// One render per request, and K in one request: (t_K - t_1) / (K - 1) is the render alone,
// without moving the body into the isolate (workerd's clocks stand still while code runs).
const K = 6;
const t = { png1: [], pngK: [], cards1: [], cardsK: [], empty: [] };
for (let i = 0; i < runs + 3; i++) {
  const sample = {
    png1: await timed("/__bench/render", png),
    pngK: await timed(`/__bench/render?n=${K}`, png),
    cards1: await timed("/__bench/render", cards),
    cardsK: await timed(`/__bench/render?n=${K}`, cards),
    empty: await timed("/health"),
  };
  if (i >= 3) for (const k in t) t[k].push(sample[k]);
}
await mf.dispose();
const perRender = (one, many) => median(many.map((m, i) => (m - one[i]) / (K - 1)));
const out = {
  median_ms: perRender(t.png1, t.pngK),
  cards_median_ms: perRender(t.cards1, t.cardsK),
  request_ms: median(t.png1) - median(t.empty),
  cards_request_ms: median(t.cards1) - median(t.empty),
  empty_ms: median(t.empty),
  cards_bytes: cards.length,
  first_ms: first,
  runs,
  wasm_bytes: wasm.length,
  wasm_gzip_bytes: gzipSync(wasm, { level: 9 }).length,
};
console.log(JSON.stringify(out));
