// Draws an instance's BPMN diagram with bpmn-js (NavigatedViewer, served from static/vendor/)
// and marks the steps done, the ones waiting and the overdue ones (CSS: .completed, .active,
// .overdue in app.css); an element done more than once (a loop, a rework round) carries its count.
// Zoom buttons (in, out, fit) sit over the diagram; the wheel and dragging move it too. The step
// slider of the instance page shows the chosen step when let go.
(function () {
  "use strict";
  document.querySelectorAll("input[data-autosubmit]").forEach(function (input) {
    var output = input.form && input.form.querySelector("output");
    input.addEventListener("input", function () {
      if (output) output.textContent = input.value + " / " + input.max;
    });
    input.addEventListener("change", function () { input.form.submit(); });
  });
  var container = document.getElementById("diagram");
  if (!container || typeof window.BpmnJS !== "function") return;
  var source = document.getElementById(container.getAttribute("data-source"));
  var data = JSON.parse(source.textContent);
  var viewer = new window.BpmnJS({ container: container });
  viewer.importXML(data.xml).then(function () {
    var canvas = viewer.get("canvas");
    var registry = viewer.get("elementRegistry");
    var overlays = viewer.get("overlays");
    // Fit to the width: the box takes the diagram's proportions (within bounds), so a wide
    // diagram is not drawn small in a tall empty box; the wheel, dragging and the buttons zoom on.
    var inner = canvas.viewbox().inner;
    if (inner.width > 0) {
      var height = container.clientWidth * inner.height / inner.width + 48;
      container.style.height = Math.round(Math.max(260, Math.min(720, height))) + "px";
      canvas.resized();
    }
    canvas.zoom("fit-viewport");
    ["completed", "active", "overdue"].forEach(function (kind) {
      (data.markers[kind] || []).forEach(function (id) {
        if (registry.get(id)) canvas.addMarker(id, kind);
      });
    });
    var passes = data.markers.passes || {};
    Object.keys(passes).forEach(function (id) {
      if (!registry.get(id)) return;
      var badge = document.createElement("span");
      badge.className = "passes";
      badge.textContent = "\u00d7" + passes[id];
      overlays.add(id, { position: { top: -10, right: 8 }, html: badge });
    });
    var tools = document.querySelectorAll("[data-zoom]");
    tools.forEach(function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var how = button.getAttribute("data-zoom");
        if (how === "fit") canvas.zoom("fit-viewport", "auto");
        else canvas.zoom(canvas.zoom() * (how === "in" ? 1.25 : 0.8));
      });
    });
  }).catch(function (error) {
    container.textContent = container.getAttribute("data-error") || String(error);
  });
})();
