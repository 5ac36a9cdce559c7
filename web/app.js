// The customer's page: warm the service, upload, show the cut-out, share.
"use strict";
const api = document.documentElement.dataset.api || "";
const $ = (id) => document.getElementById(id);
let result = null;

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

async function warmup() {
  const t0 = performance.now();
  const tick = setInterval(() => {
    $("status").textContent = `Waking up the service… ${Math.round((performance.now() - t0) / 1000)} s`;
  }, 500);
  try {
    const res = await fetch(`${api}/warmup`, { method: "POST" });
    if (!res.ok) throw new Error((await res.json()).error.message);
    $("status").textContent = "Ready.";
  } catch (e) {
    $("status").textContent = `The service is not ready: ${e.message}`;
  } finally {
    clearInterval(tick);
  }
}
const warm = warmup();

$("upload").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError("");
  const file = $("file").files[0];
  if (!file) return showError("Choose a photo first.");
  await warm;
  $("status").textContent = "Removing the background…";
  const form = new FormData();
  form.append("image", file);
  const res = await fetch(`${api}/api/v2/remove-background`, { method: "POST", body: form, headers: { Accept: "application/json" } });
  const body = await res.json();
  if (!res.ok) { $("status").textContent = ""; return showError(body.error.message); }
  result = body;
  $("cutout").src = body.image_url;
  $("download").href = body.image_url;
  $("result").hidden = false;
  $("status").textContent = "Done.";
});

$("share").addEventListener("click", async (ev) => {
  const platform = ev.target.dataset && ev.target.dataset.platform;
  if (!platform || !result) return;
  const form = new FormData();
  form.append("platform", platform);
  form.append("result_id", result.result_id);
  form.append("token", result.share_token);
  const res = await fetch(`${api}/api/v2/share-image`, { method: "POST", body: form });
  const body = await res.json();
  if (!res.ok) return showError(body.error.message);
  if (platform === "copy") {
    await navigator.clipboard.writeText(body.share_url).catch(() => {});
    $("status").textContent = `Link copied: ${body.share_url}`;
  } else {
    window.open(body.intent_url, "_blank", "noopener");
  }
});
