// Progressive enhancement for the staff console. Every action works without this file (plain
// form posts); it adds: confirmation of destructive actions, live countdowns, self-refreshing
// sections, the print button, and Enter-to-submit for barcode scanners (native in forms).
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  }, true);

  function countdowns() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = Math.floor((Date.parse(el.getAttribute("data-deadline")) - now) / 1000);
      if (left <= 0) { el.textContent = "已超时"; el.classList.add("overdue"); return; }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = "剩余 " + (h ? h + " 小时 " : "") + m + " 分 " + (h ? "" : s + " 秒");
      el.classList.toggle("urgent", left < 3600);
    });
  }
  countdowns();
  setInterval(countdowns, 1000);

  // Sections marked data-refresh="seconds" reload themselves from the same page, unless the
  // user is typing in one of their forms.
  document.querySelectorAll("[data-refresh]").forEach(function (section) {
    var every = parseInt(section.getAttribute("data-refresh"), 10) * 1000;
    setInterval(function () {
      if (section.contains(document.activeElement) && document.activeElement.tagName !== "BODY") { return; }
      fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(section.id);
          if (fresh) { section.innerHTML = fresh.innerHTML; countdowns(); }
        })
        .catch(function () { /* keep the last view; the next tick tries again */ });
    }, every);
  });

  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });
})();
