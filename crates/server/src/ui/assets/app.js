// The web console's one script (served as /ui/app.js; no inline script is
// allowed by the console's Content-Security-Policy). Every page works
// without it but two conveniences: a policy file read into the plan form,
// and a migration's progress followed as it runs.
"use strict";
(function () {
  // Plan: a chosen file's text goes into the form's text area.
  var file = document.getElementById("policy-file");
  var area = document.getElementById("policy");
  if (file && area) {
    file.addEventListener("change", function () {
      var f = file.files && file.files[0];
      if (!f) { return; }
      var reader = new FileReader();
      reader.onload = function () { area.value = String(reader.result); };
      reader.readAsText(f);
    });
  }

  // Forms that ask first (cancelling a migration).
  Array.prototype.forEach.call(document.querySelectorAll("button[data-confirm]"), function (b) {
    b.addEventListener("click", function (ev) {
      if (!window.confirm(b.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });

  // Migration: poll the job's status and update the page in place.
  var box = document.getElementById("migration");
  if (!box || !box.getAttribute("data-poll")) { return; }
  var url = box.getAttribute("data-poll");
  var set = function (id, text) {
    var e = document.getElementById(id);
    if (e && text !== undefined && text !== null) { e.textContent = String(text); }
  };
  var tick = function () {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.assign("/ui/login"); return null; }
        if (!r.ok) { throw new Error("status " + r.status); }
        return r.json();
      })
      .then(function (m) {
        if (!m) { return; }
        set("m-job", m.job === null ? "-" : m.job);
        set("m-state", m.state);
        set("m-units", m.units_text);
        set("m-bytes", m.bytes_text);
        set("m-rate", m.rate_text);
        set("m-eta", m.eta_text);
        set("m-percent", m.percent + "%");
        var bar = document.getElementById("m-bar");
        if (bar) { bar.value = m.percent; bar.textContent = m.percent + "%"; }
        box.setAttribute("data-state", m.state);
        window.setTimeout(tick, m.finished ? 3000 : 1000);
      })
      .catch(function () { window.setTimeout(tick, 3000); });
  };
  window.setTimeout(tick, 1000);
})();
