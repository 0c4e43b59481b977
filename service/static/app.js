// The vireid web page: search by crop, browse and delete, add crops. Plain JS, same-origin requests only.
"use strict";

const KEY_STORAGE = "vireid.apiKey"; // sessionStorage only: the key leaves with the tab
const GALLERY_PAGE = 48;
const SCAN_PAGE = 1000; // the list endpoint's largest page, used when the gallery view filters by label/camera
const UPLOAD_BATCH = 16; // files per POST /gallery

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- API access

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function authHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

const STATUS_TEXT = {
  400: "Bad request",
  401: "API key needed",
  403: "This API key cannot do that",
  404: "Not found",
  413: "Too large",
  422: "Invalid input",
  503: "Service busy or not ready",
};

// A readable message from an error response: what went wrong in words, then the service's own detail.
function errorMessage(status, bodyText) {
  let code = "";
  let detail = bodyText || "";
  try {
    const body = JSON.parse(bodyText);
    code = body.error || "";
    detail = body.detail || detail;
  } catch (_) {
    // not the service's JSON error body: show the text as it is
  }
  let title = STATUS_TEXT[status] || `Error ${status}`;
  if (status === 415) title = code === "unsupported_media_type" ? "Unsupported content type" : "Not an image";
  if (status === 401) title = apiKey() ? "API key refused" : "API key needed (enter it at the top right)";
  return `${title}: ${detail}`;
}

class ApiError extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  } catch (err) {
    throw new ApiError(`The service did not answer (${err.message}).`);
  }
  if (!response.ok) throw new ApiError(errorMessage(response.status, await response.text()));
  return response;
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

function showError(element, err) {
  element.textContent = err instanceof ApiError ? err.message : `Unexpected error: ${err}`;
  element.hidden = false;
}

function clearError(element) {
  element.textContent = "";
  element.hidden = true;
}

// ---------------------------------------------------------------- thumbnails

// Object URLs of thumbnails shown in a container, revoked when the container is redrawn.
const objectUrls = new WeakMap();

function releaseUrls(container) {
  for (const url of objectUrls.get(container) || []) URL.revokeObjectURL(url);
  objectUrls.set(container, []);
}

function keepUrl(container, url) {
  if (!objectUrls.has(container)) objectUrls.set(container, []);
  objectUrls.get(container).push(url);
}

// Thumbnails are fetched (not plain <img src>) so that the API key goes with them when reads need one.
function thumbnail(container, item, alt) {
  const frame = document.createElement("div");
  frame.className = `thumb ${item.modality}`;
  const img = document.createElement("img");
  img.alt = alt;
  img.decoding = "async";
  frame.append(img);
  fetch(`/gallery/${item.id}/thumbnail`, { headers: authHeaders() })
    .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(String(r.status)))))
    .then((blob) => {
      const url = URL.createObjectURL(blob);
      keepUrl(container, url);
      img.src = url;
    })
    .catch(() => {
      img.remove();
      frame.classList.add("missing");
      frame.textContent = "no thumbnail";
    });
  return frame;
}

// ---------------------------------------------------------------- formatting

// "taken 2026-12-03 06:05" (capture time) or "added ..." (no capture time given), in the browser's time zone.
function formatTime(item) {
  const raw = item.captured_at || item.added_at;
  if (!raw) return "";
  const date = new Date(raw);
  const pad = (n) => String(n).padStart(2, "0");
  const text = Number.isNaN(date.getTime())
    ? raw
    : `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return item.captured_at ? `taken ${text}` : `added ${text}`;
}

function modalityName(modality) {
  return modality === "ir" ? "infrared" : modality === "vis" ? "visible" : modality;
}

// The same-person indication, when the service gives one (fields `same_person` and/or `p_same` on a match).
function samePerson(match) {
  const p = typeof match.p_same === "number" ? match.p_same : null;
  const verdict = typeof match.same_person === "boolean" ? match.same_person : p !== null ? p >= 0.5 : null;
  if (verdict === null) return null;
  const badge = document.createElement("span");
  badge.className = verdict ? "badge same" : "badge different";
  const percent = p !== null ? ` · ${Math.round(p * 100)}%` : "";
  badge.textContent = `${verdict ? "same person" : "likely different"}${percent}`;
  return badge;
}

function line(className, text) {
  const p = document.createElement("p");
  p.className = className;
  p.textContent = text;
  return p;
}

// ---------------------------------------------------------------- item details and delete

let detailsItem = null;
let afterDelete = () => {};

// The item's details in a dialog; ``onDeleted`` runs after a delete from there, ``errorBox`` shows a failed read.
async function openDetails(itemId, onDeleted, errorBox) {
  const dialog = $("details");
  clearError($("details-error"));
  afterDelete = onDeleted;
  let item;
  try {
    item = await apiJson(`/gallery/${itemId}`);
  } catch (err) {
    showError(errorBox, err);
    return;
  }
  detailsItem = item;
  $("details-title").textContent = `Item ${item.id}`;
  const image = $("details-image");
  releaseUrls(image);
  image.replaceChildren(thumbnail(image, item, `Gallery item ${item.id}`));
  const fields = [
    ["Modality", `${item.modality} (${modalityName(item.modality)})`],
    ["Label", item.label ?? "—"],
    ["Camera", item.camera ?? "—"],
    ["Captured at", item.captured_at ?? "—"],
    ["Added at", item.added_at],
    ["Source", item.source ?? "—"],
    ["SHA-256", item.sha256 ?? "—"],
    ["Extra", Object.keys(item.extra || {}).length ? JSON.stringify(item.extra, null, 1) : "—"],
  ];
  $("details-fields").replaceChildren(
    ...fields.flatMap(([name, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      return [dt, dd];
    }),
  );
  if (!dialog.open) dialog.showModal();
}

function initDetails() {
  $("details-close").addEventListener("click", () => $("details").close());
  $("details-delete").addEventListener("click", () => {
    if (!detailsItem) return;
    $("confirm-title").textContent = `Delete item ${detailsItem.id}?`;
    $("confirm-text").textContent =
      `Its vector, metadata and thumbnail are removed from the gallery for good` +
      (detailsItem.label ? ` (label ${detailsItem.label}).` : ".");
    $("confirm").showModal();
  });
  $("confirm-cancel").addEventListener("click", () => $("confirm").close());
  $("confirm-delete").addEventListener("click", async () => {
    $("confirm").close();
    const item = detailsItem;
    try {
      await api(`/gallery/${item.id}`, { method: "DELETE" });
    } catch (err) {
      showError($("details-error"), err);
      return;
    }
    $("details").close();
    afterDelete(item);
    refreshStatus();
  });
}

// ---------------------------------------------------------------- shared form fields

// Each <div data-item-fields="PREFIX"> replaced by a copy of the modality, label and camera fields of the
// "item-fields" template: ids PREFIX-modality, PREFIX-label, PREFIX-camera, each tied to its label; the select
// offers the div's data-modalities in order (the first selected, "all" being the empty value); data-label-hint and
// data-camera-hint replace the inputs' placeholders.
function itemFields() {
  const template = $("item-fields");
  for (const slot of document.querySelectorAll("[data-item-fields]")) {
    const fields = template.content.cloneNode(true);
    for (const control of fields.querySelectorAll("select, input")) {
      control.id = `${slot.dataset.itemFields}-${control.name}`;
      control.closest(".field").querySelector("label").htmlFor = control.id;
      const hint = slot.getAttribute(`data-${control.name}-hint`);
      if (hint) control.placeholder = hint;
    }
    const select = fields.querySelector("select");
    const options = new Map(Array.from(select.options, (option) => [option.value || "all", option]));
    select.replaceChildren(...slot.dataset.modalities.split(" ").map((name) => options.get(name)));
    select.selectedIndex = 0;
    slot.replaceWith(fields);
  }
}

// ---------------------------------------------------------------- search

function showQuery(files) {
  const box = $("query-crops");
  releaseUrls(box);
  if (!files.length) return;
  box.replaceChildren(
    ...Array.from(files).map((file) => {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      const url = URL.createObjectURL(file);
      keepUrl(box, url);
      img.src = url;
      img.alt = `Query crop ${file.name}`;
      const caption = document.createElement("figcaption");
      caption.textContent = file.name;
      figure.append(img, caption);
      return figure;
    }),
  );
}

function matchCard(list, match, rank) {
  const item = match.metadata;
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.setAttribute("aria-label", `Rank ${rank}: item ${match.id}, score ${match.score.toFixed(3)}${item.label ? `, label ${item.label}` : ""}`);
  const score = document.createElement("div");
  score.className = "score";
  const bar = document.createElement("span");
  bar.className = "score-bar";
  bar.style.width = `${Math.max(0, Math.min(1, match.score)) * 100}%`;
  score.append(line("score-value", `#${rank} · ${match.score.toFixed(3)}`), bar);
  button.append(thumbnail(list, item, `Match ${rank}, item ${match.id}`), score);
  const same = samePerson(match);
  if (same) button.append(same);
  button.append(
    line("meta label", item.label ? `label ${item.label}` : "no label"),
    line("meta", item.camera ? `camera ${item.camera}` : "no camera"),
    line("meta time", formatTime(item)),
  );
  button.addEventListener("click", () => openDetails(match.id, () => li.remove(), $("search-error")));
  li.append(button);
  return li;
}

async function runSearch(event) {
  event.preventDefault();
  const error = $("search-error");
  clearError(error);
  const files = $("search-file").files;
  if (!files.length) {
    showError(error, new ApiError("Choose a query image first."));
    return;
  }
  const form = new FormData();
  for (const file of files) form.append("file", file, file.name);
  const params = new URLSearchParams({ modality: $("search-modality").value });
  for (const [name, id] of [["top_k", "search-top-k"], ["min_score", "search-min-score"], ["label", "search-label"], ["camera", "search-camera"]]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  const list = $("matches");
  $("matches-summary").textContent = "searching…";
  let result;
  try {
    result = await apiJson(`/search?${params}`, { method: "POST", body: form });
  } catch (err) {
    $("matches-summary").textContent = "";
    showError(error, err);
    return;
  }
  releaseUrls(list);
  list.replaceChildren(...result.matches.map((m, i) => matchCard(list, m, i + 1)));
  const target = result.target_modality ? `${modalityName(result.target_modality)} gallery` : "whole gallery";
  $("matches-summary").textContent = `${result.matches.length} in the ${target} · model ${result.model_version}`;
}

// ---------------------------------------------------------------- gallery

const galleryState = { page: 0, total: 0 };

function galleryCard(list, item) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.setAttribute("aria-label", `Item ${item.id}${item.label ? `, label ${item.label}` : ""}, ${modalityName(item.modality)}`);
  button.append(
    thumbnail(list, item, `Gallery item ${item.id}`),
    line("meta label", `#${item.id}${item.label ? ` · ${item.label}` : ""}`),
    line("meta", `${item.modality}${item.camera ? ` · ${item.camera}` : ""}`),
  );
  button.addEventListener("click", () => openDetails(item.id, () => loadGallery(), $("gallery-error")));
  li.append(button);
  return li;
}

// A page of items; a label/camera filter is applied here, over the whole list read in pages of SCAN_PAGE.
async function galleryPage(modality, label, camera, page) {
  const base = new URLSearchParams();
  if (modality) base.set("modality", modality);
  if (!label && !camera) {
    base.set("offset", String(page * GALLERY_PAGE));
    base.set("limit", String(GALLERY_PAGE));
    const body = await apiJson(`/gallery?${base}`);
    return { items: body.items, total: body.total, counts: body.counts };
  }
  const kept = [];
  let counts = {};
  for (let offset = 0; ; offset += SCAN_PAGE) {
    base.set("offset", String(offset));
    base.set("limit", String(SCAN_PAGE));
    const body = await apiJson(`/gallery?${base}`);
    counts = body.counts;
    kept.push(...body.items.filter((i) => (!label || i.label === label) && (!camera || i.camera === camera)));
    if (body.items.length < SCAN_PAGE) break;
  }
  return { items: kept.slice(page * GALLERY_PAGE, (page + 1) * GALLERY_PAGE), total: kept.length, counts };
}

async function loadGallery() {
  const error = $("gallery-error");
  clearError(error);
  const modality = $("gallery-modality").value;
  const label = $("gallery-label").value.trim();
  const camera = $("gallery-camera").value.trim();
  let result;
  try {
    result = await galleryPage(modality, label, camera, galleryState.page);
  } catch (err) {
    showError(error, err);
    return;
  }
  if (!result.items.length && galleryState.page > 0 && result.total > 0) {
    galleryState.page = Math.ceil(result.total / GALLERY_PAGE) - 1; // the last page emptied by a delete
    await loadGallery();
    return;
  }
  galleryState.total = result.total;
  const list = $("gallery-items");
  releaseUrls(list);
  list.replaceChildren(...result.items.map((item) => galleryCard(list, item)));
  const counts = result.counts;
  const filtered = label || camera || modality ? ` · ${result.total} shown by the filter` : "";
  $("gallery-counts").textContent = `visible ${counts.vis ?? 0} · infrared ${counts.ir ?? 0}${filtered}`;
  const pages = Math.max(1, Math.ceil(result.total / GALLERY_PAGE));
  $("gallery-page").textContent = `Page ${galleryState.page + 1} of ${pages}`;
  $("gallery-prev").disabled = galleryState.page === 0;
  $("gallery-next").disabled = galleryState.page + 1 >= pages;
}

function initGallery() {
  $("gallery-form").addEventListener("submit", (event) => {
    event.preventDefault();
    galleryState.page = 0;
    loadGallery();
  });
  $("gallery-modality").addEventListener("change", () => {
    galleryState.page = 0;
    loadGallery();
  });
  $("gallery-prev").addEventListener("click", () => {
    galleryState.page = Math.max(0, galleryState.page - 1);
    loadGallery();
  });
  $("gallery-next").addEventListener("click", () => {
    galleryState.page += 1;
    loadGallery();
  });
}

// ---------------------------------------------------------------- adding crops

function describeSelection() {
  const files = Array.from($("add-files").files);
  const bytes = files.reduce((sum, f) => sum + f.size, 0);
  $("add-selection").textContent = files.length
    ? `${files.length} file${files.length > 1 ? "s" : ""} chosen, ${(bytes / 1024).toFixed(1)} KiB`
    : "No file chosen.";
}

// One POST /gallery through XHR, whose upload progress events fetch does not offer.
function uploadBatch(files, params, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    for (const name of ["label", "camera"]) {
      const value = $(`add-${name}`).value.trim();
      if (value) form.append(name, value);
    }
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/gallery?${params}`);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded));
    xhr.addEventListener("load", () => {
      if (xhr.status === 201) resolve(JSON.parse(xhr.responseText));
      else reject(new ApiError(errorMessage(xhr.status, xhr.responseText)));
    });
    xhr.addEventListener("error", () => reject(new ApiError("The upload failed: the service did not answer.")));
    xhr.send(form);
  });
}

async function addCrops(event) {
  event.preventDefault();
  const error = $("add-error");
  const status = $("add-status");
  const progress = $("add-progress");
  clearError(error);
  status.textContent = "";
  const files = Array.from($("add-files").files);
  if (!files.length) {
    showError(error, new ApiError("Choose or drop crop images first."));
    return;
  }
  const params = new URLSearchParams({ modality: $("add-modality").value });
  const total = files.reduce((sum, f) => sum + f.size, 0) || 1;
  let done = 0;
  const ids = [];
  progress.value = 0;
  for (let start = 0; start < files.length; start += UPLOAD_BATCH) {
    const batch = files.slice(start, start + UPLOAD_BATCH);
    const size = batch.reduce((sum, f) => sum + f.size, 0);
    status.textContent = `Uploading ${start + 1}–${start + batch.length} of ${files.length}…`;
    try {
      const added = await uploadBatch(batch, params, (loaded) => {
        progress.value = (100 * (done + Math.min(loaded, size))) / total;
      });
      ids.push(...added.ids);
    } catch (err) {
      showError(error, err);
      status.textContent = ids.length ? `Added ${ids.length} crops before the error (ids ${ids[0]}–${ids[ids.length - 1]}).` : "";
      refreshStatus();
      return;
    }
    done += size;
    progress.value = (100 * done) / total;
  }
  const span = ids.length > 1 ? `ids ${ids[0]}–${ids[ids.length - 1]}` : `id ${ids[0]}`;
  status.textContent = `Added ${ids.length} crop${ids.length > 1 ? "s" : ""} to the ${modalityName(params.get("modality"))} gallery (${span}).`;
  refreshStatus();
}

function initAdd() {
  const zone = $("dropzone");
  const input = $("add-files");
  input.addEventListener("change", describeSelection);
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => {
      e.preventDefault();
      zone.classList.add("over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const images = Array.from(e.dataTransfer.files).filter((f) => f.type.startsWith("image/") || !f.type);
    const transfer = new DataTransfer();
    for (const file of images) transfer.items.add(file);
    input.files = transfer.files;
    describeSelection();
  });
  $("add-form").addEventListener("submit", addCrops);
}

// ---------------------------------------------------------------- page frame

async function refreshStatus() {
  const status = $("service-status");
  try {
    const ready = await (await fetch("/readyz")).json();
    if (ready.status !== "ready") throw new Error(ready.detail || "not ready");
    status.textContent = `model ${ready.model_version} · ${ready.embedding_dim}-d · gallery: visible ${ready.gallery.vis}, infrared ${ready.gallery.ir}`;
    status.classList.remove("down");
  } catch (err) {
    status.textContent = `service not ready (${err.message})`;
    status.classList.add("down");
  }
}

function selectTab(tab) {
  for (const other of document.querySelectorAll('[role="tab"]')) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (tab.id === "tab-gallery") loadGallery();
}

function initTabs() {
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (e) => {
      const step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
      selectTab(next);
      next.focus();
    });
  }
}

function initKey() {
  const input = $("api-key");
  input.value = apiKey();
  input.addEventListener("input", () => {
    if (input.value) sessionStorage.setItem(KEY_STORAGE, input.value);
    else sessionStorage.removeItem(KEY_STORAGE);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  itemFields();
  initKey();
  initTabs();
  initDetails();
  initGallery();
  initAdd();
  $("search-file").addEventListener("change", (e) => showQuery(e.target.files));
  $("search-form").addEventListener("submit", runSearch);
  refreshStatus();
});
