// The tabular try-it page: one record from the form; the server validates, its field errors are shown in place.
"use strict";

function fieldValue(element) {
  if (element.tagName === "SELECT") {
    const option = element.selectedOptions[0];
    // The "Choose…" option leaves the field out (the server says whether it was required); "" can be a
    // real category, so it is told apart by the option, not by its value.
    if (!option || option.hasAttribute("data-placeholder")) return undefined;
    return element.dataset.type === "boolean" ? Number(option.value) : option.value;
  }
  const raw = element.value.trim();
  if (raw === "") return undefined;
  const number = Number(raw.replace(",", "."));
  return Number.isFinite(number) ? number : raw;  // sent as typed: the server names the problem
}

document.addEventListener("DOMContentLoaded", async () => {
  const form = document.getElementById("predict-form");
  const result = document.getElementById("result");
  const summary = document.getElementById("form-errors");
  const info = await slim.modelInfo(form);
  const inputs = Array.from(form.querySelectorAll("[data-feature]"));

  function clearErrors() {
    summary.hidden = true;
    summary.replaceChildren();
    for (const input of inputs) {
      input.removeAttribute("aria-invalid");
      const error = document.getElementById(input.id + "-error");
      error.textContent = "";
      error.hidden = true;
    }
  }

  function showFieldErrors(status, body) {
    const details = (body && body.error && (body.error.details || [body.error])) || [];
    let first = null;
    const unplaced = [];
    for (const detail of details) {
      const input = inputs.find((i) => i.dataset.feature === detail.field);
      if (!input) { unplaced.push(detail.message); continue; }
      const error = document.getElementById(input.id + "-error");
      error.textContent = (error.textContent ? error.textContent + " " : "") + detail.message;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      first = first || input;
    }
    const heading = document.createElement("p");
    heading.textContent = first ? "Please correct the highlighted fields." : "";
    summary.append(heading);
    for (const message of unplaced) {
      const line = document.createElement("p");
      line.textContent = message;
      summary.append(line);
    }
    if (!first && !unplaced.length) slim.showError(result, status, body);
    summary.hidden = false;
    if (first) first.focus();
  }

  form.addEventListener("input", () => slim.clear(result));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    slim.clear(result);
    const record = {};
    for (const input of inputs) {
      const value = fieldValue(input);
      if (value !== undefined) record[input.dataset.feature] = value;
    }
    try {
      const response = await fetch(form.dataset.url, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...slim.headers() },
        body: JSON.stringify({ records: [record] }),
      });
      const data = await slim.readJson(response);
      if (response.status === 422) { showFieldErrors(response.status, data); return; }
      if (!response.ok || !data) { slim.showError(result, response.status, data); return; }
      const row = data.predictions[0];
      slim.showPrediction(result, info, row.label, row.probabilities, "Model " + data.model + " " + data.version);
    } catch (err) {
      slim.showError(result, 0, { error: { message: "The service did not answer." } });
    }
  });
});
