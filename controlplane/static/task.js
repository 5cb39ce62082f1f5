// Show a long task's progress until it is done, without reloading the page.
(function () {
  var box = document.getElementById("task");
  if (!box) return;
  var status = box.getAttribute("data-status");
  if (status === "done" || status === "failed") return;
  function poll() {
    fetch(box.getAttribute("data-url"), {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (t) {
        document.getElementById("bar").value = t.progress;
        document.getElementById("pct").textContent = t.progress + " %";
        document.getElementById("msg").textContent = t.message || "";
        if (t.status === "done") { document.getElementById("done").hidden = false; return; }
        if (t.status === "failed") {
          document.getElementById("failed").hidden = false;
          document.getElementById("err").textContent = t.message || ""; return;
        }
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 500);
})();
