// The dashboard's "Stored backups" section: the list from GET /api/v1/stored (newest first, with the
// newest one's age), "Back up to storage now" (POST /api/v1/stored, then the same progress endpoint a
// download uses) and download links that go through the service's presigned redirect (or, for an rclone
// remote, stream through the service: a backup too big for Railway's 15-minute limit is marked). The page
// says "Stored" only when the server says the object is complete and was read back from the bucket.
(function () {
  "use strict";

  var POLL_MS = 700;
  var MAX_POLL_ERRORS = 20;
  var SHORT_HASH = 12;

  var section = document.getElementById("stored");
  if (!section) return;
  var $ = function (id) { return document.getElementById(id); };
  var button = $("stored-now");
  var panel = $("stored-panel");
  var bar = $("stored-bar");
  var highlight = null;  // the name of the backup this page just stored: its row is marked
  var place = section.dataset.place || "bucket";  // "remote" for an rclone remote
  var streamed = null;  // the list's `download` when downloads stream through the service (docs/api.md)
  var dedupStreamed = null;  // the list's `dedup_download`: a dedup backup's download always streams through it

  var humanBytes = window.backupSvc.humanBytes;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    var s = Math.max(0, Math.round(seconds));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return d + (d === 1 ? " day" : " days") + (h && d < 3 ? " " + h + " h" : "");
    if (h) return h + " h" + (m && h < 10 ? " " + m + " min" : "");
    if (m) return m + " min";
    return s % 60 + " s";
  }

  function utc(iso) { return window.backupSvc.utcText(iso, 16); }  // "2026-11-28 03:00"

  function text(id, value) {
    var el = $(id);
    if (el.textContent !== value) el.textContent = value;
  }

  function describeRun(run) {
    var when = utc(run.started) + " UTC (" + run.trigger +
      (run.process && run.process !== "serve" && run.process !== run.trigger.split(" ")[0] ? ", " + run.process : "") + ")";
    switch (run.outcome) {
      case "ok": return when + ": stored " + (run.name || "") + ".";
      case "ok, retention failed": return when + ": stored " + (run.name || "") + ", but deleting old backups failed.";
      case "skipped": return when + ": skipped, another stored backup was running.";
      case "cancelled": return when + ": cancelled (" + (run.error || "") + ").";
      default: return when + ": failed.";
    }
  }

  // "The scheduled backup at 03:00 UTC on 2026-11-28 failed: <reason>." in words a person can act on.
  function describeFailure(run, anyStored) {
    var what = run.trigger === "schedule" ? "The scheduled backup"
      : run.trigger === "upload command" ? "The backup taken by the upload command (e.g. a cron service)"
      : "The backup started by hand";
    return what + " at " + utc(run.started) + " UTC failed: " + (run.error || "no reason was given") +
      (/[.!]$/.test(run.error || "") ? "" : ".") + " Nothing was stored by that run" +
      (anyStored ? "; the stored backups listed here are untouched." : ".");
  }

  function renderStatus(body) {
    if (body.schedule) {
      text("stored-next", body.schedule.next_run_text);
    }
    text("stored-last-run", body.last_run ? describeRun(body.last_run)
      : body.history && body.history.durable ? "None in the history yet." : "None since the service started.");
    var failure = body.last_failure;
    $("stored-failure").hidden = !failure;
    if (failure) text("stored-failure-text", describeFailure(failure, !!(body.newest && body.newest.name)));
  }

  // With no stored backup, what comes next depends on the schedule and on how its last run went.
  function nothingStoredYet(body) {
    var schedule = body.schedule;
    var last = schedule && schedule.last_run;
    if (last && last.outcome === "failed") {
      return ["No stored backup yet: the scheduled backup at " + utc(last.started) + " UTC failed",
              "Its reason is below. The schedule (" + schedule.expression + ") tries again, " +
              schedule.next_run_text.replace(/^next: /, "next at ") + "; “Back up to storage now” tries at once.",
              true];
    }
    if (schedule) {
      return ["No stored backup yet",
              "The schedule (" + schedule.expression + ") takes the first one, " +
              schedule.next_run_text.replace(/^next: /, "next at ") + ". “Back up to storage now” takes one at once."];
    }
    return ["No stored backup yet",
            "Use “Back up to storage now”, or set BACKUP_SCHEDULE to take them on a schedule."];
  }

  function renderFreshness(body) {
    var newest = body.newest;
    var box = $("stored-freshness");
    var warning = $("stored-warning");
    var headlineSaysIt = false;  // the headline already tells the failed run: no warning line repeating it
    if (newest && newest.name) {
      text("stored-age", "Newest stored backup: " + duration(newest.age_s) + " old");
      text("stored-newest", newest.name + ", taken " + utc(newest.time) + " UTC");
    } else {
      var words = nothingStoredYet(body);
      text("stored-age", words[0]);
      text("stored-newest", words[1]);
      headlineSaysIt = !!words[2];
    }
    box.classList.remove("loading");
    box.classList.toggle("stale", !!(newest && newest.stale));
    box.classList.toggle("none", !(newest && newest.name) && !(newest && newest.stale));
    warning.hidden = !(newest && newest.warning) || headlineSaysIt;
    if (newest && newest.warning) text("stored-warning", "Warning: " + newest.warning);
  }

  // The restore command under the list names a real stored backup: the newest one.
  function renderRestoreHint(backups) {
    $("stored-restore").hidden = !backups.length;
    if (!backups.length) return;
    var source = $("stored-restore-source");
    text("stored-restore-source", source.dataset.prefix + backups[0].name);
  }

  // The full SHA-256 to the clipboard (common.js's button); without the clipboard, `code` shows it whole,
  // selected for Ctrl+C
  function copyButton(hash, code, result) {
    var copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy copy-small";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy the full SHA-256 " + hash);
    window.backupSvc.wireCopy(copy, function () { return code; }, result, function () { return hash; });
    return copy;
  }

  function row(backup) {
    var tr = document.createElement("tr");
    tr.dataset.name = backup.name;
    if (backup.name === highlight) tr.className = "just-stored";
    var time = document.createElement("td");
    time.textContent = utc(backup.time);
    time.title = backup.name;
    if (backup.owner_record === false) {  // an older version stored it: shown, never pruned
      tr.classList.add("unrecorded");
      var mark = document.createElement("span");
      mark.className = "unrecorded-mark";
      mark.textContent = "no owner record";
      mark.title = "Stored by an older version of backup_svc, before backups carried their owner: " +
                   "downloadable and restorable, never deleted by retention";
      time.appendChild(document.createElement("br"));
      time.appendChild(mark);
    }
    var size = document.createElement("td");
    size.textContent = humanBytes(backup.size);
    var hash = document.createElement("td");
    if (backup.sha256) {
      var code = document.createElement("code");
      code.className = "hash";
      code.textContent = backup.sha256.slice(0, SHORT_HASH) + "…";
      code.title = backup.sha256;
      hash.appendChild(code);
      hash.appendChild(document.createTextNode(" "));
      var copied = document.createElement("span");
      copied.className = "copy-result";
      copied.setAttribute("role", "status");
      hash.appendChild(copyButton(backup.sha256, code, copied));
      hash.appendChild(copied);
    } else {
      hash.textContent = "–";
    }
    var link = document.createElement("td");
    link.className = "stored-file";  // wraps (style.css): the name, its Download link and notes stay inside the table
    var shown = document.createElement("code");
    shown.className = "stored-name";
    shown.textContent = backup.name;
    link.appendChild(shown);
    link.appendChild(document.createTextNode(" "));
    var dedup = /\.sql\.dedup$/.test(backup.name);
    if (dedup && backup.encrypted) {
      // an age-encrypted dedup backup is not handed out decrypted over HTTP (the API answers 409)
      var sealed = document.createElement("span");
      sealed.className = "dedup-note";
      sealed.textContent = "encrypted, deduplicated: restore it, or backup-svc get it with the private key";
      link.appendChild(document.createElement("br"));
      link.appendChild(sealed);
      [time, size, hash, link].forEach(function (cell) { tr.appendChild(cell); });
      return tr;
    }
    var a = document.createElement("a");
    a.href = section.dataset.downloadUrl.replace("BACKUP_NAME", encodeURIComponent(backup.name));
    a.textContent = "Download";
    a.setAttribute("aria-label", "Download " + backup.name + (dedup ? " as .sql.gz" : ""));
    a.className = "download-link";
    link.appendChild(a);
    // a dedup backup is a manifest of chunks: its download is the .sql.gz rebuilt from them, streamed through
    // the service (docs/storage.md, "Stored format"); an rclone remote's downloads are streamed too
    var through = dedup ? dedupStreamed : streamed;
    if (dedup && through) {
      var note = document.createElement("span");
      note.className = "dedup-note";
      note.textContent = "as .sql.gz, through the service";
      note.title = "Deduplicated (BACKUP_STORAGE_FORMAT=dedup): rebuilt from its chunks and streamed through the " +
                   "service at about " + through.measured_mb_s.toFixed(0) + " MB/s (measured on loopback); Railway " +
                   "ends a request after " + Math.round(through.http_limit_s / 60) + " minutes";
      link.appendChild(document.createElement("br"));
      link.appendChild(note);
    }
    if (through && through.max_bytes && backup.size > through.max_bytes) {
      var late = document.createElement("span");
      late.className = "too-big-mark";
      late.textContent = "may not finish within " + Math.round(through.http_limit_s / 60) + " minutes";
      late.title = "Streamed through the service at about " + through.measured_mb_s.toFixed(0) +
                   " MB/s (measured on loopback), Railway ends it after " + Math.round(through.http_limit_s / 60) +
                   " minutes: restore it from a shell instead" + (dedup ? ", or use backup-svc get" : "");
      link.appendChild(document.createElement("br"));
      link.appendChild(late);
    }
    [time, size, hash, link].forEach(function (cell) { tr.appendChild(cell); });
    return tr;
  }

  function renderList(backups) {
    var tbody = $("stored-list").querySelector("tbody");
    if (!backups.length) {
      var empty = document.createElement("tr");
      var cell = document.createElement("td");
      empty.className = "empty";
      cell.colSpan = 4;
      cell.textContent = "No stored backups in the " + place + " yet.";
      empty.appendChild(cell);
      tbody.replaceChildren(empty);
      return;
    }
    tbody.replaceChildren.apply(tbody, backups.map(row));
  }

  function refresh() {
    return fetch(section.dataset.listUrl, { headers: { "Accept": "application/json" }, cache: "no-store",
                                            credentials: "same-origin" })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          return { status: response.status, body: body };
        });
      })
      .then(function (reply) {
        var error = $("stored-error");
        if (!reply.body) throw new Error("HTTP " + reply.status);
        renderStatus(reply.body);
        if (reply.status !== 200) {
          error.textContent = reply.body.message || ("The list could not be read (HTTP " + reply.status + ").");
          error.hidden = false;
          text("stored-age", "Storage unreachable: the newest backup's age is unknown");
          text("stored-newest", "");
          $("stored-freshness").classList.remove("loading");
          $("stored-freshness").classList.add("stale");
          return;
        }
        error.hidden = true;
        streamed = reply.body.download && reply.body.download.via === "service" ? reply.body.download : null;
        dedupStreamed = reply.body.dedup_download || null;
        renderFreshness(reply.body);
        renderList(reply.body.backups.concat(reply.body.unrecorded || []).sort(function (a, b) {
          return a.time < b.time ? 1 : a.time > b.time ? -1 : 0;
        }));
        renderRestoreHint(reply.body.backups);
        section.dataset.loaded = "true";
      })
      .catch(function () {
        var error = $("stored-error");
        error.textContent = "The service did not answer the request for the list; reload the page to try again.";
        error.hidden = false;
        if ($("stored-freshness").classList.contains("loading")) {
          text("stored-age", "The " + place + " could not be read: the newest backup's age is unknown");
          $("stored-freshness").classList.replace("loading", "stale");
        }
      });
  }

  // -- "Back up to storage now" ------------------------------------------------------------------
  function describePhase(report) {
    var step = window.backupSvc.dumpStep(report);
    if (step) return step;
    switch (report.phase) {
      case "storing": return "Completing the upload and reading it back from the " + place;
      case "stopping": return "Stopping: aborting the upload, so that nothing incomplete is stored";
      case "done": return "Stored";
      case "refused": return "Not started";
      case "cancelled": return "Cancelled";
      default: return "Failed";
    }
  }

  function setStatus(message, kind) {
    text("stored-status", message);
    $("stored-status").className = "status" + (kind ? " status-" + kind : "");
  }

  function setPercent(percent) {
    if (percent === null || percent === undefined) {  // no estimate yet: an indeterminate bar
      bar.removeAttribute("value");
      text("stored-percent", "");
      return;
    }
    if (percent < 0) {  // it ended without a file: an empty bar, no number
      bar.value = 0;
      text("stored-percent", "");
      return;
    }
    var shown = percent >= 100 ? 100 : Math.floor(percent);
    bar.value = percent;
    text("stored-percent", shown + " %");
  }

  function render(report) {
    var step = describePhase(report);
    text("stored-phase", step);
    text("stored-sent", humanBytes(report.bytes_sent));
    text("stored-rate", report.rate_bytes_per_s ? humanBytes(report.rate_bytes_per_s) + "/s" : "–");
    text("stored-elapsed", duration(report.elapsed_s));
    text("stored-eta", report.eta_s === null || report.eta_s === undefined
      ? (report.state === "running" ? "estimating…" : "–")
      : (report.eta_s < 1 ? "a moment" : "about " + duration(report.eta_s)));
    if (report.state === "running") {
      setPercent(report.percent);
      setStatus(step + "…", "running");
    }
  }

  function finish(message, kind) {
    setStatus(message, kind);
    bar.classList.toggle("failed", kind === "error");
    text("stored-eta", "–");
    button.disabled = false;
    panel.removeAttribute("aria-busy");
    refresh();
    // The "Recent backup attempts" table (dashboard.js) lists stored backups too.
    document.dispatchEvent(new CustomEvent("backup-svc:attempt-ended"));
  }

  function poll(url, errors) {
    fetch(url, { headers: { "Accept": "application/json" }, cache: "no-store", credentials: "same-origin" })
      .then(function (response) { return response.json().then(function (body) { return { status: response.status, body: body }; }); })
      .then(function (reply) {
        if (reply.status !== 200) {
          return finish(reply.body.message || ("Progress unavailable (HTTP " + reply.status + ")."), "error");
        }
        var report = reply.body;
        render(report);
        if (report.state === "running") return window.setTimeout(function () { poll(url, 0); }, POLL_MS);
        if (report.state === "done") {
          highlight = report.filename;
          setPercent(100);
          return finish("Stored: " + report.filename + ", " + humanBytes(report.bytes_sent) + " in " +
                        duration(report.elapsed_s) + ". Read back from the " + place + " and matched; SHA-256 " +
                        report.sha256 + ".", "ok");
        }
        setPercent(-1);
        var reason = report.error || "the stored backup stopped before it was complete.";
        var title = { refused: "Not started: ", cancelled: "Cancelled: " }[report.state] || "Failed: ";
        return finish(title + reason + (report.state === "refused" || /Nothing was stored/.test(reason)
                                        ? "" : " Nothing was stored."), "error");
      })
      .catch(function () {
        if (errors + 1 >= MAX_POLL_ERRORS) return finish("Lost contact with the service while the backup ran.", "error");
        window.setTimeout(function () { poll(url, errors + 1); }, POLL_MS);
      });
  }

  function start() {
    if (button.disabled) return;
    button.disabled = true;
    panel.hidden = false;
    panel.setAttribute("aria-busy", "true");
    bar.classList.remove("failed");
    ["stored-phase", "stored-sent", "stored-rate", "stored-elapsed", "stored-eta"].forEach(function (id) { text(id, "–"); });
    setPercent(0);
    setStatus("Starting the stored backup…", "running");
    fetch(section.dataset.startUrl, { method: "POST", headers: { "Accept": "application/json" },
                                      cache: "no-store", credentials: "same-origin" })
      .then(function (response) { return response.json().then(function (body) { return { status: response.status, body: body }; }); })
      .then(function (reply) {
        if (reply.status !== 202) {
          setPercent(-1);
          return finish("Not started: " + (reply.body.message || "HTTP " + reply.status), "error");
        }
        poll(section.dataset.progressUrl.replace("BACKUP_ID", encodeURIComponent(reply.body.id)), 0);
      })
      .catch(function () { setPercent(-1); finish("The service did not answer; nothing was started.", "error"); });
  }

  button.addEventListener("click", start);
  refresh();
})();
