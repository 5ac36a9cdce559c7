// Times the built Worker's share render inside workerd (Miniflare): POST the PNG to the bench
// route N times; the median request time minus the median of an empty request is the render.
// Prints JSON. Usage: node edge-share/test/bench.mjs INPUT.png [runs]
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
// The same picture as a share-ready source: raw RGBA, nothing to decode.
const raw = readFileSync(process.argv[2].replace(/\.png$/, ".rgba"));
const first = await timed("/__bench/render", png);
const render = [];
const renderRaw = [];
const empty = [];
for (let i = 0; i < runs + 3; i++) {
  const r = await timed("/__bench/render", png);
  const s = await timed("/__bench/render", raw);
  const e = await timed("/health");
  if (i >= 3) {
    render.push(r);
    renderRaw.push(s);
    empty.push(e);
  }
}
await mf.dispose();
const out = {
  median_ms: median(render) - median(empty),
  raw_median_ms: median(renderRaw) - median(empty),
  request_ms: median(render),
  empty_ms: median(empty),
  first_ms: first,
  runs,
  wasm_bytes: wasm.length,
  wasm_gzip_bytes: gzipSync(wasm, { level: 9 }).length,
};
console.log(JSON.stringify(out));
