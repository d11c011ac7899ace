// Swagger UI on this server's OpenAPI document (loaded from this origin; no inline script).
"use strict";

window.addEventListener("load", () => {
  const target = document.getElementById("swagger");
  window.ui = SwaggerUIBundle({ url: target.dataset.url, domNode: target, deepLinking: true });
});
