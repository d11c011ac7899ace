// Shared by the try-it pages: credentials kept in memory, model info, probabilities, results and errors.
"use strict";

const slim = {
  // The key lives in this variable only (never localStorage or cookies): gone with the tab.
  credential: null,

  headers() {
    const field = document.getElementById("credential");
    if (field && field.value.trim()) slim.credential = field.value.trim();
    return slim.credential ? { "Authorization": "Bearer " + slim.credential } : {};
  },

  async modelInfo(form) {
    const response = await fetch(form.dataset.info, { headers: { "Accept": "application/json" } });
    return response.ok ? response.json() : { labels: [], label_names: {} };
  },

  // 0.99995 is not "1.000": probabilities are shown as percentages that never round to certainty.
  percent(p) {
    if (p >= 0.999) return "> 99.9 %";
    if (p <= 0.001) return "< 0.1 %";
    return (p * 100).toFixed(1) + " %";
  },

  labelName(info, label) {
    return (info.label_names && info.label_names[label]) || label;
  },

  clear(region) {
    region.replaceChildren();
    region.hidden = true;
    region.classList.remove("error");
  },

  showPrediction(region, info, label, probabilities, extra) {
    region.replaceChildren();
    region.classList.remove("error");
    const heading = document.createElement("p");
    heading.className = "label";
    heading.textContent = slim.labelName(info, label);
    const list = document.createElement("ul");
    list.className = "probabilities";
    for (const [name, p] of Object.entries(probabilities).sort((a, b) => b[1] - a[1])) {
      const item = document.createElement("li");
      item.textContent = slim.labelName(info, name) + ": " + slim.percent(p);
      list.append(item);
    }
    const detail = document.createElement("p");
    detail.className = "meta";
    detail.textContent = extra;
    region.append(heading, list, detail);
    region.hidden = false;
  },

  showError(region, status, body) {
    region.replaceChildren();
    region.classList.add("error");
    const message = document.createElement("p");
    const error = body && body.error;
    message.textContent = error ? error.message : "The request failed (HTTP " + status + ").";
    region.append(message);
    if (error && error.code) {
      const code = document.createElement("p");
      code.className = "meta";
      code.textContent = "Error code: " + error.code + " · HTTP " + status;
      region.append(code);
    }
    region.hidden = false;
  },

  async readJson(response) {
    try { return await response.json(); } catch (err) { return null; }
  },
};
