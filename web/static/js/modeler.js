// The designer's modeller (/design/<process>/edit): bpmn-js's Modeler for a .bpmn file, dmn-js's
// for a .dmn file (both served from static/vendor/), with a properties panel for THIS engine's
// properties, written exactly where engine/definitions.py reads them:
//   lane: spiffworkflow:property role; user task / start event: form, due, remind_before,
//   four_eyes, assignee (start event: start_roles); script task: bpmn:script; any activity:
//   spiffworkflow:preScript / postScript; sequence flow: bpmn:conditionExpression; business rule
//   task: spiffworkflow:calledDecisionId; message events and tasks: the bpmn:message's name and its
//   properties correlation and sender_roles, spiffworkflow:messageVariable; the process: isExecutable.
// Save draft posts the edited file (the server keeps the other files of the version or draft);
// Lint marks each finding on the diagram at its element, and a click on a finding selects it.
(function () {
  "use strict";
  var container = document.getElementById("modeler");
  if (!container) return;
  var data = JSON.parse(document.getElementById(container.getAttribute("data-source")).textContent);
  var words = JSON.parse(document.getElementById("modeler-words").textContent);
  var statusLine = document.getElementById("modeler-status");
  var csrf = document.getElementById("csrf").value;

  function say(text, kind) {
    statusLine.textContent = text;
    statusLine.className = kind ? "status-" + kind : "";
  }
  function fill(template, params) {
    return template.replace(/%\((\w+)\)s/g, function (_, key) { return params[key]; });
  }

  var Modeler = data.kind === "dmn" ? window.DmnJS : window.BpmnJS;
  if (typeof Modeler !== "function") {
    container.textContent = container.getAttribute("data-missing");
    container.setAttribute("data-import-error", "missing");
    return;
  }

  function start(descriptor) {
    var options = { container: container };
    if (descriptor) options.moddleExtensions = { spiffworkflow: descriptor };
    var modeler = new Modeler(options);
    window.bpmModeler = modeler;  // the browser tests look at it
    modeler.importXML(data.xml).then(function (result) {
      var warnings = (result && result.warnings) || [];
      container.setAttribute("data-import-warnings", String(warnings.length));
      container.setAttribute("data-import-warning-text", warnings.map(function (w) { return w.message; }).join("\n"));
      container.setAttribute("data-imported", "true");
      if (data.kind === "dmn") dmnViews(modeler);
      else bpmnReady(modeler);
    }).catch(function (error) {
      container.setAttribute("data-import-error", String(error && error.message || error));
      container.textContent = container.getAttribute("data-error") + String(error && error.message || error);
    });
    wireButtons(modeler);
  }

  // --- saving, deploying, linting -----------------------------------------------------------------

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return { error: response.statusText }; })
        .then(function (answer) {
          if (!response.ok) throw new Error(answer.error || response.statusText);
          return answer;
        });
    });
  }

  function currentXml(modeler) {
    return modeler.saveXML({ format: true }).then(function (result) { return result.xml; });
  }

  function save(modeler) {
    say(words.saving);
    return currentXml(modeler).then(function (xml) {
      return post(data.save, { file: data.file, text: xml, base: data.base });
    }).then(function (answer) {
      data.base = { draft: answer.number };
      container.setAttribute("data-saved-draft", String(answer.number));
      if (window.history && answer.edit) window.history.replaceState(null, "", answer.edit);
      // the other files' tabs now open the new draft, which holds them too
      document.querySelectorAll(".file-tabs a, a[data-follows-draft]").forEach(function (link) {
        var url = new URL(link.href, window.location.href);
        url.searchParams.delete("version");
        url.searchParams.set("draft", String(answer.number));
        link.href = url.pathname + url.search;
      });
      say(answer.message, "ok");
      return answer.number;
    }).catch(function (error) {
      say(fill(words.failed, { problem: error.message }), "error");
      throw error;
    });
  }

  function wireButtons(modeler) {
    var saveButton = document.getElementById("save-draft");
    var deployButton = document.getElementById("deploy");
    var lintButton = document.getElementById("lint");
    if (saveButton) saveButton.addEventListener("click", function () { save(modeler).catch(function () {}); });
    if (deployButton) deployButton.addEventListener("click", function () {
      save(modeler).then(function (number) {
        var form = document.getElementById("deploy-form");
        form.querySelector("input[name=draft]").value = String(number);
        form.submit();
      }).catch(function () {});
    });
    if (lintButton) lintButton.addEventListener("click", function () { lint(modeler); });
  }

  var marked = [];
  function lint(modeler) {
    // A decision table's findings are listed only; a diagram's are marked on it too.
    var drawn = data.kind === "bpmn";
    var none = { removeMarker: function () {}, addMarker: function () {}, remove: function () {},
                 get: function () { return null; } };
    var canvas = drawn ? modeler.get("canvas") : none;
    var registry = drawn ? modeler.get("elementRegistry") : none;
    var overlays = drawn ? modeler.get("overlays") : none;
    say(words.linting);
    currentXml(modeler).then(function (xml) {
      return post(data.lint, { file: data.file, text: xml, base: data.base });
    }).then(function (answer) {
      marked.forEach(function (id) {
        canvas.removeMarker(id, "lint-error");
        canvas.removeMarker(id, "lint-warning");
      });
      overlays.remove({ type: "lint" });
      marked = [];
      var list = document.getElementById("findings-list");
      list.textContent = "";
      var findings = answer.findings || [];
      document.getElementById("lint-findings").hidden = false;
      findings.forEach(function (finding) {
        var item = document.createElement("li");
        item.className = "finding finding-" + finding.severity;
        var where = finding.file + (finding.line ? ":" + finding.line : "");
        var element = finding.element_id && finding.file === data.file ? registry.get(finding.element_id) : null;
        var link = document.createElement(element ? "a" : "span");
        link.textContent = where + (finding.element_id ? " " + finding.element_id : "");
        item.appendChild(link);
        item.appendChild(document.createTextNode(" " + (words[finding.severity] || finding.severity) + " · " + finding.rule + ": " +
          finding.message + (finding.fix ? " — " + finding.fix : "")));
        if (element) {
          link.href = "#modeler";
          link.setAttribute("data-element", element.id);
          link.addEventListener("click", function (event) {
            event.preventDefault();
            modeler.get("selection").select(element);
            if (canvas.scrollToElement) canvas.scrollToElement(element);
          });
          var kind = finding.severity === "error" ? "lint-error" : "lint-warning";
          canvas.addMarker(element.id, kind);
          marked.push(element.id);
          var badge = document.createElement("span");
          badge.className = "lint-badge " + kind;
          badge.textContent = "!";
          badge.title = finding.message;
          overlays.add(element.id, "lint", { position: { top: -12, left: -12 }, html: badge });
        }
        list.appendChild(item);
      });
      say(findings.length ? fill(words.findings, { count: findings.length }) : words.clean,
          findings.length ? "error" : "ok");
    }).catch(function (error) { say(fill(words.failed, { problem: error.message }), "error"); });
  }

  // --- dmn-js: the views (requirements diagram, each decision table) -------------------------------

  function dmnViews(modeler) {
    var tools = document.createElement("div");
    tools.className = "dmn-views";
    function draw() {
      tools.textContent = "";
      var active = modeler.getActiveView();
      modeler.getViews().forEach(function (view) {
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = (view.element.name || view.element.id) + " (" + view.type + ")";
        button.setAttribute("aria-pressed", active && active.element === view.element ? "true" : "false");
        button.addEventListener("click", function () { modeler.open(view); });
        tools.appendChild(button);
      });
    }
    container.parentNode.insertBefore(tools, container);
    modeler.on("views.changed", draw);
    // A decision table is what one edits here: open the first one if the diagram came first.
    var table = modeler.getViews().filter(function (v) { return v.type === "decisionTable"; })[0];
    if (table && modeler.getActiveView().type !== "decisionTable") modeler.open(table);
    draw();
  }

  // --- bpmn-js: the properties panel --------------------------------------------------------------

  function bpmnReady(modeler) {
    var canvas = modeler.get("canvas");
    // The box takes the diagram's proportions (within bounds), so a wide diagram is not drawn
    // small in a tall empty box; the wheel and dragging zoom and move it as usual.
    var inner = canvas.viewbox().inner;
    if (inner.width > 0) {
      var height = container.clientWidth * inner.height / inner.width + 96;
      container.style.height = Math.round(Math.max(420, Math.min(window.innerHeight * 0.8, height))) + "px";
      canvas.resized();
    }
    canvas.zoom("fit-viewport");
    var panel = new Panel(modeler);
    modeler.on("selection.changed", function (event) {
      panel.show(event.newSelection.length === 1 ? event.newSelection[0] : null);
    });
    modeler.on("commandStack.changed", function () { say(words.unsaved); });
    panel.show(null);
  }

  function Panel(modeler) {
    this.modeler = modeler;
    this.moddle = modeler.get("moddle");
    this.modeling = modeler.get("modeling");
    this.box = document.getElementById("properties-fields");
    this.empty = document.getElementById("properties-empty");
  }

  function is(bo, type) { return bo && bo.$instanceOf && bo.$instanceOf(type); }

  Panel.prototype.extensions = function (bo, create) {
    if (!bo.extensionElements && create) {
      bo.extensionElements = this.moddle.create("bpmn:ExtensionElements", { values: [] });
      bo.extensionElements.$parent = bo;
    }
    return bo.extensionElements;
  };
  Panel.prototype.extension = function (bo, type, create) {
    var ext = this.extensions(bo, create);
    if (!ext) return null;
    ext.values = ext.values || [];
    var found = ext.values.filter(function (v) { return v.$type === type; })[0];
    if (!found && create) {
      found = this.moddle.create(type, type === "spiffworkflow:Properties" ? { properties: [] } : {});
      found.$parent = ext;
      ext.values.push(found);
    }
    return found || null;
  };
  Panel.prototype.property = function (bo, name) {
    var props = this.extension(bo, "spiffworkflow:Properties", false);
    var found = props && (props.properties || []).filter(function (p) { return p.name === name; })[0];
    return found ? found.value : "";
  };
  // Records the change on bpmn-js's command stack, so the modeller knows the diagram changed.
  Panel.prototype.touched = function (element, bo) {
    this.modeling.updateModdleProperties(element, bo, { extensionElements: bo.extensionElements });
  };
  Panel.prototype.setProperty = function (element, bo, name, value) {
    var props = this.extension(bo, "spiffworkflow:Properties", value !== "");
    if (!props) return;
    props.properties = props.properties || [];
    var found = props.properties.filter(function (p) { return p.name === name; })[0];
    if (value === "") {
      if (found) props.properties.splice(props.properties.indexOf(found), 1);
      if (!props.properties.length) bo.extensionElements.values.splice(bo.extensionElements.values.indexOf(props), 1);
    } else if (found) {
      found.value = value;
    } else {
      found = this.moddle.create("spiffworkflow:Property", { name: name, value: value });
      found.$parent = props;
      props.properties.push(found);
    }
    this.touched(element, bo);
  };
  Panel.prototype.body = function (bo, type) {
    var found = this.extension(bo, type, false);
    return found ? (found.value || "") : "";
  };
  Panel.prototype.setBody = function (element, bo, type, value) {
    var found = this.extension(bo, type, value !== "");
    if (!found) return;
    if (value === "") bo.extensionElements.values.splice(bo.extensionElements.values.indexOf(found), 1);
    else found.value = value;
    this.touched(element, bo);
  };

  Panel.prototype.field = function (key, label, value, onChange, kind, choices) {
    var row = document.createElement("div");
    row.className = "field";
    var id = "prop-" + key;
    var input;
    if (kind === "checkbox") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = value === true || value === "true";
    } else if (kind === "textarea") {
      input = document.createElement("textarea");
      input.rows = 4;
      input.className = "code";
      input.value = value || "";
    } else {
      input = document.createElement("input");
      input.value = value || "";
      if (kind === "readonly") input.readOnly = true;
      if (choices && choices.length) {
        var list = document.createElement("datalist");
        list.id = id + "-choices";
        choices.forEach(function (choice) {
          var option = document.createElement("option");
          option.value = choice;
          list.appendChild(option);
        });
        row.appendChild(list);
        input.setAttribute("list", list.id);
      }
    }
    input.id = id;
    input.name = key;
    var labelEl = document.createElement("label");
    labelEl.htmlFor = id;
    labelEl.textContent = label;
    if (kind === "checkbox") { row.appendChild(input); row.appendChild(labelEl); }
    else { row.appendChild(labelEl); row.appendChild(input); }
    if (onChange && kind !== "readonly") {
      input.addEventListener("change", function () {
        onChange(kind === "checkbox" ? (input.checked ? "true" : "") : input.value.trim() === "" ? "" : input.value);
      });
    }
    this.box.appendChild(row);
    return input;
  };

  Panel.prototype.messageOf = function (bo) {
    if (is(bo, "bpmn:ReceiveTask") || is(bo, "bpmn:SendTask")) return { holder: bo, ref: bo.messageRef };
    var def = (bo.eventDefinitions || []).filter(function (d) { return is(d, "bpmn:MessageEventDefinition"); })[0];
    return def ? { holder: def, ref: def.messageRef } : null;
  };

  Panel.prototype.setMessageName = function (element, holder, name) {
    var definitions = this.modeler.getDefinitions();
    var found = (definitions.rootElements || []).filter(function (e) {
      return is(e, "bpmn:Message") && (e.name === name || (!e.name && e.id === name));
    })[0];
    if (!found && name) {
      found = this.moddle.create("bpmn:Message", { id: "msg_" + name.replace(/[^A-Za-z0-9_]/g, "_"), name: name });
      found.$parent = definitions;
      definitions.rootElements.unshift(found);
    }
    this.modeling.updateModdleProperties(element, holder, { messageRef: name ? found : undefined });
  };

  Panel.prototype.show = function (element) {
    var self = this;
    this.box.textContent = "";
    var root = element || this.modeler.get("canvas").getRootElement();
    var bo = root.businessObject;
    this.empty.hidden = !!element;
    if (!element || is(bo, "bpmn:Participant") || is(bo, "bpmn:Process") || is(bo, "bpmn:Collaboration")) {
      var process = is(bo, "bpmn:Participant") ? bo.processRef
        : is(bo, "bpmn:Collaboration") ? ((bo.participants || [])[0] || {}).processRef : bo;
      if (process) {
        this.field("process", words.id, process.id, null, "readonly");
        this.field("executable", words.executable, !!process.isExecutable, function (v) {
          self.modeling.updateModdleProperties(root, process, { isExecutable: v === "true" });
        }, "checkbox");
      }
      if (!element) return;
    }
    this.field("id", words.id, bo.id, null, "readonly");
    if (!is(bo, "bpmn:Participant")) {
      this.field("name", words.name, bo.name || "", function (v) {
        self.modeling.updateProperties(element, { name: v || undefined });
      });
    }
    if (is(bo, "bpmn:Lane")) {
      this.field("role", words.role, this.property(bo, "role"), function (v) {
        self.setProperty(element, bo, "role", v);
      }, "text", data.roles);
    }
    var human = is(bo, "bpmn:UserTask") || is(bo, "bpmn:StartEvent");
    if (human) {
      this.field("form", words.form, this.property(bo, "form"), function (v) {
        self.setProperty(element, bo, "form", v);
      }, "text", data.forms);
    }
    if (is(bo, "bpmn:UserTask")) {
      ["due", "remind_before"].forEach(function (name) {
        self.field(name, words[name], self.property(bo, name), function (v) { self.setProperty(element, bo, name, v); });
      });
      this.field("four_eyes", words.four_eyes, this.property(bo, "four_eyes"), function (v) {
        self.setProperty(element, bo, "four_eyes", v ? "true" : "");
      }, "checkbox");
      this.field("assignee", words.assignee, this.property(bo, "assignee"), function (v) {
        self.setProperty(element, bo, "assignee", v);
      });
    }
    if (is(bo, "bpmn:StartEvent")) {
      this.field("start_roles", words.start_roles, this.property(bo, "start_roles"), function (v) {
        self.setProperty(element, bo, "start_roles", v);
      });
    }
    if (is(bo, "bpmn:ScriptTask")) {
      this.field("script", words.script, bo.script || "", function (v) {
        self.modeling.updateProperties(element, { script: v || undefined, scriptFormat: bo.scriptFormat || "python" });
      }, "textarea");
    }
    if (is(bo, "bpmn:BusinessRuleTask")) {
      this.field("decision", words.decision, this.body(bo, "spiffworkflow:CalledDecisionId"), function (v) {
        self.setBody(element, bo, "spiffworkflow:CalledDecisionId", v);
      }, "text", data.decisions);
    }
    if (is(bo, "bpmn:SequenceFlow")) {
      var condition = bo.conditionExpression ? bo.conditionExpression.body || "" : "";
      this.field("condition", words.condition, condition, function (v) {
        var expression = v ? self.moddle.create("bpmn:FormalExpression", { body: v }) : undefined;
        self.modeling.updateProperties(element, { conditionExpression: expression });
      }, "textarea");
    }
    var message = this.messageOf(bo);
    if (message) {
      var ref = message.ref;
      this.field("message", words.message, ref ? (ref.name || ref.id) : "", function (v) {
        self.setMessageName(element, message.holder, v);
        self.show(element);
      });
      if (ref) {
        this.field("correlation", words.correlation, this.property(ref, "correlation"), function (v) {
          self.setProperty(element, ref, "correlation", v);
        });
        this.field("sender_roles", words.sender_roles, this.property(ref, "sender_roles"), function (v) {
          self.setProperty(element, ref, "sender_roles", v);
        });
      }
      this.field("message_variable", words.message_variable, this.body(message.holder, "spiffworkflow:MessageVariable"),
        function (v) { self.setBody(element, message.holder, "spiffworkflow:MessageVariable", v); });
    }
    if (is(bo, "bpmn:Activity")) {
      this.field("pre_script", words.pre_script, this.body(bo, "spiffworkflow:PreScript"), function (v) {
        self.setBody(element, bo, "spiffworkflow:PreScript", v);
      }, "textarea");
      this.field("post_script", words.post_script, this.body(bo, "spiffworkflow:PostScript"), function (v) {
        self.setBody(element, bo, "spiffworkflow:PostScript", v);
      }, "textarea");
    }
  };

  if (data.kind === "bpmn") {
    fetch(container.getAttribute("data-moddle"), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(start)
      .catch(function (error) {
        container.setAttribute("data-import-error", String(error));
        container.textContent = container.getAttribute("data-error") + String(error);
      });
  } else {
    start(null);
  }
})();
