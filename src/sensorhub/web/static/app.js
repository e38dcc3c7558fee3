/* sensorhub web UI: small progressive enhancements. Every page works without this file. */
(function () {
  "use strict";

  // Confirm dialogs for destructive forms (Revoke, Rotate, Remove, Disable).
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var msg = form.getAttribute && form.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) {
      ev.preventDefault();
    }
  });

  // Copy buttons: data-copy="<id of an input or code element>".
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var ta = document.createElement("textarea");
      ta.value = text;
      ta.setAttribute("readonly", "");
      ta.className = "offscreen";
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(ta);
      if (ok) { resolve(); } else { reject(new Error("copy failed")); }
    });
  }

  // One polite live region announces "Copied" to screen readers.
  var live = document.createElement("div");
  live.className = "sr-only";
  live.setAttribute("role", "status");
  live.setAttribute("aria-live", "polite");
  document.body.appendChild(live);

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest ? ev.target.closest("[data-copy]") : null;
    if (!btn) { return; }
    var el = document.getElementById(btn.getAttribute("data-copy"));
    if (!el) { return; }
    var text = el.value !== undefined && el.tagName === "INPUT" ? el.value : el.textContent;
    var label = btn.firstChild;
    var original = label.nodeValue;
    copyText(text).then(function () {
      label.nodeValue = "Copied";
      btn.classList.add("is-done");
      live.textContent = "Copied to the clipboard";
    }, function () {
      if (el.select) { el.select(); }
      label.nodeValue = "Press Ctrl+C";
    }).then(function () {
      window.setTimeout(function () { label.nodeValue = original; btn.classList.remove("is-done"); }, 2000);
    });
  });

  // Select the whole secret when the field gets focus.
  document.querySelectorAll("input.secret").forEach(function (el) {
    el.addEventListener("focus", function () { el.select(); });
  });

  // Expiry: show the date field only for "on a date…".
  document.querySelectorAll("select[data-toggle-custom]").forEach(function (sel) {
    var target = document.getElementById(sel.getAttribute("data-toggle-custom"));
    if (!target) { return; }
    function sync() { target.hidden = sel.value !== "custom"; }
    sel.addEventListener("change", function () {
      sync();
      if (sel.value === "custom") { var i = target.querySelector("input"); if (i) { i.focus(); } }
    });
    sync();
  });

  // Tabs for the code examples (without JS they are simply stacked).
  document.querySelectorAll("[data-tabs]").forEach(function (box, n) {
    var panels = Array.prototype.slice.call(box.querySelectorAll(".tab-panel"));
    if (panels.length < 2) { return; }
    var list = document.createElement("div");
    list.setAttribute("role", "tablist");
    list.setAttribute("aria-label", "Examples");
    list.className = "tablist";
    var tabs = panels.map(function (panel, i) {
      var tab = document.createElement("button");
      tab.type = "button";
      tab.id = "tab-" + n + "-" + i;
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-controls", panel.id);
      tab.textContent = panel.getAttribute("data-tab-label");
      panel.setAttribute("role", "tabpanel");
      panel.setAttribute("aria-labelledby", tab.id);
      panel.setAttribute("tabindex", "0");
      list.appendChild(tab);
      return tab;
    });
    function select(i, focus) {
      tabs.forEach(function (t, j) {
        var on = i === j;
        t.setAttribute("aria-selected", on ? "true" : "false");
        t.tabIndex = on ? 0 : -1;
        panels[j].hidden = !on;
      });
      if (focus) { tabs[i].focus(); }
    }
    tabs.forEach(function (t, i) {
      t.addEventListener("click", function () { select(i, false); });
      t.addEventListener("keydown", function (ev) {
        if (ev.key === "ArrowRight") { select((i + 1) % tabs.length, true); ev.preventDefault(); }
        if (ev.key === "ArrowLeft") { select((i - 1 + tabs.length) % tabs.length, true); ev.preventDefault(); }
      });
    });
    box.classList.add("has-tabs");
    box.insertBefore(list, box.firstChild);
    select(0, false);
  });

  // After creating or rotating, move focus to the revealed secret so keyboard and screen-reader
  // users land on it.
  var reveal = document.getElementById("reveal");
  if (reveal) {
    var secret = document.getElementById("new-token");
    (secret || reveal).focus();
  }

  // Data page: new values of the chosen device as they are stored (Server-Sent Events, /data/live).
  var live = document.querySelector("[data-live-url]");
  if (live && window.EventSource) {
    var status = document.getElementById("live-status");
    var table = document.getElementById("live-table");
    var rows = document.getElementById("live-rows");
    var source = new EventSource(live.getAttribute("data-live-url"));
    source.addEventListener("ready", function () {
      status.textContent = "Listening: new values appear here as they are stored.";
    });
    source.addEventListener("message", function (ev) {
      var v = JSON.parse(ev.data);
      var tr = document.createElement("tr");
      var value = typeof v.value === "number" ? String(v.value) : JSON.stringify(v.value);
      [v.time.replace("T", " ").replace("Z", ""), v.attribute, value + (v.unit ? " " + v.unit : "")]
        .forEach(function (text) {
          var td = document.createElement("td");
          td.textContent = text;
          tr.appendChild(td);
        });
      tr.className = "live-row";
      rows.insertBefore(tr, rows.firstChild);
      while (rows.children.length > 50) { rows.removeChild(rows.lastChild); }
      table.hidden = false;
    });
    source.addEventListener("end", function (ev) {
      source.close();
      status.textContent = "Stopped: " + JSON.parse(ev.data).reason + ". Reload the page to listen again.";
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) { status.textContent = "Disconnected. Reload the page to listen again."; }
      else { status.textContent = "Reconnecting…"; }
    };
  }

  // Rule forms: show only the fields of the chosen condition (data-conditions="above below …" on each
  // field's wrapper; without this script every field is shown and the hint says which are used).
  Array.prototype.forEach.call(document.querySelectorAll("select[name=condition]"), function (sel) {
    var form = sel.form;
    function sync() {
      Array.prototype.forEach.call(form.querySelectorAll("[data-conditions]"), function (el) {
        var shown = el.getAttribute("data-conditions").split(" ").indexOf(sel.value) >= 0;
        el.hidden = !shown;
      });
    }
    sel.addEventListener("change", sync);
    sync();
  });
})();
