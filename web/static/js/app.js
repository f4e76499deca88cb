// Small enhancements; every page works without them.
(function () {
  "use strict";

  // Rows of an array field: add and remove in place instead of a round trip to the server.
  // The server reads rows by the indices it finds (lines-0-…, lines-3-…), so gaps are fine.
  function nextIndex(fieldset) {
    var name = fieldset.getAttribute("data-rows");
    var highest = -1;
    // a row of fields has a hidden marker named like the row; a list's row is its one input
    fieldset.querySelectorAll("tbody input[name]").forEach(function (input) {
      var rest = input.name.slice(name.length + 1);
      if (input.name.indexOf(name + "-") === 0 && /^\d+$/.test(rest)) {
        highest = Math.max(highest, parseInt(rest, 10));
      }
    });
    return highest + 1;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.add-row, button.remove-row");
    if (!button) return;
    var fieldset = button.closest("fieldset[data-rows]");
    if (!fieldset) return;
    if (button.classList.contains("remove-row")) {
      event.preventDefault();
      var row = button.closest("tr");
      var focusTarget = fieldset.querySelector("button.add-row");
      row.parentNode.removeChild(row);
      if (focusTarget) focusTarget.focus();
      return;
    }
    var template = fieldset.querySelector(":scope > template");
    if (!template) return;
    event.preventDefault();
    var index = String(nextIndex(fieldset));
    var html = template.innerHTML.split("__i__").join(index);
    var body = fieldset.querySelector("tbody");
    body.insertAdjacentHTML("beforeend", html);
    var first = body.lastElementChild.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  });

  // Inbox: one box ticks every row.
  document.querySelectorAll("input.select-all").forEach(function (all) {
    all.hidden = false;
    all.addEventListener("change", function () {
      var table = all.closest("table");
      table.querySelectorAll("tbody input[type=checkbox][name=task]").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });
})();
