// offload dashboard: pause live updates while the tab is hidden and catch up when it is
// shown; draw the overview's charts. No inline script: the page's CSP forbids it.
(function () {
  "use strict";

  // --- live regions -------------------------------------------------------------
  // (each new or renewed live stream starts with one "changed": nothing is missed)
  var stale = new Set();

  function holdsFocus(elt) {
    var active = document.activeElement;
    return active && active !== document.body && elt.contains(active);
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (!(elt.classList && elt.classList.contains("live") && elt.id)) { return; }
    // nobody is looking, or someone is using a control in it: remember, fetch later
    if (document.hidden || holdsFocus(elt)) {
      event.preventDefault();
      stale.add(elt.id);
    }
  });

  document.addEventListener("focusin", function () {
    stale.forEach(function (id) {
      var el = document.getElementById(id);
      if (el && !document.hidden && !holdsFocus(el)) { stale.delete(id); htmx.trigger(el, "refresh"); }
    });
  });

  // an opened <details> (a traceback) stays open when its region is drawn again
  var opened = [];
  document.addEventListener("htmx:beforeSwap", function (event) {
    opened = Array.prototype.map.call(
      event.detail.target.querySelectorAll("details[id][open]"), function (d) { return d.id; });
  });
  document.addEventListener("htmx:afterSettle", function () {
    opened.forEach(function (id) { var d = document.getElementById(id); if (d) { d.open = true; } });
    opened = [];
  });

  // the notice of a done action is shown once, not again on reload
  if (window.location.search.indexOf("done=") >= 0 && window.history.replaceState) {
    var params = new URLSearchParams(window.location.search);
    params.delete("done");
    var rest = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { return; }
    stale.forEach(function (id) {
      var el = document.getElementById(id);
      if (el && !holdsFocus(el)) { stale.delete(id); htmx.trigger(el, "refresh"); }
    });
    drawCharts();
  });

  // --- charts -------------------------------------------------------------------
  var charts = [];
  var lastDrawn = 0;

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function ms(u, values) {
    return values.map(function (v) {
      if (v == null) { return ""; }
      return v < 1000 ? v.toFixed(0) + " ms" : (v / 1000).toFixed(1) + " s";
    });
  }

  function options(width, series, axisValues) {
    var grid = { stroke: cssVar("--chart-grid"), width: 1 };
    var text = cssVar("--fg");
    return {
      width: width, height: 180,
      scales: { x: { time: true } },
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      axes: [
        { stroke: text, grid: grid, ticks: grid },
        { stroke: text, grid: grid, ticks: grid, values: axisValues, size: 60 }
      ],
      series: [{}].concat(series)
    };
  }

  function drawCharts() {
    var box = document.getElementById("charts");
    if (!box || typeof uPlot === "undefined" || document.hidden) { return; }
    var span = box.dataset.span === "day" ? "day" : "hour";
    fetch("/charts.json?span=" + span, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        lastDrawn = Date.now();
        charts.forEach(function (c) { c.destroy(); });
        charts = [];
        var one = cssVar("--chart-1"), two = cssVar("--chart-2");
        var specs = {
          throughput: [[data.x, data.finished, data.failed], [
            { label: "finished/min", stroke: one, width: 2 },
            { label: "failed/min", stroke: two, width: 2 }], null],
          wait: [[data.x, data.wait_p95_ms], [{ label: "wait p95", stroke: one, width: 2, value: function (u, v) { return v == null ? "—" : ms(u, [v])[0]; } }], ms],
          run: [[data.x, data.run_p95_ms], [{ label: "run p95", stroke: one, width: 2, value: function (u, v) { return v == null ? "—" : ms(u, [v])[0]; } }], ms]
        };
        box.querySelectorAll(".chart").forEach(function (el) {
          var spec = specs[el.dataset.chart];
          if (!spec) { return; }
          el.textContent = "";
          var width = Math.max(240, el.clientWidth || 320);
          charts.push(new uPlot(options(width, spec[1], spec[2] || undefined), spec[0], el));
        });
      })
      .catch(function () { /* the tables still show the figures */ });
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "overview-live" && Date.now() - lastDrawn > 10000) {
      drawCharts();
    }
  });

  setInterval(function () { if (Date.now() - lastDrawn > 30000) { drawCharts(); } }, 30000);

  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(drawCharts, 200);
  });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", drawCharts);
  document.addEventListener("DOMContentLoaded", drawCharts);
})();
