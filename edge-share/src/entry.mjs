// The Worker's entry point: hands every request to the Rust `fetch` (wasm-bindgen's module
// output, bundled next to this file by scripts/build-worker) with the bindings and context.
// A trap inside WebAssembly (a panic is an abort) leaves the instance unusable, so the
// instance is reset for the next request and this one gets the service's JSON 500.
import { WorkerEntrypoint } from "cloudflare:workers";
import * as edge from "./index.js";

// The generic 500's body comes from Rust (`shared::refusal`), read once while the instance is
// sound: after a trap, no Rust can run until the reset.
const INTERNAL_BODY = edge.internal_error_body();

export default class EdgeShare extends WorkerEntrypoint {
  async fetch(request) {
    try {
      return await edge.fetch(request, this.env, this.ctx);
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) edge.__wbg_reset_state();
      console.error("edge-share failed:", e);
      return new Response(INTERNAL_BODY, { status: 500, headers: { "content-type": "application/json", "cache-control": "no-store" } });
    }
  }
}
