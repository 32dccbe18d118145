// Live updates, where a page asks for them. Everything in the console also works
// without JavaScript: a reload shows the same.

// Live queue: ask whether the queue changed; swap in the new fragment when it did.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) { return; }
  var url = live.getAttribute("data-live-url");
  var every = (parseInt(live.getAttribute("data-poll"), 10) || 3) * 1000;
  var fullEvery = 60000;  // waits grow even when nothing changes
  var last = Date.now();

  function version() {
    var queue = live.querySelector(".queue");
    return queue ? queue.getAttribute("data-version") : "";
  }

  function check() {
    var stale = Date.now() - last > fullEvery;
    fetch(url + "?v=" + (stale ? "" : version()), {
      credentials: "same-origin",
      headers: { "Accept": "text/html" },
      redirect: "manual"
    }).then(function (response) {
      if (response.status === 401 || response.type === "opaqueredirect") {
        window.location.reload();  // the session ended: show the login page
        return null;
      }
      if (response.status !== 200) { return null; }
      return response.text();
    }).then(function (html) {
      if (html) { live.innerHTML = html; last = Date.now(); }
    }).catch(function () { /* offline for a moment: try again next time */ })
      .then(function () { window.setTimeout(check, every); });
  }

  window.setTimeout(check, every);
})();

// Call status on a callback's page: show each change of the bridged call as it happens.
(function () {
  "use strict";
  var line = document.getElementById("call-status");
  if (!line || !window.fetch) { return; }
  var url = line.getAttribute("data-status-url");
  var every = (parseInt(line.getAttribute("data-poll"), 10) || 3) * 1000;
  var text = line.querySelector("span");

  function check() {
    fetch(url, {
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      redirect: "manual"
    }).then(function (response) {
      if (response.status === 200) { return response.json(); }
      // Logged out, or the callback is no longer this counsellor's: show why.
      if (response.status === 401 || response.status === 403 || response.status === 404 ||
          response.type === "opaqueredirect") {
        window.location.reload();
      }
      return null;
    }).then(function (body) {
      if (body && body.status && body.status !== text.textContent) {
        text.textContent = body.status;
        line.hidden = false;
      }
    }).catch(function () { /* offline for a moment: try again next time */ })
      .then(function () { window.setTimeout(check, every); });
  }

  window.setTimeout(check, every);
})();
