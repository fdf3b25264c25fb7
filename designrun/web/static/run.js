// Run page: live log over EventSource (falls back to polling), status, progress, actions.
// Lines are text nodes (never HTML). At most data-max-lines lines stay rendered; earlier ones
// come back on request ("Show earlier lines"), so a run with 100k events never freezes the tab.
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root) { return; }
  var d = root.dataset;
  var maxLines = parseInt(d.maxLines, 10) || 1000;
  var lastSeq = parseInt(d.lastSeq, 10) || 0;
  var firstSeq = parseInt(d.firstSeq, 10) || 0;
  var status = d.status;
  var log = root.querySelector("[data-log]");
  var earlierButton = root.querySelector("[data-earlier]");
  var jump = root.querySelector("[data-jump]");
  var connection = root.querySelector("[data-connection]");
  var announce = root.querySelector("[data-announce]");
  var terminal = { completed: 1, failed: 1, cancelled: 1 };
  var pending = [];
  var scheduled = false;
  var stick = true;
  var source = null;
  var pollTimer = null;

  function q(sel) { return root.querySelector(sel); }
  function say(text) { announce.textContent = text; }

  // --- the log -------------------------------------------------------------------------------
  function lineFor(ev) {
    var li = document.createElement("li");
    li.dataset.seq = ev.sequence;
    li.className = "type-" + String(ev.eventType).replace(/\./g, "-");
    var kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = ev.eventType;
    li.appendChild(kind);
    li.appendChild(document.createTextNode(" " + (ev.message == null ? "" : ev.message)));
    return li;
  }

  function atBottom() { return log.scrollTop + log.clientHeight >= log.scrollHeight - 8; }

  log.addEventListener("scroll", function () {
    stick = atBottom();
    jump.hidden = stick;
  });
  jump.addEventListener("click", function () {
    log.scrollTop = log.scrollHeight; stick = true; jump.hidden = true; log.focus();
  });

  function receive(ev) {
    if (ev.sequence <= lastSeq) { return; } // already shown: a resumed stream never repeats
    lastSeq = ev.sequence;
    if (!firstSeq) { firstSeq = ev.sequence; }
    pending.push(ev);
    if (pending.length > maxLines) { pending.splice(0, pending.length - maxLines); }
    if (!scheduled) { scheduled = true; requestAnimationFrame(flush); }
  }

  function flush() {
    scheduled = false;
    if (!pending.length) { return; }
    var frag = document.createDocumentFragment();
    pending.forEach(function (ev) { frag.appendChild(lineFor(ev)); });
    pending = [];
    log.appendChild(frag);
    var extra = log.children.length - maxLines;
    if (extra > 0) {
      for (var i = 0; i < extra; i++) { log.removeChild(log.firstElementChild); }
      earlierButton.hidden = false;
    }
    if (log.firstElementChild) { firstSeq = parseInt(log.firstElementChild.dataset.seq, 10); }
    if (stick) { log.scrollTop = log.scrollHeight; } else { jump.hidden = false; }
  }

  earlierButton.addEventListener("click", function () {
    var before = firstSeq - 1;
    if (before < 1) { earlierButton.hidden = true; return; }
    var count = Math.min(500, before);
    var url = new URL(d.eventsUrl, location.href);
    url.searchParams.set("after", String(before - count));
    url.searchParams.set("limit", String(count));
    earlierButton.disabled = true;
    fetch(url, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (body) {
      var height = log.scrollHeight;
      var frag = document.createDocumentFragment();
      body.events.forEach(function (ev) { if (ev.sequence < firstSeq) { frag.appendChild(lineFor(ev)); } });
      log.insertBefore(frag, log.firstElementChild);
      log.scrollTop += log.scrollHeight - height; // keep the lines the reader was looking at
      firstSeq = parseInt(log.firstElementChild.dataset.seq, 10);
      earlierButton.hidden = firstSeq <= 1;
      say("Loaded " + body.events.length + " earlier lines.");
    }).catch(function () { say("Could not load earlier lines."); })
      .then(function () { earlierButton.disabled = false; });
  });

  // --- the run ---------------------------------------------------------------------------------
  function duration(start, end) {
    if (!start) { return "—"; }
    var s = Math.max(0, Math.round(((end ? Date.parse(end) : Date.now()) - Date.parse(start)) / 1000));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    return h ? h + " h " + m + " min" : (m ? m + " min " + s + " s" : s + " s");
  }

  function showRun(run) {
    var changed = run.status !== status;
    status = run.status;
    root.dataset.status = status;
    var badge = q("[data-status-badge]");
    badge.textContent = status;
    badge.className = "badge status-" + status;
    var pct = Math.round((run.progress || 0) * 100);
    q("[data-progress]").value = pct;
    q("[data-progress-text]").textContent = pct + " %";
    q("[data-started]").textContent = run.startedAt || "—";
    q("[data-completed]").textContent = run.completedAt || "—";
    q("[data-duration]").textContent = duration(run.startedAt, run.completedAt);
    startedAt = run.startedAt;
    var failed = run.error || run.failureReason;
    q("[data-failure]").hidden = !failed;
    q("[data-failure-reason]").textContent = run.failureReason || "";
    q("[data-error]").textContent = run.error || "";
    var done = !!terminal[status];
    q("[data-action=cancel]").hidden = done;
    q("[data-action=retry]").hidden = !done;
    if (changed) {
      say("Run " + status + ".");
      refreshArtifacts();
    }
  }

  function refreshArtifacts() {
    fetch(d.artifactsUrl, { credentials: "same-origin" }).then(function (r) {
      if (r.ok) { return r.text(); }
    }).then(function (html) {
      if (html) { q("[data-artifacts]").innerHTML = html; } // server-rendered, autoescaped
    }).catch(function () {});
  }

  // --- live: EventSource, else polling ---------------------------------------------------------
  function connect() {
    if (!window.EventSource) { startPolling(); return; }
    var url = new URL(d.streamUrl, location.href);
    url.searchParams.set("after", String(lastSeq));
    source = new EventSource(url);
    source.addEventListener("open", function () { connection.hidden = true; });
    source.addEventListener("event", function (e) { receive(JSON.parse(e.data)); });
    source.addEventListener("run", function (e) { showRun(JSON.parse(e.data)); });
    source.addEventListener("end", function () {
      source.close(); source = null; connection.hidden = true;
      refreshRun();
    });
    source.addEventListener("error", function () {
      if (!source) { return; }
      if (source.readyState === EventSource.CLOSED) {
        // Refused (server full: 503, or gone): poll instead, try the stream again later.
        source = null;
        connection.hidden = false;
        startPolling();
      } else {
        connection.hidden = false; // the browser reconnects with Last-Event-ID by itself
      }
    });
  }

  function refreshRun() {
    return fetch(d.runUrl, { credentials: "same-origin" }).then(function (r) {
      if (r.status === 404) { throw new Error("gone"); }
      return r.json();
    }).then(function (body) { showRun(body.run); });
  }

  function poll() {
    var url = new URL(d.eventsUrl, location.href);
    url.searchParams.set("after", String(lastSeq));
    url.searchParams.set("limit", "1000");
    fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.json();
    }).then(function (body) {
      connection.hidden = true;
      body.events.forEach(receive);
      return body.nextCursor ? null : refreshRun();
    }).then(function () {
      if (terminal[status]) { stopPolling(); return; }
      if (pollTimer !== null) { pollTimer = setTimeout(poll, 2000); }
    }).catch(function () {
      connection.hidden = false;
      if (pollTimer !== null) { pollTimer = setTimeout(poll, 4000); }
    });
  }

  function startPolling() {
    if (pollTimer !== null) { return; }
    pollTimer = setTimeout(poll, 1000);
    setTimeout(function () { // give the stream another chance after a while
      if (!terminal[status] && !source) { stopPolling(); connect(); }
    }, 30000);
  }

  function stopPolling() {
    if (pollTimer !== null) { clearTimeout(pollTimer); }
    pollTimer = null;
  }

  // --- actions (the JSON API; same origin, session cookie) -------------------------------------
  function act(button, method, path, done) {
    button.disabled = true;
    var url = d.runUrl + (path ? "/" + path : "");
    var init = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method === "POST") { init.headers["Content-Type"] = "application/json"; init.body = "{}"; }
    fetch(url, init).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (body) { return [r, body]; });
    }).then(function (pair) {
      var r = pair[0], body = pair[1];
      if (!r.ok) { throw new Error(body.error || ("HTTP " + r.status)); }
      done(body);
    }).catch(function (err) {
      say("That did not work: " + err.message);
    }).then(function () { button.disabled = false; });
  }

  root.querySelector("[data-action=cancel]").addEventListener("click", function (e) {
    act(e.currentTarget, "POST", "cancel", function (body) { showRun(body.run); say("Run cancelled."); });
  });
  root.querySelector("[data-action=retry]").addEventListener("click", function (e) {
    act(e.currentTarget, "POST", "retry", function (body) { location.href = d.pageBase + body.run.id; });
  });
  root.querySelector("[data-action=delete]").addEventListener("click", function (e) {
    if (!window.confirm("Delete this run, its log and its artifacts?")) { return; }
    act(e.currentTarget, "DELETE", "", function () { location.href = d.runsUrl; });
  });

  var startedAt = null;
  setInterval(function () { // the duration of a running run keeps counting
    if (terminal[status] || !startedAt) { return; }
    q("[data-duration]").textContent = duration(startedAt, null);
  }, 1000);

  log.scrollTop = log.scrollHeight;
  if (terminal[status]) { return; }
  connect();
})();
