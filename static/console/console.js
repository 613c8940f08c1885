/**
 * Console behaviour (loaded with `defer`; the site's CSP allows scripts from 'self' only, so nothing
 * is inline): polls an evaluation run and fills its progress bar and table, streams both sides of an
 * arena match, and draws the dashboard's charts as inline SVG from the JSON the page embeds with json_script. Text from the server is always
 * set with textContent, never as HTML.
 */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, String(attrs[key])); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // -- evaluation run --------------------------------------------------------------------------

  function verdictText(verdicts) {
    return (verdicts || []).map(function (v) { return v.stage + "/" + v.rule + ": " + v.action; }).join("; ");
  }

  function renderRun(root, run) {
    var bar = document.getElementById("eval-progress");
    bar.max = run.total || 1;
    bar.value = run.done;
    var summary = run.status + ": " + run.done + "/" + run.total + " cases run, " + run.passed + " passed";
    document.getElementById("eval-summary").textContent = summary;
    root.setAttribute("data-status", run.status);
    if (run.error) {
      var box = document.getElementById("eval-error");
      box.hidden = false;
      box.textContent = run.error;
    }
    var body = document.getElementById("eval-rows");
    body.textContent = "";
    (run.results || []).forEach(function (row) {
      var tr = el("tr", { "class": row.passed ? "pass" : "fail" });
      tr.appendChild(el("td", {}, row.id));
      tr.appendChild(el("td", {}, row.kind));
      var result = el("td", {}, row.passed ? "pass " : "fail ");
      result.appendChild(el("small", {}, row.why || ""));
      tr.appendChild(result);
      tr.appendChild(el("td", {}, row.prompt));
      tr.appendChild(el("td", {}, row.answer));
      tr.appendChild(el("td", {}, verdictText(row.verdicts)));
      body.appendChild(tr);
    });
  }

  function pollRun(root) {
    var url = root.getAttribute("data-status-url");
    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (run) {
          renderRun(root, run);
          if (!run.finished) window.setTimeout(tick, 1000);
        })
        .catch(function () { window.setTimeout(tick, 3000); });
    }
    tick();
  }


  // -- arena -----------------------------------------------------------------------------------

  function pollArena(root) {
    var url = root.getAttribute("data-events-url");
    var after = { left: "", right: "" };
    var finished = { left: false, right: false };
    function side(name) { return root.querySelector("[data-side='" + name + "']"); }
    function part(name, role) { return side(name).querySelector("[data-role='" + role + "']"); }
    function apply(name, item) {
      var data = item.data || {};
      if (item.event === "progress") {
        // Token counts, never text: the answer itself waits for the safety hold-back buffer.
        side(name).setAttribute("data-tokens", String(data.tokens));
        if (!finished[name]) part(name, "stats").textContent = "generating… " + data.tokens + " tokens";
      }
      else if (item.event === "answer.delta") part(name, "answer").textContent += data.text;
      else if (item.event === "reasoning.delta") part(name, "reasoning").textContent += data.text;
      else if (item.event === "retract") part(name, data.target || "answer").textContent = "";
      else if (item.event === "done" || item.event === "error") {
        finished[name] = true;
        side(name).setAttribute("data-state", item.event);
        if (item.event === "error") {
          part(name, "stats").textContent = "error: " + data.message;
          return;
        }
        var stats = [];
        if (data.ttft_s !== null && data.ttft_s !== undefined) stats.push("TTFT " + data.ttft_s.toFixed(2) + " s");
        if (data.tok_s) stats.push(data.tok_s.toFixed(1) + " tok/s");
        stats.push(data.tokens + " tokens");
        if (data.max_rss_mb) stats.push("RSS " + Math.round(data.max_rss_mb) + " MB");
        part(name, "stats").textContent = stats.join(" · ");
        part(name, "verdicts").textContent = (data.verdicts || []).length
          ? "Safety: " + verdictText(data.verdicts) : "Safety: no findings";
      }
    }
    function tick() {
      var query = "?left_after=" + encodeURIComponent(after.left) + "&right_after=" + encodeURIComponent(after.right);
      fetch(url + query, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.json(); })
        .then(function (events) {
          ["left", "right"].forEach(function (name) {
            (events[name] || []).forEach(function (item) { after[name] = item.id; apply(name, item); });
            if (!finished[name] && part(name, "answer").textContent) {
              part(name, "stats").textContent = "streaming… " + side(name).getAttribute("data-tokens") + " tokens";
            }
          });
          if (!(finished.left && finished.right)) window.setTimeout(tick, 250);
        })
        .catch(function () { window.setTimeout(tick, 2000); });
    }
    tick();
  }

  // -- charts ----------------------------------------------------------------------------------

  var COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed"];
  var W = 420, H = 200, PAD = 32;

  function frame(container, maxValue, labels) {
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "class": "chart-svg" });
    svg.appendChild(svgEl("line", { x1: PAD, y1: H - PAD, x2: W - 8, y2: H - PAD, "class": "axis" }));
    svg.appendChild(svgEl("line", { x1: PAD, y1: 8, x2: PAD, y2: H - PAD, "class": "axis" }));
    svg.appendChild(svgEl("text", { x: 2, y: 14, "class": "tick" }, formatNumber(maxValue)));
    svg.appendChild(svgEl("text", { x: 2, y: H - PAD, "class": "tick" }, "0"));
    if (labels.length) {
      svg.appendChild(svgEl("text", { x: PAD, y: H - 12, "class": "tick" }, labels[0]));
      svg.appendChild(svgEl("text", { x: W - 80, y: H - 12, "class": "tick" }, labels[labels.length - 1]));
    }
    container.textContent = "";
    container.appendChild(svg);
    return svg;
  }

  function formatNumber(value) {
    return value >= 10 || Number.isInteger(value) ? String(Math.round(value)) : value.toFixed(2);
  }

  function legend(container, names) {
    var list = el("ul", { "class": "legend" });
    names.forEach(function (name, i) {
      var item = el("li", {}, name);
      item.style.setProperty("--swatch", COLOURS[i % COLOURS.length]);
      list.appendChild(item);
    });
    container.appendChild(list);
  }

  function lineChart(container, labels, series) {
    var names = Object.keys(series);
    var max = 1;
    names.forEach(function (n) { series[n].forEach(function (v) { max = Math.max(max, v); }); });
    var svg = frame(container, max, labels);
    var step = labels.length > 1 ? (W - PAD - 8) / (labels.length - 1) : 0;
    names.forEach(function (name, i) {
      var points = series[name].map(function (v, j) {
        return (PAD + j * step).toFixed(1) + "," + (H - PAD - (v / max) * (H - PAD - 8)).toFixed(1);
      }).join(" ");
      svg.appendChild(svgEl("polyline", { points: points, fill: "none", stroke: COLOURS[i % COLOURS.length],
        "stroke-width": 2, "data-series": name }));
    });
    legend(container, names);
  }

  function barChart(container, rows, keys) {
    var max = 0;
    rows.forEach(function (r) { keys.forEach(function (k) { max = Math.max(max, r[k] || 0); }); });
    max = max || 1;
    var svg = frame(container, max, []);
    var groupWidth = rows.length ? (W - PAD - 8) / rows.length : 0;
    var barWidth = Math.max(2, groupWidth / (keys.length + 1));
    rows.forEach(function (row, i) {
      keys.forEach(function (key, k) {
        var value = row[key] || 0;
        var height = (value / max) * (H - PAD - 8);
        var rect = svgEl("rect", { x: (PAD + i * groupWidth + k * barWidth + 2).toFixed(1),
          y: (H - PAD - height).toFixed(1), width: (barWidth - 2).toFixed(1), height: height.toFixed(1),
          fill: COLOURS[k % COLOURS.length], "data-key": key, "data-domain": row.domain });
        rect.appendChild(svgEl("title", {}, row.domain + " " + key + ": " + formatNumber(value)));
        svg.appendChild(rect);
      });
      svg.appendChild(svgEl("text", { x: (PAD + i * groupWidth + 4).toFixed(1), y: H - 12, "class": "tick" },
        row.domain));
    });
    legend(container, keys);
  }

  function drawDashboard(data) {
    var daily = document.getElementById("chart-daily");
    if (daily) lineChart(daily, data.daily.labels, data.daily.series);
    var rates = document.getElementById("chart-rates");
    if (rates) barChart(rates, data.rates, ["block", "escalation", "retraction"]);
    var latency = document.getElementById("chart-latency");
    if (latency) barChart(latency, data.latency, ["p50", "p95"]);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var run = document.getElementById("eval-run");
    if (run) pollRun(run);
    var data = document.getElementById("dashboard-data");
    if (data) drawDashboard(JSON.parse(data.textContent));
    var arena = document.getElementById("arena");
    if (arena) pollArena(arena);
  });
})();
