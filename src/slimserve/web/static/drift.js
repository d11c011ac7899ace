// The model page's drift section: the JSON of /models/<name>/drift as a table with PSI meters.
"use strict";

document.addEventListener("DOMContentLoaded", async () => {
  const region = document.getElementById("drift");
  const response = await fetch(region.dataset.url, { headers: { "Accept": "application/json" } });
  const report = await response.json().catch(() => null);
  region.replaceChildren();
  if (!response.ok || !report) {
    region.textContent = (report && report.error && report.error.message) || "No drift report.";
    return;
  }
  const summary = document.createElement("p");
  summary.className = "status-" + report.status;
  summary.textContent = "Status: " + report.status + " · " + report.window_rows + " of the last " +
    report.window_size + " rows in the window" + (report.judged ? "" : " (too few to judge yet)") +
    " · counts kept in " + report.store;
  const table = document.createElement("table");
  const caption = document.createElement("caption");
  caption.textContent = "Population stability index (PSI) and chi-square p-value against the training data";
  const head = document.createElement("thead");
  head.innerHTML = "<tr><th scope=\"col\">Column</th><th scope=\"col\">PSI</th><th scope=\"col\">p-value</th>" +
    "<th scope=\"col\">Status</th></tr>";
  const body = document.createElement("tbody");
  for (const column of [...report.features, report.prediction]) {
    const row = document.createElement("tr");
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = column.name;
    const psi = document.createElement("td");
    const meter = document.createElement("meter");
    meter.min = 0; meter.max = 0.5; meter.low = report.thresholds.psi_warn; meter.high = report.thresholds.psi_drift;
    meter.optimum = 0; meter.value = column.psi === null ? 0 : Math.min(column.psi, 0.5);
    meter.setAttribute("aria-label", "PSI of " + column.name);
    psi.append(meter, " " + (column.psi === null ? "–" : column.psi.toFixed(3)));
    const p = document.createElement("td");
    p.textContent = column.p_value === null ? "–" : column.p_value.toExponential(1);
    const status = document.createElement("td");
    status.textContent = column.status;
    row.append(name, psi, p, status);
    body.append(row);
  }
  table.append(caption, head, body);
  region.append(summary, table);
});
