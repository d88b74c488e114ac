// AssetQL asset library: small progressive enhancements; every page works without them.
"use strict";

// Bulk selection: a form with data-bulk counts its checked images and enables its actions.
function setUpBulk(form) {
  const boxes = () => Array.from(form.querySelectorAll('input[name="asset"]'));
  const all = form.querySelector("[data-select-all]");
  const count = form.querySelector("[data-count]");
  const update = () => {
    const chosen = boxes().filter((b) => b.checked).length;
    if (count) count.textContent = chosen === 1 ? "1 selected" : `${chosen} selected`;
    form.querySelectorAll("[data-needs-selection]").forEach((b) => { b.disabled = chosen === 0; });
    boxes().forEach((b) => { const tile = b.closest(".tile, tr"); if (tile) tile.classList.toggle("chosen", b.checked); });
    if (all) all.checked = chosen > 0 && chosen === boxes().length;
  };
  form.addEventListener("change", (event) => {
    if (event.target === all) boxes().forEach((b) => { b.checked = all.checked; });
    update();
  });
  update();
}

// Polling: an element with data-poll (a JSON URL) shows the run's progress and reloads the page
// when the run has ended, so the finished images appear.
function setUpPoll(element) {
  const url = element.dataset.poll;
  const text = element.querySelector("[data-progress-text]");
  const bar = element.querySelector("progress");
  const tick = async () => {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      const progress = data.progress;
      if (progress) {
        if (bar && progress.planned) { bar.max = progress.planned; bar.value = progress.done; }
        if (text) {
          const eta = progress.eta_seconds != null ? ` · about ${Math.max(1, Math.round(progress.eta_seconds))} s left` : "";
          text.textContent = `${progress.status} · ${progress.done}/${progress.planned} images${eta}`;
        }
      }
      const status = progress ? progress.status : null;
      const finished = data.running === false || ["succeeded", "failed"].includes(status);
      if (finished) {
        // Reload without a notice the page arrived with: it was said once.
        const here = new URL(window.location.href);
        here.searchParams.delete("notice");
        here.searchParams.delete("n");
        window.location.replace(here.toString());
        return;
      }
    } catch (error) { /* the next tick tries again */ }
    window.setTimeout(tick, 2000);
  };
  window.setTimeout(tick, 1500);
}

// Reference images chosen for upload are shown before anything is sent.
function setUpPreview(input) {
  const target = document.getElementById(input.dataset.preview);
  input.addEventListener("change", () => {
    target.replaceChildren();
    Array.from(input.files || []).slice(0, 8).forEach((file) => {
      if (!file.type.startsWith("image/")) return;
      const img = document.createElement("img");
      img.src = URL.createObjectURL(file);
      img.alt = file.name;
      img.title = `${file.name} · ${(file.size / 1e6).toFixed(1)} MB`;
      target.appendChild(img);
    });
  });
}

// A form with data-busy shows that it is working once sent (and cannot be sent twice).
function setUpBusy(form) {
  form.addEventListener("submit", () => {
    const button = form.querySelector('button[type="submit"], button:not([type])');
    if (button) { button.disabled = true; button.textContent = form.dataset.busy; }
  });
}

function setUpCounter(field) {
  const out = document.getElementById(field.dataset.counter);
  const update = () => { out.textContent = `${field.value.length} / ${field.maxLength}`; };
  field.addEventListener("input", update);
  update();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-bulk]").forEach(setUpBulk);
  document.querySelectorAll("[data-poll]").forEach(setUpPoll);
  document.querySelectorAll("input[data-preview]").forEach(setUpPreview);
  document.querySelectorAll("form[data-busy]").forEach(setUpBusy);
  document.querySelectorAll("textarea[data-counter]").forEach(setUpCounter);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
  });
});
