// Live updates, where a page asks for them. Everything in the console also works
// without JavaScript: a reload shows the same.
(function () {
  "use strict";
  if (!window.fetch) { return; }

  // Ask url every few seconds (data-poll on element); hand each 200 answer to use().
  // A logged-out session, or a page no longer this counsellor's, reloads to show why.
  // While the server cannot reach its data (503), or cannot be reached, a notice above
  // the element says what is shown may be out of date; it goes when an answer comes.
  function poll(element, url, accept, read, use) {
    var every = (parseInt(element.getAttribute("data-poll"), 10) || 3) * 1000;
    var notice = null;
    function outdated(now) {
      if (!notice && now) {
        notice = document.createElement("p");
        notice.className = "error outdated";
        notice.setAttribute("role", "status");
        notice.textContent = "This page cannot get the latest from the helpline just now, " +
          "so what it shows may be out of date. It keeps trying by itself.";
        element.parentNode.insertBefore(notice, element);
      }
      if (notice) { notice.hidden = !now; }
    }
    function check() {
      fetch(url(), {
        credentials: "same-origin",
        headers: { "Accept": accept },
        redirect: "manual"
      }).then(function (response) {
        outdated(response.status >= 500);
        if (response.status === 200) { return read(response); }
        if (response.status === 401 || response.status === 403 || response.status === 404 ||
            response.type === "opaqueredirect") {
          window.location.reload();
        }
        return null;
      }).then(function (body) { if (body) { use(body); } })
        .catch(function () { outdated(true); })
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
      var before = counts();
      live.innerHTML = html;
      last = Date.now();
      tell(before, counts());
    });
    alertSettings();
  }

  // What the queue holds now, from the fragment's data attributes.
  function counts() {
    var queue = live.querySelector(".queue");
    var read = function (name) { return parseInt(queue && queue.getAttribute(name), 10) || 0; };
    return {
      urgent: read("data-urgent"),
      waiting: read("data-waiting"),
      escalations: read("data-escalations")
    };
  }

  // Say only what changed (a screen reader would otherwise reread the whole table), and
  // make a new urgent request impossible to miss.
  function tell(before, after) {
    var announce = document.getElementById("announce");
    var alert = document.getElementById("urgent-alert");
    if (after.escalations > before.escalations) {
      var missed = "Missed check-in: someone may need help now";
      alert.textContent = missed + ". Open it at the top of the queue.";
      alert.hidden = false;
      ring(missed);
    } else if (after.urgent > before.urgent) {
      var what = after.urgent - before.urgent === 1 ? "New urgent request" :
        (after.urgent - before.urgent) + " new urgent requests";
      alert.textContent = what + ": take it next.";
      alert.hidden = false;
      ring(what);
    } else if (after.waiting !== before.waiting) {
      announce.textContent = after.waiting + " waiting" +
        (after.urgent ? ", " + after.urgent + " urgent" : "");
    }
  }

  var ALERTS = "helpline.alerts";

  // Sound and a notification, only if the counsellor turned them on (and the browser allows).
  function ring(what) {
    if (window.localStorage.getItem(ALERTS) !== "on") { return; }
    try {
      var Context = window.AudioContext || window.webkitAudioContext;
      var audio = new Context();
      var tone = audio.createOscillator();
      tone.frequency.value = 880;
      tone.connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.4);
    } catch (e) { /* no sound on this device */ }
    if (window.Notification && Notification.permission === "granted") {
      new Notification(what, { body: "Open the Helpline console to take it.", tag: "urgent" });
    }
  }

  function alertSettings() {
    var settings = document.getElementById("alert-settings");
    var button = document.getElementById("allow-alerts");
    var state = document.getElementById("alerts-state");
    if (!settings || !window.localStorage) { return; }
    settings.hidden = false;
    var show = function () {
      var on = window.localStorage.getItem(ALERTS) === "on";
      button.textContent = on ? "Turn off sound and notifications" :
        "Sound and notifications for urgent requests";
      button.setAttribute("aria-pressed", on ? "true" : "false");
      state.textContent = on ? "On." : "";
    };
    button.addEventListener("click", function () {
      var on = window.localStorage.getItem(ALERTS) === "on";
      window.localStorage.setItem(ALERTS, on ? "off" : "on");
      if (!on && window.Notification && Notification.permission === "default") {
        Notification.requestPermission();
      }
      show();
    });
    show();
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
