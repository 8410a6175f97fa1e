// The pages work without this file; it adds the list of chosen files, drag and drop,
// and live progress (server-sent events), paused while the tab is hidden.
"use strict";

function showTimes(root) {
  root.querySelectorAll("[data-time]").forEach((el) => {
    const when = new Date(parseFloat(el.dataset.time) * 1000);
    el.textContent = when.toLocaleString();
  });
}

function setupUpload() {
  const input = document.getElementById("files");
  const drop = document.getElementById("drop");
  const chosen = document.getElementById("chosen");
  const form = document.getElementById("upload-form");
  if (!input || !drop || !chosen || !form) return;
  const list = () => {
    chosen.replaceChildren();
    for (const file of input.files) {
      const li = document.createElement("li");
      const size = file.size < 1024 ? `${file.size} bytes` : file.size < 1048576
        ? `${(file.size / 1024).toFixed(0)} KB` : `${(file.size / 1048576).toFixed(1)} MB`;
      li.textContent = `${file.name} (${size})`;
      chosen.appendChild(li);
    }
  };
  input.addEventListener("change", list);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; list(); }
  });
  form.addEventListener("submit", () => {
    const button = document.getElementById("send");
    if (button) { button.disabled = true; button.textContent = "Uploading…"; }
  });
}

function setText(root, field, text) {
  const el = root.querySelector(`[data-field="${field}"]`);
  if (el && el.textContent !== text) el.textContent = text;
}

function archiveNode(status, download) {
  const p = document.createElement("span");
  if (status.archive.ready && !status.expired) {
    const a = document.createElement("a");
    a.href = download;
    a.className = "button";
    a.textContent = "Download the archive (zip)";
    a.setAttribute("download", "");
    p.appendChild(a);
  } else if (status.archive.state === "dead") {
    p.textContent = `The archive could not be built: ${status.archive.error || ""}`;
  } else {
    p.textContent = status.expired ? "expired" : "The archive is built once every file has ended.";
  }
  return p;
}

function render(root, status) {
  setText(root, "summary", `${status.ended} of ${status.total} ended, ${status.converted} converted`);
  root.querySelectorAll("progress[max]").forEach((bar) => {
    if (!bar.closest("tr")) bar.value = status.ended;
  });
  const download = root.dataset.download || `/uploads/${status.upload}/converted.zip`;
  const archive = root.querySelector('[data-field="archive"]');
  if (archive) archive.replaceChildren(archiveNode(status, download));
  for (const file of status.files) {
    if (!file.job) continue;
    const row = root.querySelector(`tr[data-job="${CSS.escape(file.job)}"]`);
    if (!row) continue;
    row.className = `state-${file.state}`;
    setText(row, "state", file.shown);
    setText(row, "message", file.message || "");
    const bar = row.querySelector("progress");
    if (bar) bar.value = file.progress;
  }
}

function setupLive() {
  const roots = [...document.querySelectorAll('[data-upload][data-live="detail"], [data-upload][data-live="summary"]')];
  if (!roots.length) return;
  let source = null;
  let timer = null;
  const refresh = () => {
    timer = null;
    for (const root of roots) {
      fetch(`/uploads/${encodeURIComponent(root.dataset.upload)}/status`, { headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : null))
        .then((status) => { if (status) render(root, status); })
        .catch(() => {});
    }
  };
  const soon = () => { if (timer === null) timer = setTimeout(refresh, 250); };
  const open = () => {
    if (source) return;
    source = new EventSource("/events");
    source.onmessage = soon;
    source.onopen = soon;  // catch up with what happened while closed
  };
  const close = () => { if (source) { source.close(); source = null; } };
  document.addEventListener("visibilitychange", () => (document.hidden ? close() : open()));
  if (!document.hidden) open();
}

document.addEventListener("DOMContentLoaded", () => {
  showTimes(document);
  setupUpload();
  setupLive();
});
