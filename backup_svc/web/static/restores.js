// The dashboard's "Restore a stored backup" section: a Restore… button on each stored backup, the form
// (into a new database, or replace the live one after its name is typed), the progress of a running
// restore from GET /api/v1/restores/<id> with Cancel until the swap begins, and the kept databases
// with Undo and Drop. The page reports what the server says happened, never more.
(function () {
  "use strict";

  var POLL_MS = 500;
  var MAX_POLL_ERRORS = 20;
  var section = document.getElementById("restores");
  if (!section) return;
  var $ = function (id) { return document.getElementById(id); };
  var data = section.dataset;
  var form = $("restore-form"), panel = $("restore-panel"), bar = $("restore-bar"), outcome = $("restore-outcome");
  var running = null;  // the id of the restore this page follows

  var PHASES = {
    privileges: "Checking what the service's role may do",
    checking: "Checking the stored object (sha256, completeness)",
    creating: "Creating the new database",
    restoring: "Restoring",
    comparing: "Comparing row counts with the dump-time record",
    swapping: "Swapping it in (connections refused meanwhile)",
    done: "Done"
  };

  var humanBytes = window.backupSvc.humanBytes;  // common.js, loaded before this file

  function seconds(s) {
    if (s === null || s === undefined) return "–";
    s = Math.max(0, Math.round(s));
    return s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s";
  }

  function text(id, value) {
    var el = $(id);
    if (el.textContent !== value) el.textContent = value;
  }

  function call(method, url, body) {
    var options = { method: method, cache: "no-store", credentials: "same-origin",
                    headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        return { status: response.status, body: json };
      });
    });
  }

  // -- the form --------------------------------------------------------------------------------
  function mode() { return form.querySelector("input[name=mode]:checked").value; }

  function showMode() {
    var replace = mode() === "replace";
    $("restore-confirm-row").hidden = !replace;
    $("restore-start").textContent = replace ? "Restore and replace " + data.database : "Start restore";
  }

  function openForm(name) {
    form.dataset.backup = name;
    text("restore-backup", name);
    form.reset();
    showMode();
    $("restore-form-error").hidden = true;
    form.hidden = false;
    form.scrollIntoView({ block: "nearest" });
    form.querySelector("input[name=mode]").focus();
  }

  function formError(message) {
    text("restore-form-error", message);
    $("restore-form-error").hidden = false;
  }

  function submit(event) {
    event.preventDefault();
    var body = { backup: form.dataset.backup, mode: mode() };
    var name = $("restore-name").value.trim();
    if (name) body.database = name;
    if (body.mode === "replace") {
      body.confirm = $("restore-confirm").value;
      if (body.confirm !== data.database) return formError("Type " + data.database + " exactly to replace it.");
    }
    $("restore-start").disabled = true;
    call("POST", data.startUrl, body).then(function (reply) {
      $("restore-start").disabled = false;
      if (reply.status !== 202) return formError("Not started: " + (reply.body.message || "HTTP " + reply.status));
      form.hidden = true;
      follow(reply.body.id);
    }).catch(function () {
      $("restore-start").disabled = false;
      formError("The service did not answer; nothing was started.");
    });
  }

  // -- progress --------------------------------------------------------------------------------
  function follow(id) {
    running = id;
    panel.hidden = false;
    outcome.hidden = true;
    bar.classList.remove("failed");
    $("restore-cancel").hidden = false;
    $("restore-cancel").disabled = false;
    poll(id, 0);
  }

  function render(r) {
    var step = PHASES[r.phase] || r.phase;
    var ended = r.state === "failed" || r.state === "cancelled";
    text("restore-phase", ended ? (r.state === "failed" ? "Failed while: " : "Cancelled while: ") + step.toLowerCase() : step);
    text("restore-bytes", r.bytes_total ? humanBytes(r.bytes_applied) + " of " + humanBytes(r.bytes_total)
                                        : humanBytes(r.bytes_applied));
    text("restore-tables", r.tables_total !== null ? r.tables_done + " of " + r.tables_total : "–");
    text("restore-elapsed", seconds(r.elapsed_s));
    text("restore-eta", r.seconds_left === null ? (r.state === "running" ? "estimating…" : "–")
                                                : "about " + seconds(r.seconds_left));
    bar.value = r.percent;
    text("restore-percent", Math.floor(r.percent) + " %");
    $("restore-cancel").hidden = !r.cancellable;
    if (r.state === "running") {
      text("restore-status", step + "… (" + r.backup + " → " + (r.mode === "replace" ? "replace " + r.database
                                                                                  : r.target) + ", by " + r.actor + ")");
    }
  }

  function ended(r) {
    var ok = r.state === "done";
    var lines = [];
    if (ok && r.mode === "replace") {
      lines.push("Replaced " + r.database + " with " + r.backup + ". Connections were refused for " +
                 r.downtime_s.toFixed(2) + " s. The data it replaced is kept as " + r.kept_as + " (Undo below).");
    } else if (ok) {
      lines.push("Restored " + r.backup + " into the new database " + r.target + ". " + r.database + " was not touched.");
    } else {
      lines.push((r.state === "cancelled" ? "Cancelled: " : "Failed: ") + r.error);
    }
    if (ok) lines.push("Row counts match (" + r.counts_from + "): " + r.tables_total + " tables, " + r.rows + " rows.");
    if (r.warning) lines.push("Warning: " + r.warning);
    outcome.replaceChildren.apply(outcome, lines.map(function (line) {
      var p = document.createElement("p");
      p.textContent = line;
      return p;
    }));
    outcome.className = "notice " + (ok ? "notice-ok" : "notice-error");
    outcome.hidden = false;
    text("restore-status", ok ? "Done." : (r.state === "cancelled" ? "Cancelled." : "Failed."));
    bar.classList.toggle("failed", !ok);
    $("restore-cancel").hidden = true;
    running = null;
    refreshKept();
  }

  function poll(id, errors) {
    call("GET", data.progressUrl.replace("RESTORE_ID", encodeURIComponent(id))).then(function (reply) {
      if (reply.status !== 200) throw new Error("HTTP " + reply.status);
      render(reply.body);
      if (reply.body.state === "running") return window.setTimeout(function () { poll(id, 0); }, POLL_MS);
      ended(reply.body);
    }).catch(function () {
      if (errors + 1 >= MAX_POLL_ERRORS) {
        text("restore-status", "Lost contact with the service; GET /api/v1/restores tells how it ended.");
        return;
      }
      window.setTimeout(function () { poll(id, errors + 1); }, POLL_MS);
    });
  }

  function cancel() {
    if (!running) return;
    $("restore-cancel").disabled = true;
    call("DELETE", data.progressUrl.replace("RESTORE_ID", encodeURIComponent(running))).then(function (reply) {
      if (reply.status !== 202) {
        $("restore-cancel").disabled = false;
        text("restore-status", reply.body.message || "Not cancelled (HTTP " + reply.status + ").");
      } else {
        text("restore-status", "Cancelling: the half-built database is being dropped…");
      }
    });
  }

  // -- kept databases --------------------------------------------------------------------------
  function keptMessage(message, ok) {
    var el = $("kept-message");
    el.textContent = message;
    el.className = "notice " + (ok ? "notice-ok" : "notice-error");
    el.hidden = false;
  }

  function cell(label, content) {
    var td = document.createElement("td");
    td.dataset.label = label;
    if (typeof content === "string") td.textContent = content; else td.appendChild(content);
    return td;
  }

  function action(label, title, handler) {
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.setAttribute("aria-label", title);
    button.addEventListener("click", handler);
    return button;
  }

  function undo(name) {
    if (!window.confirm("Swap " + name + " back in as " + data.database + "? The current " + data.database +
                        " is kept in its turn; the application is refused connections for the swap.")) return;
    call("POST", data.undoUrl.replace("DB_NAME", encodeURIComponent(name))).then(function (reply) {
      keptMessage(reply.status === 200 ? reply.body.message : "Not undone: " + reply.body.message, reply.status === 200);
      refreshKept();
    });
  }

  function drop(name) {
    var typed = window.prompt("This drops " + name + " for good. Type its name to confirm:");
    if (typed === null) return;
    call("DELETE", data.dropUrl.replace("DB_NAME", encodeURIComponent(name)), { confirm: typed }).then(function (reply) {
      keptMessage(reply.status === 200 ? reply.body.message : "Not dropped: " + reply.body.message, reply.status === 200);
      refreshKept();
    });
  }

  function keptRow(k) {
    var tr = document.createElement("tr");
    tr.dataset.name = k.name;
    var code = document.createElement("code");
    code.textContent = k.name;
    var actions = document.createElement("span");
    actions.className = "actions";
    if (k.kind === "before_restore") {
      actions.appendChild(action("Undo", "Swap " + k.name + " back in", function () { undo(k.name); }));
    }
    actions.appendChild(action("Drop", "Drop " + k.name, function () { drop(k.name); }));
    [cell("Database", code), cell("Kind", k.kind === "before_restore" ? "kept by a replace" : "restored"),
     cell("Made (UTC)", k.time ? k.time.replace("T", " ").slice(0, 19) : "–"), cell("Size", humanBytes(k.size)),
     cell("Actions", actions)].forEach(function (td) { tr.appendChild(td); });
    return tr;
  }

  function refreshKept() {
    var tbody = $("kept-list").querySelector("tbody");
    call("GET", data.databasesUrl).then(function (reply) {
      if (reply.status !== 200) throw new Error(reply.body.message || "HTTP " + reply.status);
      var kept = reply.body.kept;
      if (!kept.length) {
        var tr = document.createElement("tr");
        tr.className = "empty";
        tr.appendChild(cell("", "None: no restore has made or kept a database."));
        tr.firstChild.colSpan = 5;
        return tbody.replaceChildren(tr);
      }
      tbody.replaceChildren.apply(tbody, kept.map(keptRow));
      var rights = reply.body.privileges;
      if (!rights.can_replace) {
        form.querySelector("input[value=replace]").disabled = true;
      }
    }).catch(function (error) {
      keptMessage("Could not list the kept databases: " + error.message, false);
    });
  }

  // -- a Restore… button on each stored backup (stored.js draws the rows) -------------------------
  function addButtons() {
    $("stored-list").querySelectorAll("tbody tr[data-name]").forEach(function (tr) {
      if (tr.querySelector(".restore-open")) return;
      var button = action("Restore…", "Restore " + tr.dataset.name, function () { openForm(tr.dataset.name); });
      button.className = "restore-open";
      tr.lastElementChild.appendChild(document.createTextNode(" "));
      tr.lastElementChild.appendChild(button);
    });
  }

  new MutationObserver(addButtons).observe($("stored-list").querySelector("tbody"), { childList: true });
  addButtons();
  form.addEventListener("submit", submit);
  form.addEventListener("change", showMode);
  $("restore-close").addEventListener("click", function () { form.hidden = true; });
  $("restore-cancel").addEventListener("click", cancel);
  refreshKept();
  // another admin's restore (or this page's, before a reload) shows here too
  call("GET", data.listUrl).then(function (reply) {
    if (reply.status === 200 && reply.body.running && !running) follow(reply.body.running);
  });
})();
