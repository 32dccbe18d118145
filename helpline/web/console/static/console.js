// Live updates, where a page asks for them. Everything in the console also works
// without JavaScript: a reload shows the same.
(function () {
  "use strict";
  if (!window.fetch) { return; }

  // Ask url every few seconds (data-poll on element); hand each 200 answer to use().
  // A logged-out session, or a page no longer this counsellor's, reloads to show why.
  function poll(element, url, accept, read, use) {
    var every = (parseInt(element.getAttribute("data-poll"), 10) || 3) * 1000;
    function check() {
      fetch(url(), {
        credentials: "same-origin",
        headers: { "Accept": accept },
        redirect: "manual"
      }).then(function (response) {
        if (response.status === 200) { return read(response); }
        if (response.status === 401 || response.status === 403 || response.status === 404 ||
            response.type === "opaqueredirect") {
          window.location.reload();
        }
        return null;
      }).then(function (body) { if (body) { use(body); } })
        .catch(function () { /* offline for a moment: try again next time */ })
        .then(function () { window.setTimeout(check, every); });
    }
    window.setTimeout(check, every);
  }

  // Live queue: ask whether the queue changed (204 if not); swap in the new fragment.
  var live = document.getElementById("live");
  if (live) {
    var fullEvery = 60000;  // waits grow even when nothing changes
    var last = Date.now();
    var version = function () {
      var queue = live.querySelector(".queue");
      return queue ? queue.getAttribute("data-version") : "";
    };
    poll(live, function () {
      var stale = Date.now() - last > fullEvery;
      return live.getAttribute("data-live-url") + "?v=" + (stale ? "" : version());
    }, "text/html", function (response) { return response.text(); }, function (html) {
      live.innerHTML = html;
      last = Date.now();
    });
  }

  // Call status on a callback's page: show each change of the bridged call.
  var line = document.getElementById("call-status");
  if (line) {
    poll(line, function () { return line.getAttribute("data-status-url"); },
      "application/json", function (response) { return response.json(); }, function (body) {
        ["status", "caller"].forEach(function (leg) {
          var text = line.querySelector('[data-leg="' + leg + '"]');
          if (body[leg] && body[leg] !== text.textContent) {
            text.textContent = body[leg];
            text.parentNode.hidden = false;
            line.hidden = false;
          }
        });
      });
  }

  // Copy buttons: shown only where the browser can copy.
  Array.prototype.forEach.call(document.querySelectorAll("button.copy"), function (button) {
    if (!navigator.clipboard) { return; }
    var source = document.getElementById(button.getAttribute("data-copy"));
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        button.textContent = "Copied";
      });
    });
  });
})();
