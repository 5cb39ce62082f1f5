// Keep a service page's status current without reloading while the platform works on it.
(function () {
  var live = document.getElementById("live");
  if (!live) return;
  var url = live.getAttribute("data-status-url");
  var busy = live.getAttribute("data-busy") === "true";
  var initial = document.getElementById("status").className;
  function render(s) {
    var badge = document.getElementById("status");
    badge.textContent = s.status_label;
    badge.className = "badge s-" + s.status;
    document.getElementById("busy").hidden = !s.busy;
    var link = document.getElementById("url");
    link.textContent = "";
    if (s.url) {
      var a = document.createElement("a");
      a.href = s.url; a.textContent = s.url; link.appendChild(a);
    } else { link.textContent = "—"; }
    document.getElementById("error").textContent = s.error || "—";
    if (badge.className !== initial) document.getElementById("reload-hint").hidden = false;
    return s.busy || s.status === "provisioning" || s.status === "deleting";
  }
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (s && render(s)) setTimeout(poll, 1500);
        else if (s) setTimeout(poll, 15000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, busy ? 1000 : 15000);
})();
