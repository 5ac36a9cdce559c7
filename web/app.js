// The customer's page: warm the GPU service, take a photo (pick, drop or paste), cut the pet
// out, show it (before/after, background), download it, share it. No framework, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const app = $("app");
  const cfg = window.PET_CUTOUT_CONFIG || {};
  const apiBase = (cfg.apiBase ?? app.dataset.apiBase ?? "").replace(/\/$/, "");
  const shareBase = (cfg.shareBase ?? app.dataset.shareBase ?? apiBase).replace(/\/$/, "");

  const MAX_BYTES = 25 * 1024 * 1024;
  const TYPES = ["image/jpeg", "image/png", "image/webp"];
  // Phones send 12–48 MP; the cut-out is made at a few hundred pixels and applied at this size.
  const MAX_SIDE = 3072;

  // Human sentences for the API's stable error codes.
  const MESSAGES = {
    empty_file: "That file is empty. Please choose a photo.",
    file_too_large: "That photo is too large. Please choose one under 25 MB.",
    unsupported_format: "That file is not a photo we can read. Please use a JPEG, PNG or WebP.",
    image_too_large: "That photo has too many pixels. Please choose a smaller one.",
    image_too_small: "That photo is too small. Please choose one at least 16 pixels wide.",
    invalid_image: "That photo seems damaged and could not be opened. Please try another.",
    invalid_multipart: "The upload did not arrive complete. Please try again.",
    queue_full: "Lots of pets right now! Please try again in a moment.",
    timeout: "That took too long. Please try again.",
    model_unavailable: "The cut-out service is not available right now. Please try again later.",
    model_loading: "The cut-out service is still waking up. Please try again in a moment.",
    storage_unavailable: "Sharing is briefly unavailable. Please try again in a moment.",
    rate_limited: "That was a lot at once. Please wait a minute and try again.",
    daily_budget_exhausted: "We have made all the cut-outs we can today. Please come back tomorrow.",
    token_expired: "This cut-out is too old to share. Please make it again.",
    invalid_token: "This cut-out cannot be shared. Please make it again.",
    result_not_found: "This cut-out is no longer stored. Please make it again.",
    network: "We could not reach the service. Please check your connection and try again.",
  };

  const state = { warm: null, result: null, original: null, cutout: null, retry: null, shares: {} };

  function status(text) {
    $("status").textContent = text;
  }

  function showError(code, fallback, retry) {
    $("error-text").textContent = MESSAGES[code] || fallback || "Something went wrong. Please try again.";
    $("error").dataset.code = code || "";
    state.retry = retry || null;
    $("retry").hidden = !retry;
    $("error").hidden = false;
    $("error").focus();
  }

  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  async function errorOf(res) {
    try {
      const body = await res.json();
      return body.error || { code: "", message: "" };
    } catch {
      return { code: "", message: `The service answered ${res.status}.` };
    }
  }

  // --- Warm-up: a cold start on the GPU service takes seconds; say so honestly. -------------
  // What is warming: the service says which backend it runs (`/version`); until it answers,
  // the line names the service, not a GPU it may not have.
  let warming = "Starting the cut-out service";
  fetch(`${apiBase}/version`, { headers: { accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : null))
    .then((v) => {
      if (v && v.backend && v.backend !== "cpu") warming = "Waking up the GPU";
      app.dataset.backend = v?.backend || "";
    })
    .catch(() => {});

  function warmUp() {
    const t0 = performance.now();
    const tick = setInterval(() => {
      const s = Math.round((performance.now() - t0) / 1000);
      if (s >= 1) status(`${warming}… ${s} s`);
    }, 250);
    app.dataset.state = "warming";
    status(`${warming}…`);
    const attempt = async () => {
      for (let i = 0; i < 20; i++) {
        try {
          const res = await fetch(`${apiBase}/warmup`, { method: "POST", headers: { accept: "application/json" } });
          if (res.ok) return res.json();
          const err = await errorOf(res);
          if (res.status !== 503) throw Object.assign(new Error(err.message), { code: err.code });
        } catch (e) {
          if (e.code) throw e;
        }
        await new Promise((r) => setTimeout(r, 2000));
      }
      throw Object.assign(new Error("not ready"), { code: "model_unavailable" });
    };
    state.warm = attempt().then(
      (w) => {
        clearInterval(tick);
        app.dataset.state = "ready";
        const s = (performance.now() - t0) / 1000;
        const woke = warming === "Waking up the GPU" ? "the GPU woke up" : "the service started";
        status(s > 2 ? `Ready (${woke} in ${Math.round(s)} s). Choose a photo.` : "Ready. Choose a photo of your pet.");
        return w;
      },
      (e) => {
        clearInterval(tick);
        app.dataset.state = "unavailable";
        status("The cut-out service is not available.");
        showError(e.code || "model_unavailable", e.message, () => {
          clearError();
          warmUp();
        });
        throw e;
      },
    );
    state.warm.catch(() => {});
  }

  // --- Intake in the browser: type, size, and a canvas downscale for huge photos. -----------
  async function loadBitmap(file) {
    if ("createImageBitmap" in window) {
      try {
        return await createImageBitmap(file, { imageOrientation: "from-image" });
      } catch {}
    }
    const url = URL.createObjectURL(file);
    try {
      const img = new Image();
      img.src = url;
      await img.decode();
      return img;
    } finally {
      URL.revokeObjectURL(url);
    }
  }

  async function prepare(file) {
    if (!file) return null;
    if (file.size === 0) return showError("empty_file");
    if (!TYPES.includes(file.type)) return showError("unsupported_format");
    if (file.size > MAX_BYTES) return showError("file_too_large");
    let bitmap;
    try {
      bitmap = await loadBitmap(file);
    } catch {
      return showError("invalid_image");
    }
    const w = bitmap.width;
    const h = bitmap.height;
    const scale = Math.min(1, MAX_SIDE / Math.max(w, h));
    if (scale === 1) return { blob: file, name: file.name, bitmap };
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(w * scale);
    canvas.height = Math.round(h * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.92));
    status(`Scaled your ${w}×${h} photo to ${canvas.width}×${canvas.height} before uploading.`);
    return { blob, name: "photo.jpg", bitmap: canvas };
  }

  // --- Upload with progress, then processing. ----------------------------------------------
  function upload(blob, name) {
    return new Promise((resolve, reject) => {
      const form = new FormData();
      form.append("image", blob, name);
      // The answer is a preview to show (lossy WebP, a fraction of the PNG's bytes); the PNG
      // stays stored and comes only when it is downloaded or shared (fullCutout).
      form.append("preview", "webp");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `${apiBase}/api/v2/remove-background`);
      xhr.responseType = "blob";
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) $("progress").value = Math.round((e.loaded / e.total) * 100);
      };
      xhr.upload.onload = () => {
        $("progress").removeAttribute("value");
        $("progress-label").textContent = "Cutting your pet out…";
        status("Cutting your pet out…");
      };
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => reject(Object.assign(new Error("network"), { code: "network" }));
      xhr.send(form);
    });
  }

  async function process(file) {
    clearError();
    const prepared = await prepare(file);
    if (!prepared) return;
    $("result").hidden = true;
    $("progress-wrap").hidden = false;
    $("progress").value = 0;
    $("progress-label").textContent = "Uploading…";
    app.dataset.state = "uploading";
    const run = async () => {
      try {
        if (state.warm) {
          status(`${warming}: waiting for it…`);
          await state.warm;
        }
        status("Uploading…");
        const xhr = await upload(prepared.blob, prepared.name);
        if (xhr.status !== 200) {
          const err = await errorOf(new Response(xhr.response, { status: xhr.status }));
          throw Object.assign(new Error(err.message), { code: err.code });
        }
        state.result = {
          id: xhr.getResponseHeader("x-result-id"),
          token: xhr.getResponseHeader("x-share-token"),
          ms: Number(xhr.getResponseHeader("x-processing-time-ms")),
        };
        state.base = { ...state.result };
        state.shares = {};
        // A service that could not make the preview answered the file itself.
        const answered = xhr.response;
        state.full = xhr.getResponseHeader("content-type") === "image/webp" ? null : loadFull(Promise.resolve(answered));
        resetEffects();
        await show(prepared.bitmap, xhr.response);
      } catch (e) {
        app.dataset.state = "error";
        status("");
        showError(e.code, e.message, () => process(file));
      } finally {
        $("progress-wrap").hidden = true;
      }
    };
    await run();
  }

  // --- The result: before/after, background, download. -------------------------------------
  async function show(original, cutoutBlob) {
    state.cutout = await loadBitmap(cutoutBlob);
    state.baseCutout = state.cutout;
    state.effectBlob = null;
    const before = $("before");
    const c = document.createElement("canvas");
    c.width = state.cutout.width;
    c.height = state.cutout.height;
    c.getContext("2d").drawImage(original, 0, 0, c.width, c.height);
    before.src = c.toDataURL("image/jpeg", 0.9);
    await render();
    $("result").hidden = false;
    app.dataset.state = "done";
    status(state.result.ms >= 50 ? `Done in ${(state.result.ms / 1000).toFixed(1)} s.` : "Done (you made this one before).");
    $("result-title").focus();
  }

  // --- The full-size cut-out, for the download and the shares. ------------------------------
  function loadFull(blobPromise) {
    const full = (async () => {
      const blob = await blobPromise;
      return { blob, bitmap: await loadBitmap(blob) };
    })();
    // A failed fetch is tried again on the next download or share.
    full.catch(() => {
      if (state.full === full) state.full = null;
    });
    return full;
  }

  function fullCutout() {
    if (!state.full) {
      const id = state.base.id;
      state.full = loadFull(
        fetch(`${apiBase}/api/v2/results/${id}`).then(async (res) => {
          if (res.ok) return res.blob();
          const err = await errorOf(res);
          throw Object.assign(new Error(err.message), { code: err.code });
        }),
      );
    }
    return state.full;
  }

  // What the download and the shares carry: the service's laid-out file, or the stored
  // full-size cut-out, as it is (transparent) or on the chosen background.
  async function downloadBlob() {
    if (state.effectBlob) return state.effectBlob;
    const full = await fullCutout();
    const bg = background();
    if (!bg) return full.blob;
    const c = document.createElement("canvas");
    c.width = full.bitmap.width;
    c.height = full.bitmap.height;
    const ctx = c.getContext("2d");
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, c.width, c.height);
    ctx.drawImage(full.bitmap, 0, 0);
    return new Promise((r) => c.toBlob(r, "image/png"));
  }

  let downloadSeq = 0;
  async function prepareDownload() {
    const seq = ++downloadSeq;
    const blob = await downloadBlob();
    if (seq !== downloadSeq) return null; // the picture changed meanwhile
    const link = $("download");
    if (link.dataset.url) URL.revokeObjectURL(link.dataset.url);
    link.dataset.url = URL.createObjectURL(blob);
    link.href = link.dataset.url;
    link.dataset.ready = "1";
    state.download = blob;
    return blob;
  }

  function background() {
    const v = document.querySelector('input[name="bg"]:checked').value;
    if (v === "white") return "#ffffff";
    if (v === "color") return $("bg-color").value;
    return null;
  }

  async function render() {
    const canvas = $("after");
    canvas.width = state.cutout.width;
    canvas.height = state.cutout.height;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const bg = background();
    canvas.dataset.background = bg || "transparent";
    if (bg) {
      ctx.fillStyle = bg;
      ctx.fillRect(0, 0, canvas.width, canvas.height);
    }
    ctx.drawImage(state.cutout, 0, 0);
    // With print options the service's file is the download (it carries the print's dpi and,
    // when a background is chosen, has it already); otherwise the full-size cut-out on the
    // background shown, made when it is first asked for (prepareDownload).
    const link = $("download");
    if (link.dataset.url) URL.revokeObjectURL(link.dataset.url);
    delete link.dataset.url;
    link.dataset.ready = "";
    link.href = "#";
    downloadSeq++;
    state.download = null;
    state.shares = {};
    const type = state.effectBlob?.type || "image/png";
    const name = type === "image/jpeg" ? "pet-cutout.jpg" : "pet-cutout.png";
    link.download = name;
    link.textContent = type === "image/jpeg" ? "Download JPEG" : "Download PNG";
    const file = new File([], name, { type });
    $("native-share").hidden = !(navigator.canShare && navigator.canShare({ files: [file] }));
    if (state.effectBlob) await prepareDownload();
  }

  async function onDownload(e) {
    const link = $("download");
    if (link.dataset.ready === "1") return; // the browser saves it
    e.preventDefault();
    clearError();
    try {
      status("Preparing your full-size picture…");
      if (await prepareDownload()) {
        status("");
        link.click();
      }
    } catch (err) {
      status("");
      showError(err.code || "network", err.message, () => link.click());
    }
  }

  function slide() {
    // The original covers the left part, up to the slider; the cut-out shows to its right.
    $("before-wrap").style.clipPath = `inset(0 ${100 - Number($("slider").value)}% 0 0)`;
  }

  // --- Sticker and print: the stored cut-out laid out again by the service (no model runs). --
  function effectFields() {
    const f = {};
    if ($("fx-outline").checked) f.outline = "true";
    if ($("fx-shadow").checked) f.shadow = "true";
    if ($("fx-crop").checked) f.crop = "true";
    const size = $("fx-size").value;
    if (size) {
      f.size = size;
      f.crop = "true";
      f.crop_margin = "6%";
    }
    return f;
  }

  function resetEffects() {
    for (const id of ["fx-outline", "fx-shadow", "fx-crop"]) $(id).checked = false;
    $("fx-size").value = "";
    $("compare").dataset.effects = "off";
  }

  let effectsSeq = 0;
  async function applyEffects() {
    if (!state.base) return;
    clearError();
    const fields = effectFields();
    const seq = ++effectsSeq;
    if (Object.keys(fields).length === 0) {
      state.result = { ...state.base };
      state.cutout = state.baseCutout;
      state.effectBlob = null;
      $("compare").dataset.effects = "off";
      await render();
      status("Done.");
      return;
    }
    const bg = background();
    const form = new FormData();
    form.append("result_id", state.base.id);
    form.append("token", state.base.token);
    for (const [k, v] of Object.entries(fields)) form.append(k, v);
    if (bg) {
      form.append("bg_color", bg);
      form.append("format", "auto");
    }
    status("Laying it out…");
    app.dataset.effects = "busy";
    try {
      const res = await fetch(`${apiBase}/api/v2/remove-background`, { method: "POST", body: form });
      if (!res.ok) {
        const err = await errorOf(res);
        throw Object.assign(new Error(err.message), { code: err.code });
      }
      const blob = await res.blob();
      if (seq !== effectsSeq) return; // a later change won
      state.result = { id: res.headers.get("x-result-id"), token: res.headers.get("x-share-token"), ms: state.base.ms };
      state.shares = {};
      state.effectBlob = blob;
      state.cutout = await loadBitmap(blob);
      $("compare").dataset.effects = "on";
      await render();
      app.dataset.layouts = String(Number(app.dataset.layouts || 0) + 1);
      const [w, h] = [res.headers.get("x-width"), res.headers.get("x-height")];
      status(`Ready: ${w}×${h} pixels${fields.size && /in|a4/.test(fields.size) ? " at 300 dpi" : ""}.`);
    } catch (e) {
      status("");
      showError(e.code || "network", e.message, applyEffects);
    } finally {
      if (seq === effectsSeq) app.dataset.effects = "";
    }
  }

  // --- Share. -------------------------------------------------------------------------------
  async function createShare(platform) {
    const key = `${platform}`;
    if (state.shares[key]) return state.shares[key];
    const form = new FormData();
    form.append("platform", platform);
    form.append("token", state.result.token);
    if (background() && !state.effectBlob) form.append("image", await downloadBlob(), "pet-cutout.png");
    else form.append("result_id", state.result.id);
    const res = await fetch(`${shareBase}/api/v2/share-image`, { method: "POST", body: form, headers: { accept: "application/json" } });
    if (!res.ok) {
      const err = await errorOf(res);
      throw Object.assign(new Error(err.message), { code: err.code });
    }
    const share = await res.json();
    state.shares[key] = share;
    return share;
  }

  async function onShare(platform) {
    clearError();
    // Open the window now, while the click still counts as a user gesture (popup blockers).
    const popup = platform === "copy" || platform === "email" ? null : window.open("", "_blank");
    try {
      status("Preparing your share…");
      const share = await createShare(platform);
      $("share-url").href = share.share_url;
      $("share-url").textContent = share.share_url;
      $("share-link").hidden = false;
      if (platform === "copy") {
        try {
          await navigator.clipboard.writeText(share.share_url);
          status("Link copied.");
        } catch {
          status("Here is your link: select it to copy.");
        }
      } else if (platform === "email") {
        window.location.href = share.intent_url;
        status("Opening your email…");
      } else if (popup) {
        popup.opener = null;
        popup.location.href = share.intent_url;
        status("Share window opened.");
      } else {
        window.location.href = share.intent_url;
      }
    } catch (e) {
      popup?.close();
      status("");
      showError(e.code || "network", e.message, () => onShare(platform));
    }
  }

  async function nativeShare() {
    try {
      const blob = state.download || (await prepareDownload());
      if (!blob) return;
      const file = new File([blob], $("download").download, { type: blob.type || "image/png" });
      const share = await createShare("copy");
      await navigator.share({ files: [file], title: document.title, url: share.share_url });
      status("Shared.");
    } catch (e) {
      // Fetching the full-size picture can outlast the tap's permission to share: it is
      // ready now, so the next tap shares at once.
      if (e.name === "NotAllowedError") status("Your picture is ready: tap Share again.");
      else if (e.name !== "AbortError") showError(e.code || "network", e.message);
    }
  }

  // --- Wiring. ------------------------------------------------------------------------------
  $("file").addEventListener("change", (e) => process(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    process(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.kind === "file");
    if (item) process(item.getAsFile());
  });
  $("retry").addEventListener("click", () => state.retry?.());
  $("slider").addEventListener("input", slide);
  const backgroundChanged = () => (state.effectBlob ? applyEffects() : render());
  document.querySelectorAll('input[name="bg"]').forEach((r) => r.addEventListener("change", backgroundChanged));
  // Live on the page; a laid-out print asks the service once the colour is picked.
  $("bg-color").addEventListener("input", () => {
    document.querySelector('input[name="bg"][value="color"]').checked = true;
    if (!state.effectBlob) render();
  });
  $("bg-color").addEventListener("change", () => {
    if (state.effectBlob) applyEffects();
  });
  for (const id of ["fx-outline", "fx-shadow", "fx-crop", "fx-size"]) $(id).addEventListener("change", applyEffects);
  $("again").addEventListener("click", () => {
    $("result").hidden = true;
    $("file").value = "";
    $("file").focus();
  });
  $("share").addEventListener("click", (e) => {
    const p = e.target.closest("button[data-platform]")?.dataset.platform;
    if (p) onShare(p);
  });
  $("native-share").addEventListener("click", nativeShare);
  $("download").addEventListener("click", onDownload);
  slide();
  warmUp();
})();
