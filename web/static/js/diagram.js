// Draws an instance's BPMN diagram with bpmn-js (NavigatedViewer, served from static/vendor/)
// and marks the steps done, the ones waiting now and the overdue ones (CSS: .completed,
// .active, .overdue in app.css).
(function () {
  "use strict";
  var container = document.getElementById("diagram");
  if (!container || typeof window.BpmnJS !== "function") return;
  var source = document.getElementById(container.getAttribute("data-source"));
  var data = JSON.parse(source.textContent);
  var viewer = new window.BpmnJS({ container: container });
  viewer.importXML(data.xml).then(function () {
    var canvas = viewer.get("canvas");
    var registry = viewer.get("elementRegistry");
    canvas.zoom("fit-viewport");
    ["completed", "active", "overdue"].forEach(function (kind) {
      (data.markers[kind] || []).forEach(function (id) {
        if (registry.get(id)) canvas.addMarker(id, kind);
      });
    });
  }).catch(function (error) {
    container.textContent = container.getAttribute("data-error") || String(error);
  });
})();
