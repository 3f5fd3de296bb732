/* Certwright console: Discovery pages (live scan progress, schedule form). No framework. */
(function () {
  "use strict";
  var BADGE = { Running: "primary", Successful: "success", Failed: "danger", Cancelled: "secondary" };

  function each(selector, fn) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), fn);
  }

  /* The task list: while any scan runs, ask the server every 2 s and update the Status,
     Last run and Scan/Cancel cells in place. */
  function pollProgress(url) {
    var timer = null;
    function running() {
      return document.querySelectorAll('.cw-task-status[data-status="Running"]').length > 0;
    }
    function apply(id, state) {
      each('.cw-task-status[data-task="' + id + '"]', function (cell) {
        var status = state.status || "";
        cell.setAttribute("data-status", status);
        cell.title = state.message || "";
        var label = cell.querySelector(".cw-status-label");
        label.className = "badge badge-" + (BADGE[status] || "light") + " cw-status-label";
        label.textContent = status || "Never scanned";
        cell.querySelector(".cw-percent").textContent =
          state.percent === null || state.percent === undefined
            ? ""
            : state.percent + "%" + (state.left ? " · " + state.left : "");
        var bar = cell.querySelector(".progress");
        bar.classList.toggle("d-none", status !== "Running");
        bar.querySelector(".progress-bar").style.width = (state.percent || 0) + "%";
      });
      each('.cw-last-run[data-task="' + id + '"]', function (link) {
        if (state.last_run) { link.textContent = state.last_run; }
      });
      each('.cw-scan-form[data-task="' + id + '"]', function (form) {
        form.classList.toggle("d-none", state.status === "Running");
      });
      each('.cw-cancel-form[data-task="' + id + '"]', function (form) {
        form.classList.toggle("d-none", state.status !== "Running");
      });
    }
    function tick() {
      timer = null;
      var ids = [];
      each('.cw-task-status[data-status="Running"]', function (cell) {
        ids.push(cell.getAttribute("data-task"));
      });
      if (!ids.length) { return; }
      fetch(url + "?ids=" + ids.join(","), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (resp) { return resp.ok ? resp.json() : {}; })
        .then(function (states) {
          Object.keys(states).forEach(function (id) { apply(id, states[id]); });
          window.cwPolls = (window.cwPolls || 0) + 1;
        })
        .catch(function () { /* try again on the next tick */ })
        .then(schedule);
    }
    function schedule() {
      if (timer === null && running()) { timer = window.setTimeout(tick, 2000); }
    }
    schedule();
  }

  /* The task form: show the schedule fields the chosen kind needs, and preview the next
     five runs as the admin types (the Preview button does the same without JavaScript). */
  function scheduleForm() {
    var kind = document.getElementById("schedule_kind");
    var box = document.getElementById("cw-schedule-preview");
    if (!kind || !box) { return; }
    var fields = ["schedule_kind", "schedule_time", "schedule_timezone", "schedule_weekday",
      "schedule_day_of_month", "schedule_month", "schedule_at"];
    function showFields() {
      var k = kind.value;
      each("#cw-schedule .cw-when", function (group) {
        var show = group.classList.contains("cw-" + k) ||
          (group.classList.contains("cw-recurring") && k !== "manual" && k !== "once") ||
          (group.classList.contains("cw-zone") && k !== "manual");
        group.classList.toggle("d-none", !show);
      });
    }
    function render(data) {
      var body = box.querySelector(".card-body");
      body.innerHTML = "";
      function add(tag, cls, text) {
        var el = document.createElement(tag);
        el.className = cls;
        if (text !== undefined) { el.textContent = text; }
        body.appendChild(el);
        return el;
      }
      if (data.errors) {
        data.errors.forEach(function (e) { add("div", "text-danger small cw-preview-error", e); });
        return;
      }
      add("div", "font-weight-bold cw-preview-describe", data.describe);
      if (!data.runs.length) { add("div", "small text-muted cw-preview-runs", "No run is scheduled."); return; }
      add("div", "small text-muted", "Next " + data.runs.length + " runs:");
      var list = add("ol", "mb-0 small cw-preview-runs");
      data.runs.forEach(function (r) {
        var li = document.createElement("li");
        li.textContent = r;
        list.appendChild(li);
      });
    }
    var pending = null;
    function preview() {
      var params = new URLSearchParams();
      fields.forEach(function (name) {
        var el = document.getElementById(name);
        if (el) { params.set(name, el.value); }
      });
      fetch(box.getAttribute("data-url") + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (resp) { return resp.json(); })
        .then(render)
        .catch(function () { /* the Preview button still works */ });
    }
    fields.forEach(function (name) {
      var el = document.getElementById(name);
      if (!el) { return; }
      var again = function () {
        if (name === "schedule_kind") { showFields(); }
        window.clearTimeout(pending);
        pending = window.setTimeout(preview, 250);
      };
      el.addEventListener("change", again);
      el.addEventListener("input", again);
    });
    showFields();
  }

  /* Each page says what it needs with data attributes (no inline script: strict CSP). */
  document.addEventListener("DOMContentLoaded", function () {
    var list = document.querySelector("[data-cw-progress-url]");
    if (list) { pollProgress(list.getAttribute("data-cw-progress-url")); }
    scheduleForm();
  });
})();
