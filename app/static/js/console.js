/* Certwright console: the behaviour every page shares. No inline script anywhere, so the
   Content-Security-Policy is script-src 'self'. Pages declare what they need with data
   attributes; this file finds them:

   data-cw-live="URL" data-cw-id="ID" data-cw-final="0|1"
       a live status: while not final, ask URL?ids=ID,... (one request per URL for all
       elements of a page) and show the answer in place: a badge, a sentence and a link.
   data-figure='{"data": [...], "layout": {...}}'
       a Plotly chart (plotly.min.js is loaded by the page); a click on a bar or slice
       whose customdata is a URL opens it.
   data-confirm="question"   on a form or a submit button: ask before submitting.
   data-cw-action="name"     a bulk action of a list ("With selected").
   data-cw-toggle            on a select: show only the [data-mode] blocks of its value.
   data-cw-filter-rows="#table"  a search box filtering the rows (data-cw-search) of a table.
*/
(function () {
  "use strict";

  function each(selector, fn, root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(selector), fn);
  }

  /* Flask-Admin's own templates use href="javascript:void(0)" for menu toggles and tabs;
     a strict CSP reports every such link followed as a violation. They become "#" links
     that never navigate (as do "Add Filter" entries, which Flask-Admin's script handles). */
  function inertLinks() {
    each('a[href^="javascript:"]', function (link) {
      link.setAttribute("href", "#");
      link.setAttribute("data-cw-inert", "");
    });
  }
  inertLinks();
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-cw-inert], a.filter");
    if (link) { event.preventDefault(); }
  }, true);

  function confirmations() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      var button = event.submitter;
      var question = (button && button.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
      if (question && !window.confirm(question)) { event.preventDefault(); }
    });
  }

  function bulkActions() {
    each("[data-cw-action]", function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        if (window.modelActions) { window.modelActions.execute(link.getAttribute("data-cw-action")); }
      });
    });
  }

  function charts() {
    if (!window.Plotly) { return; }
    each("[data-figure]", function (el) {
      var figure = JSON.parse(el.getAttribute("data-figure"));
      window.Plotly.newPlot(el, figure.data, figure.layout,
        { displaylogo: false, responsive: true, displayModeBar: false });
      el.on("plotly_click", function (event) {
        var url = event.points[0].customdata;
        if (url) { window.location = url; }
      });
    });
  }

  function toggles() {
    each("select[data-cw-toggle]", function (select) {
      var form = select.form || document;
      function show() {
        each("[data-mode]", function (block) {
          block.classList.toggle("d-none", block.getAttribute("data-mode") !== select.value);
        }, form);
      }
      select.addEventListener("change", show);
      show();
    });
  }

  function rowFilters() {
    each("[data-cw-filter-rows]", function (box) {
      var table = document.querySelector(box.getAttribute("data-cw-filter-rows"));
      if (!table) { return; }
      box.addEventListener("input", function () {
        var words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
        each("tr[data-cw-search]", function (row) {
          var text = row.getAttribute("data-cw-search").toLowerCase();
          var hit = words.every(function (w) { return text.indexOf(w) >= 0; });
          row.classList.toggle("d-none", !hit);
        }, table);
      });
    });
    /* Ticking a privilege of a scope row also ticks the row's scope. */
    each("tr[data-cw-search] input[data-cw-privilege]", function (box) {
      box.addEventListener("change", function () {
        var scope = box.closest("tr").querySelector("input[data-cw-scope]");
        if (box.checked && scope) { scope.checked = true; }
      });
    });
  }

  /* Live status --------------------------------------------------------------------- */
  function render(el, state) {
    el.setAttribute("data-cw-final", state.final ? "1" : "0");
    el.setAttribute("data-cw-state", state.state || "");
    el.textContent = "";
    var badge = document.createElement("span");
    badge.className = "badge badge-" + (state.badge || "light") + " cw-live-state";
    badge.textContent = state.state || "";
    el.appendChild(badge);
    if (state.text) {
      var text = document.createElement("span");
      text.className = "ml-2 cw-live-text";
      text.textContent = state.text;
      el.appendChild(text);
    }
    (state.links || []).forEach(function (link) {
      var a = document.createElement("a");
      a.className = "cw-live-link";
      a.href = link.href;
      a.textContent = link.label;
      el.appendChild(a);
    });
  }

  function live() {
    var started = Date.now();
    function pending() {
      var byUrl = {};
      each('[data-cw-live][data-cw-final="0"]', function (el) {
        var url = el.getAttribute("data-cw-live");
        (byUrl[url] = byUrl[url] || []).push(el);
      });
      return byUrl;
    }
    function tick() {
      var byUrl = pending();
      var urls = Object.keys(byUrl);
      if (!urls.length) { return; }
      Promise.all(urls.map(function (url) {
        var ids = byUrl[url].map(function (el) { return el.getAttribute("data-cw-id"); });
        var sep = url.indexOf("?") >= 0 ? "&" : "?";
        return fetch(url + sep + "ids=" + ids.join(","), {
          credentials: "same-origin", headers: { Accept: "application/json" }
        })
          .then(function (resp) { return resp.ok ? resp.json() : {}; })
          .then(function (states) {
            byUrl[url].forEach(function (el) {
              var state = states[el.getAttribute("data-cw-id")];
              if (state) { render(el, state); }
            });
          })
          .catch(function () { /* the next tick asks again */ });
      })).then(function () {
        window.cwLivePolls = (window.cwLivePolls || 0) + 1;
        /* Every second for the first two minutes (issuance takes seconds), then every 5 s. */
        window.setTimeout(tick, Date.now() - started < 120000 ? 1000 : 5000);
      });
    }
    if (Object.keys(pending()).length) { window.setTimeout(tick, 700); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    inertLinks();
    confirmations();
    bulkActions();
    charts();
    toggles();
    rowFilters();
    live();
  });
})();
