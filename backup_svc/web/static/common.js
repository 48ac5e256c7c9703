// What dashboard.js, stored.js, trend.js and restores.js share, once: sizes and UTC times as the page shows them, and a
// JSON request whose reply is read even when it is not JSON, the words for a dump's steps, and the
// "Copy" buttons (dashboard.js, stored.js). Loaded
// before all of them.
window.backupSvc = (function () {
  "use strict";

  // 1234567 -> "1.2 MB" (powers of 1000, as the service's own texts count)
  function humanBytes(n) {
    if (n === null || n === undefined) return "–";
    var units = ["bytes", "kB", "MB", "GB", "TB"];
    var i = 0;
    while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return i === 0 ? n.toFixed(0) + " bytes" : n.toFixed(1) + " " + units[i];
  }

  // "2026-11-28T19:32:04.123Z" -> "2026-11-28 19:32:04" (chars 19) or "2026-11-28 19:32" (chars 16);
  // the columns and labels say UTC
  function utcText(iso, chars) {
    return iso ? iso.slice(0, chars).replace("T", " ") : "–";
  }

  // fetch(url, options), answered with {status, body}; body is null when the reply is not JSON
  function requestJson(url, options) {
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        return { status: response.status, body: body };
      });
    });
  }

  // The dump's own steps, said the same way for a download and a stored backup; null for the phases
  // each page words itself (sending, storing and how it ended)
  function dumpStep(report) {
    switch (report.phase) {
      case "connecting": return "Connecting to the database and reading its catalog";
      case "schema": return "Writing the schema";
      case "data":
        if (!report.table) return "Writing table data";
        return "Table " + report.table.number + (report.table.count ? " of " + report.table.count : "") +
               ": " + report.table.name;
      case "finishing": return "Finishing: sequences, large objects, indexes and constraints";
      default: return null;
    }
  }

  // One "Copy" button: a click puts `text()` (default: the text of `source()`, the element it copies, looked
  // up at each click since a page may point the button elsewhere) on the clipboard and `result` says
  // "Copied.". Where the clipboard API is missing or refused (plain http to a non-local address), that element
  // is shown whole (a closed <details> opened; a shortened text given its full value) and selected, and
  // `result` says to press Ctrl+C: a line on the page, where window.prompt would be a dialog a browser
  // may block and a screen reader may not announce.
  function wireCopy(button, source, result, text) {
    button.addEventListener("click", function () {
      var node = source();
      var value = text ? text() : node.textContent;
      var select = function () {
        var details = node.closest("details");
        if (details) details.open = true;
        if (node.textContent !== value) {
          node.textContent = value;
          node.classList.add("shown-whole");  // style.css lets it wrap rather than widen its column
        }
        var range = document.createRange();
        range.selectNodeContents(node);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        result.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(value).then(function () { result.textContent = "Copied."; }, select);
      } else {
        select();
      }
    });
  }

  return { humanBytes: humanBytes, utcText: utcText, requestJson: requestJson, dumpStep: dumpStep,
           wireCopy: wireCopy };
})();
