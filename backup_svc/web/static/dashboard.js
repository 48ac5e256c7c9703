// The dashboard's download button. The backup goes to the browser's own download manager through a
// hidden iframe (a multi-GB file must never sit in page memory, so no fetch() + Blob); the page
// polls /api/v1/backups/<id> for progress under an id it chose itself. The service measures what the
// browser's connection has acknowledged; the page says "sent", never "saved": only the browser's
// download list knows when the file is on disk.
(function () {
  "use strict";

  var POLL_MS = 500;
  // While idle, how often the page asks whether someone else's backup runs (the button waits for it).
  var IDLE_POLL_MS = 2000;
  // The iframe's request may reach the server after the first poll: an unknown id is normal at first.
  var START_GRACE_MS = 20000;
  // Polls may fail for a moment (a redeploy, a flaky network); give up after this many in a row.
  var MAX_POLL_ERRORS = 20;

  var button = document.getElementById("dl");
  if (!button) return;
  var panel = document.getElementById("progress-panel");
  var bar = document.getElementById("bar");
  var percentText = document.getElementById("percent");
  var statusText = document.getElementById("status");
  var reason = document.getElementById("dl-reason");
  var errorBox = document.getElementById("error");
  var result = document.getElementById("result");
  var fields = {};
  ["sent", "rate", "elapsed", "eta", "error-title", "error-message", "error-advice", "result-file", "sha-short",
   "sha-full"].forEach(function (id) {
    fields[id] = document.getElementById(id);
  });
  var frame = null;
  // Stored backups and their download links share the audit trail with downloads (docs/api.md).
  var OUTCOME_PREFIX = { "stored-backup": "to storage: ", "stored-download": "stored link: ",
                         "shrink-acknowledged": "shrink alarm acknowledged: " };
  var mine = null;      // the id of this page's running backup
  var ended = null;     // the id of this page's last backup, which may hold its slot a moment longer
  var shown = 0;        // the highest percent shown for it: the bar never moves back

  function newId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 10 && seconds !== Math.round(seconds)) return seconds.toFixed(1) + " s";
    var s = Math.round(seconds);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    if (h) return h + " h " + m + " min";
    if (m) return m + " min " + s + " s";
    return s + " s";
  }

  var humanBytes = window.backupSvc.humanBytes;
  var requestJson = window.backupSvc.requestJson;

  function utcSeconds(iso) { return window.backupSvc.utcText(iso, 19); }

  // A file name that breaks only after its underscores (shop_backup_ / 20261128_ / 193204.sql.gz),
  // never inside ".sql.gz" or a number.
  function setFilename(el, name) {
    if (el.dataset.name === name) return;
    el.dataset.name = name;
    var parts = name.split("_");
    el.replaceChildren();
    parts.forEach(function (part, n) {
      el.appendChild(document.createTextNode(part + (n < parts.length - 1 ? "_" : "")));
      if (n < parts.length - 1) el.appendChild(document.createElement("wbr"));
    });
  }

  // An age-encrypted download (….sql.gz.age) gets the restore commands that decrypt it first.
  function showRestoreCommands(encrypted) {
    var age = document.getElementById("restore-commands-age");
    if (!age) return;
    var plain = document.getElementById("restore-commands");
    age.hidden = !encrypted;
    plain.hidden = encrypted;
    var copy = plain.parentNode.querySelector("button.copy");
    if (copy) copy.dataset.copy = encrypted ? "restore-commands-age" : "restore-commands";
  }

  function describe(report) {
    var step = window.backupSvc.dumpStep(report);
    if (step) return step;
    switch (report.phase) {
      case "sending": return "Dump complete; sending the last " +
                             humanBytes(report.bytes_made - report.bytes_sent) + " to your browser";
      case "done": return "Complete";
      case "refused": return "Not started";
      case "aborted": return "Stopped";
      case "cancelled": return "Cancelled";
      default: return "Failed";
    }
  }

  function setStatus(text, kind) {
    if (statusText.textContent !== text) statusText.textContent = text;
    statusText.className = "status" + (kind ? " status-" + kind : "");
  }

  function setPercent(percent, label) {
    if (percent === null || percent === undefined) {
      if (shown > 0) return;  // keep what was shown rather than go back to "no idea"
      bar.removeAttribute("value");  // indeterminate: no estimate (yet)
      bar.removeAttribute("aria-valuetext");
      percentText.textContent = "";
      return;
    }
    shown = Math.max(shown, percent);
    // Never round up to 100 before the server says the file is complete.
    var whole = shown >= 100 ? 100 : Math.floor(shown);
    bar.value = shown;
    bar.setAttribute("aria-valuetext", whole + " %" + (label ? ", " + label : ""));
    percentText.textContent = whole + " %";
  }

  function render(report) {
    var step = describe(report);
    fields.sent.textContent = humanBytes(report.bytes_sent) +
      (report.state === "running" && report.bytes_expected ? " of about " + humanBytes(report.bytes_expected) : "");
    fields.rate.textContent = report.rate_bytes_per_s ? humanBytes(report.rate_bytes_per_s) + "/s" : "–";
    fields.elapsed.textContent = duration(report.elapsed_s);
    fields.eta.textContent = report.state !== "running" ? "–"
      : report.eta_s === null || report.eta_s === undefined ? "estimating…"
      : report.eta_s < 1 ? "a moment" : "about " + duration(report.eta_s);
    if (report.state === "running") {
      setPercent(report.percent, step);
      // The live region changes with the step only, not with every byte count.
      setStatus(step + "…", "running");
    }
    if (report.filename) {
      document.querySelectorAll(".js-filename").forEach(function (el) { setFilename(el, report.filename); });
      showRestoreCommands(/\.age$/.test(report.filename));
    }
  }

  function succeed(report) {
    setPercent(100, "sent");
    var took = report.send_s !== null && report.send_s !== undefined ? report.send_s : report.elapsed_s;
    setStatus("Sent all " + humanBytes(report.bytes_sent) + " in " + duration(took) +
              "; your browser's download list shows when it is saved.", "ok");
    fields.elapsed.textContent = duration(report.elapsed_s);
    setFilename(fields["result-file"], report.filename);
    if (report.sha256) {
      fields["sha-short"].textContent = report.sha256.slice(0, 12) + "…" + report.sha256.slice(-4);
      fields["sha-short"].title = report.sha256;
      fields["sha-full"].textContent = report.sha256;
    }
    result.hidden = false;
    finish();
  }

  function fail(message, advice, title) {
    title = title || "Backup failed.";
    panel.classList.add("failed");
    bar.classList.add("failed");
    bar.setAttribute("aria-valuetext", title);
    // The error box (role=alert) says it, once; the status line would only repeat its title.
    setStatus("", "error");
    statusText.hidden = true;
    fields["error-title"].textContent = title;
    fields["error-message"].textContent = message;
    fields["error-advice"].textContent = advice || "";
    fields.eta.textContent = "–";
    errorBox.hidden = false;
    finish();
  }

  function failFromReport(report) {
    var message = report.error || "The backup stopped before it was complete.";
    if (report.state === "refused") {
      fail(message, "Nothing was downloaded.", "Backup not started.");
    } else {
      fail(message, "The file your browser saved is incomplete and cannot be restored: delete it " +
                    "and try again.");
    }
  }

  function finish() {
    ended = mine;
    mine = null;
    panel.removeAttribute("aria-busy");
    refreshRecent();
    checkBusy();
  }

  // Whether the service can take a backup now: the button is disabled, with the reason beside it,
  // while any backup runs (this page's or another admin's) and the service has no room for another.
  function showBusy(running, busy) {
    var others = running.filter(function (entry) { return entry.id !== mine && entry.id !== ended; });
    if (mine) {
      button.disabled = true;
      reason.textContent = "Your backup is running" + (others.length ? "; so is one started by " +
        others[0].actor + " at " + utcSeconds(others[0].started_at).slice(11) + " UTC" : "") + ".";
    } else if (busy && others.length) {
      button.disabled = true;
      reason.textContent = "A backup started by " + others[0].actor + " at " +
        utcSeconds(others[0].started_at).slice(11) + " UTC" + (others.length > 1 ? " and " +
        (others.length - 1) + " more" : "") + " is running; the button comes back when it ends.";
    } else if (busy) {
      button.disabled = true;
      reason.textContent = "The last backup is closing its connection; a moment.";
    } else {
      button.disabled = false;
      reason.textContent = others.length ? "Another backup is running (started by " + others[0].actor +
        "); the service has room for yours too." : "";
    }
  }

  function checkBusy() {
    if (mine) return;
    fetch(button.dataset.runningUrl, { headers: { "Accept": "application/json" }, cache: "no-store",
                                       credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) { if (body && !mine) showBusy(body.running, body.busy); })
      .catch(function () { /* the next check will tell */ });
  }

  // The "Recent backup attempts" table, rebuilt from the audit trail after each attempt.
  function refreshRecent() {
    var table = document.getElementById("recent");
    if (!table) return;
    var labels = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
      return th.textContent.replace(" (UTC)", "");
    });
    fetch(table.dataset.auditUrl, { headers: { "Accept": "application/json" }, cache: "no-store",
                                    credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body || !(body.shown || body.entries)) return;
        var tbody = table.querySelector("tbody");
        // `shown`: what the page lists (history/summary.py recent_attempts: refusals at most half of it).
        var rows = (body.shown || body.entries.slice(0, 10)).map(function (entry) {
          var row = document.createElement("tr");
          var outcome = (OUTCOME_PREFIX[entry.event] || "") + entry.outcome +
                        (entry.status && entry.status !== 200 ? " (" + entry.status + ")" : "") +
                        (entry.count > 1 ? " ×" + entry.count : "");  // refusals: counted per minute
          [utcSeconds(entry.time), entry.actor || "–", entry.client || "–", outcome, humanBytes(entry.bytes),
           duration(entry.duration_s)].forEach(function (text, n) {
            var cell = document.createElement("td");
            cell.textContent = text;
            cell.setAttribute("data-label", labels[n] || "");
            if (n === 3) cell.className = "outcome-" + entry.outcome;
            row.appendChild(cell);
          });
          return row;
        });
        if (rows.length) tbody.replaceChildren.apply(tbody, rows);
      })
      .catch(function () { /* the table is a convenience; the log has every attempt */ });
  }

  function poll(url, startedAt, errors) {
    function again(nextErrors) {
      window.setTimeout(function () { poll(url, startedAt, nextErrors); }, POLL_MS);
    }
    requestJson(url, { headers: { "Accept": "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (reply) {
        if (reply.status === 404 && Date.now() - startedAt < START_GRACE_MS) return again(0);
        if (reply.status !== 200 || !reply.body) {
          var message = reply.body && reply.body.message ? reply.body.message
            : "The service answered the progress request with HTTP " + reply.status + ".";
          return fail(message, reply.status === 401 ? "Reload the page to log in again." : "");
        }
        var report = reply.body;
        render(report);
        if (report.state === "running") return again(0);
        if (report.state === "done") return succeed(report);
        return failFromReport(report);
      })
      .catch(function () {
        if (errors + 1 >= MAX_POLL_ERRORS) {
          return fail("Lost contact with the service while the backup was running.",
                      "Check your browser's downloads: a file that did not finish is incomplete.");
        }
        again(errors + 1);
      });
  }

  function start() {
    if (button.disabled) return;
    var id = newId();
    mine = id;
    shown = 0;
    showBusy([], false);
    panel.hidden = false;
    panel.setAttribute("aria-busy", "true");
    panel.classList.remove("failed");
    bar.classList.remove("failed");
    errorBox.hidden = true;
    statusText.hidden = false;
    result.hidden = true;
    ["sent", "rate", "elapsed", "eta"].forEach(function (name) { fields[name].textContent = "–"; });
    bar.value = 0;
    setPercent(0, "starting");
    setStatus("Starting the backup…", "running");

    if (frame) frame.remove();
    frame = document.createElement("iframe");
    frame.hidden = true;
    frame.tabIndex = -1;
    frame.title = "Backup download";
    frame.setAttribute("aria-hidden", "true");
    // "Encrypt the file with age" (shown only when BACKUP_AGE_RECIPIENTS is set)
    var encrypt = document.getElementById("encrypt-age");
    frame.src = button.dataset.backupUrl + "?progress_id=" + encodeURIComponent(id) +
      (encrypt && encrypt.checked ? "&encrypt=age" : "");
    document.body.appendChild(frame);

    poll(button.dataset.progressUrl.replace("BACKUP_ID", encodeURIComponent(id)), Date.now(), 0);
  }

  button.addEventListener("click", start);
  document.addEventListener("backup-svc:attempt-ended", refreshRecent);
  checkBusy();
  window.setInterval(checkBusy, IDLE_POLL_MS);

  // "Copy" buttons (restore commands, the SHA-256): common.js's, with its Ctrl+C fallback
  document.querySelectorAll("button.copy").forEach(function (copy) {
    window.backupSvc.wireCopy(copy, function () { return document.getElementById(copy.dataset.copy); },
                              copy.parentNode.querySelector(".copy-result"));
  });
})();

// Cancel buttons of the backups running now, whoever started them: DELETE /api/v1/backups/<id>
// (same-origin only). The download's own client then sees a broken transfer.
(function () {
  "use strict";

  var list = document.getElementById("running-dumps");
  if (!list) return;
  list.querySelectorAll("button.cancel-dump").forEach(function (cancel) {
    cancel.addEventListener("click", function () {
      var item = cancel.closest("li");
      var result = item.querySelector(".cancel-result");
      cancel.disabled = true;
      result.textContent = "Cancelling…";
      window.backupSvc.requestJson(list.dataset.cancelUrl.replace("BACKUP_ID", encodeURIComponent(item.dataset.backupId)),
            { method: "DELETE", credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (reply) {
          if (reply.status === 200) {
            result.textContent = "Cancelled" + (reply.body && reply.body.error ? ": " + reply.body.error : "") + ".";
            return;
          }
          result.textContent = reply.body && reply.body.message ? reply.body.message : "HTTP " + reply.status;
          cancel.disabled = reply.status === 409;  // it has ended anyway
        })
        .catch(function () {
          result.textContent = "Could not reach the service; try again.";
          cancel.disabled = false;
        });
    });
  });
})();
