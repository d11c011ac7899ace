// The image try-it page: preview, a fresh result for every file, label names from /models/<name>.
"use strict";

document.addEventListener("DOMContentLoaded", async () => {
  const form = document.getElementById("predict-form");
  const input = document.getElementById("file");
  const preview = document.getElementById("preview");
  const result = document.getElementById("result");
  const info = await slim.modelInfo(form);
  let previewUrl = null;
  let generation = 0;  // an answer for an earlier file must not land after the file changed

  input.addEventListener("change", () => {
    generation += 1;
    slim.clear(result);
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    preview.hidden = true;
    const file = input.files[0];
    if (file) {
      previewUrl = URL.createObjectURL(file);
      preview.src = previewUrl;
      preview.hidden = false;
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const mine = ++generation;
    if (!input.files[0]) {
      slim.showError(result, 0, { error: { message: "Choose an image file first." } });
      input.focus();
      return;
    }
    const body = new FormData();
    body.append("file", input.files[0]);
    result.classList.remove("error");
    result.textContent = "Classifying…";
    result.hidden = false;
    try {
      // Models that export an activation map also draw where the evidence was (`?explain=true`).
      const url = form.dataset.url + (info && info.explains ? "?explain=true" : "");
      const response = await fetch(url, { method: "POST", body, headers: slim.headers() });
      const data = await slim.readJson(response);
      if (mine !== generation) return;
      if (!response.ok || !data) { slim.showError(result, response.status, data); return; }
      slim.showPrediction(result, info, data.prediction, data.probabilities,
        "Decision threshold " + slim.percent(data.threshold) + " · model " + data.model + " " + data.version);
      const map = data.heatmap;
      if (map && map.media_type === "image/png" && typeof map.data === "string" && previewUrl) {
        // The heatmap has the upload's aspect ratio: stretched over a copy of the X-ray, it lines up.
        const figure = document.createElement("figure");
        figure.className = "overlay";
        const xray = document.createElement("img");
        xray.src = previewUrl;
        xray.alt = "The uploaded X-ray";
        const overlay = document.createElement("img");
        overlay.src = "data:image/png;base64," + map.data;
        overlay.alt = "Heatmap of the regions that weighed most towards pneumonia";
        overlay.className = "heatmap";
        const caption = document.createElement("figcaption");
        caption.textContent = "Red: where the model saw evidence of pneumonia (not a diagnosis).";
        figure.append(xray, overlay, caption);
        result.append(figure);
      }
    } catch (err) {
      if (mine === generation) slim.showError(result, 0, { error: { message: "The service did not answer." } });
    }
  });
});
