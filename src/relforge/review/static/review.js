// relforge review: keyboard-first labelling. Plain JS, no dependencies, no build step.
// Keys on a pair page: 0-9 grade, j/k next/previous, s skip, f flag, n note, h judge, ? help.
(function () {
  "use strict";
  var body = document.body;
  var token = body.getAttribute("data-token");
  var main = document.getElementById("pair");
  var busy = false;

  function status(text, isError) {
    var el = document.getElementById("status");
    if (!el) return;
    el.textContent = text;
    el.className = isError ? "status error" : "status";
  }

  function post(url, data) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Review-Token": token },
      body: JSON.stringify(data),
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) throw new Error((j && j.error) || ("HTTP " + r.status));
        return j;
      });
    });
  }

  if (!main) { body.setAttribute("data-ready", "1"); return; }  // other pages need no script

  var pairId = parseInt(main.getAttribute("data-pair"), 10);
  var queue = main.getAttribute("data-queue");
  var note = document.getElementById("note");
  var judge = document.getElementById("judge");
  var help = document.getElementById("help");

  // time spent: only while the page is visible
  var spent = 0, since = document.visibilityState === "visible" ? performance.now() : null;
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") since = performance.now();
    else if (since !== null) { spent += performance.now() - since; since = null; }
  });
  function seconds() {
    var t = spent + (since !== null ? performance.now() - since : 0);
    return Math.round(t) / 1000;
  }

  function go(url) { window.location.assign(url); }

  function act(url, extra) {
    if (busy) return;
    busy = true;
    status("saving…");
    var data = { pair: pairId, queue: queue, seconds: seconds() };
    for (var k in extra) data[k] = extra[k];
    post(url, data).then(function (r) {
      if (r.next) go(r.next);
      else { busy = false; status("saved"); }
      if (r.flagged !== undefined) showFlag(r.flagged);
    }).catch(function (e) { busy = false; status("not saved: " + e.message, true); });
  }

  function grade(value) {
    act("/api/label", { grade: value, note: note.value.trim() || null });
  }

  function showFlag(on) {
    main.setAttribute("data-flagged", on ? "1" : "0");
    var b = document.getElementById("flag-state");
    if (b) b.textContent = on ? "flagged" : "";
  }

  function saveNote() {
    var text = note.value.trim();
    if (!text) return;
    post("/api/note", { pair: pairId, queue: queue, note: text }).then(function () {
      status("note saved");
    }).catch(function (e) { status("note not saved: " + e.message, true); });
  }

  function toggleJudge() {
    if (!judge) return;
    judge.hidden = !judge.hidden;
    try { localStorage.setItem("relforge-review-judge", judge.hidden ? "0" : "1"); } catch (e) {}
  }
  if (judge) {
    var pref = null;
    try { pref = localStorage.getItem("relforge-review-judge"); } catch (e) {}
    if (pref !== null) judge.hidden = pref !== "1";
  }

  var keys = {};
  Array.prototype.forEach.call(document.querySelectorAll("button.grade"), function (b) {
    var v = parseInt(b.getAttribute("data-grade"), 10);
    keys[b.getAttribute("data-key")] = v;
    b.addEventListener("click", function () { grade(v); });
  });
  function nav(where) { go("/" + where + "?queue=" + encodeURIComponent(queue) + "&from=" + pairId); }
  var actions = {
    j: function () { nav("next"); },
    k: function () { nav("prev"); },
    s: function () { act("/api/skip", {}); },
    f: function () { act("/api/flag", { flagged: main.getAttribute("data-flagged") !== "1" }); },
    n: function () { note.focus(); },
    h: toggleJudge,
    "?": function () { if (help) help.hidden = !help.hidden; },
  };
  Array.prototype.forEach.call(document.querySelectorAll("button[data-action]"), function (b) {
    b.addEventListener("click", function () { actions[b.getAttribute("data-action")](); });
  });

  note.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { note.blur(); e.preventDefault(); }
    else if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); saveNote(); note.blur(); }
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.isContentEditable)) return;
    if (Object.prototype.hasOwnProperty.call(keys, e.key)) { e.preventDefault(); grade(keys[e.key]); return; }
    if (Object.prototype.hasOwnProperty.call(actions, e.key)) { e.preventDefault(); actions[e.key](); }
  });
  body.setAttribute("data-ready", "1");
})();
