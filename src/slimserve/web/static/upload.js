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
      const response = await fetch(form.dataset.url, { method: "POST", body, headers: slim.headers() });
      const data = await slim.readJson(response);
      if (mine !== generation) return;
      if (!response.ok || !data) { slim.showError(result, response.status, data); return; }
      slim.showPrediction(result, info, data.prediction, data.probabilities,
        "Decision threshold " + slim.percent(data.threshold) + " · model " + data.model + " " + data.version);
      if (typeof data.heatmap === "string" && data.heatmap.startsWith("data:image/")) {
        const overlay = document.createElement("img");
        overlay.src = data.heatmap;
        overlay.alt = "Heatmap of the regions that weighed most in the prediction";
        overlay.className = "heatmap";
        result.append(overlay);
      }
    } catch (err) {
      if (mine === generation) slim.showError(result, 0, { error: { message: "The service did not answer." } });
    }
  });
});
