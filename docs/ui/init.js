// Starts the viewer of /docs/ on the document nginx serves beside it.
// validatorUrl null: by default swagger-ui sends the document to an outside
// validator for a badge (make check-openapi lints it instead).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.yaml",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
