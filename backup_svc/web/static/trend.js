// The dashboard's "Size and rows" section: the open shrink alarms (each with Acknowledge) and the
// stored backups' trend, drawn here as inline SVG from GET /api/v1/stored's `trend` (no chart library,
// nothing from another origin: the page's CSP allows only this service). Two panels share the time
// axis: compressed size above, rows below. Every point is focusable; hovering, tapping or focusing it
// shows the backup's name, time, size and rows.
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var HEIGHT = 150;
  var PAD = { top: 24, right: 12, bottom: 22, left: 64 };

  var section = document.getElementById("trend");
  if (!section) return;
  var $ = function (id) { return document.getElementById(id); };
  var humanBytes = window.backupSvc.humanBytes;  // common.js
  var requestJson = window.backupSvc.requestJson;
  var tip = $("trend-tip");
  var points = [];
  var selected = null;

  function count(n) {
    if (n === null || n === undefined) return "not recorded";
    return n.toLocaleString("en-US");
  }

  function shortCount(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(n < 1e10 ? 1 : 0) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(n < 1e7 ? 1 : 0) + "M";
    if (n >= 1e3) return (n / 1e3).toFixed(n < 1e4 ? 1 : 0) + "k";
    return String(Math.round(n));
  }

  function utc(iso) { return iso ? window.backupSvc.utcText(iso, 16) + " UTC" : "–"; }

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function state(point) {
    if (point.shrank_percent !== null && point.shrank_percent !== undefined) return "shrank";
    if (point.held) return "held";
    return point.kept ? "kept" : "gone";
  }

  function describe(point) {
    var lines = [point.name, utc(point.time), "Size " + humanBytes(point.size) + " · rows " + count(point.rows)];
    var s = state(point);
    if (s === "shrank") lines.push("Shrank " + point.shrank_percent + " % below the median before it");
    if (point.held) lines.push("Held by a shrink alarm until acknowledged");
    else if (!point.kept) lines.push("Not kept by the retention: goes at the next prune");
    return lines;
  }

  function showTip(point, circle) {
    selected = point.name;
    tip.replaceChildren.apply(tip, describe(point).map(function (line, i) {
      var p = document.createElement(i === 0 ? "strong" : "span");
      p.textContent = line;
      return p;
    }));
    tip.hidden = false;
    var chart = $("trend-chart").getBoundingClientRect();
    var dot = circle.getBoundingClientRect();
    var x = dot.left - chart.left + dot.width / 2;
    var left = Math.max(0, Math.min(x - tip.offsetWidth / 2, chart.width - tip.offsetWidth));
    var top = dot.top - chart.top - tip.offsetHeight - 8;
    if (top < 0) top = dot.bottom - chart.top + 8;
    tip.style.left = left + "px";  // CSSOM, which the CSP's style-src allows (no inline style attribute)
    tip.style.top = top + "px";
  }

  function hideTip() { tip.hidden = true; selected = null; }

  // One panel: a line through the points that have `key`, a dot for each, three gridlines.
  function panel(container, key, label, format) {
    var width = Math.max(container.clientWidth, 240);
    var svg = el("svg", { viewBox: "0 0 " + width + " " + HEIGHT, width: width, height: HEIGHT, role: "img",
                          "aria-label": label + " of the last " + points.length + " stored backups", class: "trend-svg" });
    var values = points.map(function (p) { return p[key]; }).filter(function (v) { return v !== null && v !== undefined; });
    el("text", { x: 0, y: 12, class: "axis axis-title" }, svg).textContent = label;
    if (!values.length) {
      el("text", { x: 0, y: PAD.top + 16, class: "axis" }, svg).textContent = "Not recorded (encrypted or older backups)";
      svg.setAttribute("viewBox", "0 0 " + width + " " + (PAD.top + 32));
      svg.setAttribute("height", PAD.top + 32);
      container.replaceChildren(svg);
      return;
    }
    var max = values.length ? Math.max.apply(null, values) : 1;
    max = max > 0 ? max * 1.1 : 1;
    var t0 = Date.parse(points[0].time), t1 = Date.parse(points[points.length - 1].time);
    var plotW = width - PAD.left - PAD.right, plotH = HEIGHT - PAD.top - PAD.bottom;
    var x = function (p) {
      return PAD.left + (t1 > t0 ? (Date.parse(p.time) - t0) / (t1 - t0) * plotW : plotW / 2);
    };
    var y = function (v) { return PAD.top + plotH - v / max * plotH; };
    for (var g = 0; g <= 2; g++) {
      var v = max / 1.1 * g / 2;
      el("line", { x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v), class: "grid" }, svg);
      el("text", { x: PAD.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, svg).textContent = format(v);
    }
    el("text", { x: PAD.left, y: HEIGHT - 6, class: "axis" }, svg).textContent = utc(points[0].time).slice(0, 10);
    if (points.length > 1) {
      el("text", { x: width - PAD.right, y: HEIGHT - 6, class: "axis", "text-anchor": "end" }, svg)
        .textContent = utc(points[points.length - 1].time).slice(0, 10);
    }
    // dots shrink when many backups share a narrow chart, so neighbours stay apart
    var radius = Math.max(2.5, Math.min(5, plotW / points.length / 2.5));
    var path = points.filter(function (p) { return p[key] !== null && p[key] !== undefined; })
      .map(function (p, i) { return (i ? "L" : "M") + x(p).toFixed(1) + " " + y(p[key]).toFixed(1); }).join(" ");
    if (path) el("path", { d: path, class: "line" }, svg);
    points.forEach(function (p) {
      if (p[key] === null || p[key] === undefined) return;
      var dot = el("circle", { cx: x(p).toFixed(1), cy: y(p[key]).toFixed(1), r: radius.toFixed(1), tabindex: 0,
                               class: "point point-" + state(p), "data-name": p.name,
                               "aria-label": describe(p).join(", ") }, svg);
      var show = function () { showTip(p, dot); };
      dot.addEventListener("mouseenter", show);
      dot.addEventListener("focus", show);
      dot.addEventListener("click", function (event) { event.stopPropagation(); show(); });
      dot.addEventListener("mouseleave", hideTip);
      dot.addEventListener("blur", hideTip);
    });
    container.replaceChildren(svg);
  }

  function draw() {
    var chart = $("trend-chart");
    if (!points.length) { chart.hidden = true; return; }
    chart.hidden = false;
    hideTip();
    drawnWidth = $("trend-size").clientWidth;
    panel($("trend-size"), "size", "Size", humanBytes);
    panel($("trend-rows"), "rows", "Rows", shortCount);
  }

  function alertBox(alert) {
    var f = alert.finding;
    var box = document.createElement("div");
    box.className = "notice notice-warning shrink-alert";
    box.dataset.held = alert.held;
    var title = document.createElement("p");
    var strong = document.createElement("strong");
    strong.textContent = "⚠ " + f.name + " shrank: " + (f.measure === "rows" ? count(f.value) + " rows" : humanBytes(f.value)) +
      ", " + f.drop_percent + " % below the median of the " + f.compared + " backups before it (" +
      (f.measure === "rows" ? count(Math.round(f.median)) + " rows" : humanBytes(f.median)) + ").";
    title.appendChild(strong);
    box.appendChild(title);
    if (f.tables && f.tables.length) {
      var list = document.createElement("p");
      list.textContent = "Tables that lost the most rows: " + f.tables.map(function (t) {
        return t.table + " " + count(t.before) + " → " + count(t.after);
      }).join("; ") + ".";
      box.appendChild(list);
    }
    var held = document.createElement("p");
    held.textContent = "Retention keeps " + alert.held + ", the last backup before the drop, until you acknowledge " +
      "this warning. Acknowledge once you know why the data went (or have restored it).";
    box.appendChild(held);
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = "Acknowledge";
    button.setAttribute("aria-label", "Acknowledge the shrink warning and release " + alert.held);
    var result = document.createElement("span");
    result.className = "copy-result";
    button.addEventListener("click", function () {
      button.disabled = true;
      requestJson(alert.acknowledge_url, { method: "POST", headers: { "Accept": "application/json" },
                                           cache: "no-store", credentials: "same-origin" })
        .then(function (reply) {
          if (reply.status !== 200) {
            button.disabled = false;
            result.textContent = (reply.body && reply.body.message) || "HTTP " + reply.status;
            return;
          }
          result.textContent = reply.body.message;
          // redraws this section, and the attempts table (dashboard.js), which lists the acknowledgement
          document.dispatchEvent(new CustomEvent("backup-svc:attempt-ended"));
        })
        .catch(function () { button.disabled = false; result.textContent = "The service did not answer; try again."; });
    });
    box.appendChild(button);
    box.appendChild(result);
    return box;
  }

  function render(body) {
    var alerts = (body.shrink_alert && body.shrink_alert.alerts) || [];
    var box = $("shrink-alerts");
    box.replaceChildren.apply(box, alerts.map(alertBox));
    box.hidden = !alerts.length;
    points = (body.trend && body.trend.points) || [];
    var summary = $("trend-summary");
    if (!points.length) {
      summary.textContent = "No stored backups in the last " + ((body.trend && body.trend.days) || 90) + " days yet.";
    } else {
      var last = points[points.length - 1];
      summary.textContent = points.length + (points.length === 1 ? " stored backup" : " stored backups") +
        " since " + utc(points[0].time) + "; the newest: " + humanBytes(last.size) + ", " + (last.rows === null || last.rows === undefined ? "rows not recorded" : count(last.rows) + " rows") + ".";
    }
    section.dataset.points = String(points.length);
    draw();
  }

  function refresh() {
    requestJson(section.dataset.listUrl, { headers: { "Accept": "application/json" }, cache: "no-store",
                                           credentials: "same-origin" })
      .then(function (reply) {
        var body = reply.body || {};
        if (!body.trend) { $("trend-summary").textContent = body.message || "The bucket could not be read."; return; }
        render(body);
        section.dataset.loaded = "true";
      })
      .catch(function () { $("trend-summary").textContent = "The service did not answer; reload the page to try again."; });
  }

  // Redraw only when the chart's width changes: a phone's address bar coming and going resizes the
  // window's height on every scroll, and must not close the tip the reader just tapped open.
  var resizing = null, drawnWidth = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resizing);
    resizing = window.setTimeout(function () {
      var width = $("trend-size").clientWidth;
      if (width !== drawnWidth) draw();
    }, 150);
  });
  document.addEventListener("click", function () { if (selected) hideTip(); });
  document.addEventListener("backup-svc:attempt-ended", refresh);
  refresh();
})();
