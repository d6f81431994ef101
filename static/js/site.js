// The helpers every page's script shares, loaded first on every page (templates/base.html):
//   site.el(tag, attrs, ...children)   an element, its attributes or properties, and its children
//   site.csrfToken()                   the token Django wants on a POST
//   site.requestJson(url, options)     fetch() with JSON asked for; {ok, status, answer, loggedOut}
//   site.poll(url, onData, options)    ask a JSON address again and again while onData wants it
//   site.count(n, one, many)           "1 image", "1,500 images" (as mlcore.words.count says it)
//   site.fileSize(bytes)               "512 bytes", "1.5 KB" (as mlcore.words.file_size and the
//                                      templates' filesizeformat say it)
//   site.chartLayout(yTitle)           the layout of the per-epoch curves (Plotly), epochs along the
//   site.chartConfig                   bottom, and their config: the run page and the compare page
// and on every page: a form, or its submit button, with data-confirm="question" asks before it
// is sent; an element with data-percent="40" is drawn 40 % wide. The pages' Content-Security-Policy
// allows no inline script or style (dlsite/settings.py), so no onsubmit="" and no style="" in
// the templates: these stand in for them.
(function () {
  "use strict";

  // Set as attributes (so they show in the HTML); everything else is set as a property.
  const ATTRIBUTES = ["type", "min", "max", "step", "title", "for", "id", "role", "name", "value", "disabled"];

  // el("td", { className: "num", textContent: "3" }, child, ...): null, undefined and false are left out.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-") || key.startsWith("aria-") || ATTRIBUTES.includes(key)) {
        node.setAttribute(key, value === true ? "" : value);
      } else node[key] = value;
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  // Any form's token on the page (the log-out form has one on every page), else the cookie's.
  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const cookie = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
    return cookie ? decodeURIComponent(cookie.split("=")[1]) : "";
  }

  // A redirect, a 401 or a 403 means the session has ended: the redirect leads to the login page,
  // whose HTML would otherwise pass for a success. A POST carries the CSRF token.
  async function requestJson(url, options = {}) {
    const method = (options.method || "GET").toUpperCase();
    const headers = { Accept: "application/json", ...(method === "GET" ? {} : { "X-CSRFToken": csrfToken() }),
                      ...(options.headers || {}) };
    const response = await fetch(url, { ...options, headers });
    const loggedOut = response.redirected || response.status === 401 || response.status === 403;
    const answer = loggedOut ? {} : await response.json().catch(() => ({}));
    return { ok: response.ok && !loggedOut, status: response.status, answer, loggedOut };
  }

  // Ask `url` every `every` ms (after `delay` ms the first time) and hand each answer to onData,
  // until onData returns false. A tab that is not being looked at asks nothing and catches up when
  // it is shown again; a session that ended (log-out) or an address that is gone (404) stops it;
  // an error (the server restarting, no network) makes it wait twice as long each time, up to
  // 30 s, and it goes back to its pace after the next answer. Returns {stop()}.
  function poll(url, onData, { every = 1000, delay = 0 } = {}) {
    let stopped = false;
    let wait = every;
    async function ask() {
      if (stopped) return;
      if (document.hidden) {
        document.addEventListener("visibilitychange", ask, { once: true });
        return;
      }
      try {
        const { ok, status, answer, loggedOut } = await requestJson(url);
        if (loggedOut || status === 404) return;
        if (ok) {
          wait = every;
          if (onData(answer) === false) return;
        } else {
          wait = Math.min(wait * 2, 30000);
        }
      } catch (error) {
        wait = Math.min(wait * 2, 30000);
      }
      if (!stopped) setTimeout(ask, wait);
    }
    setTimeout(ask, delay);
    return { stop() { stopped = true; } };
  }

  // A count with its noun: `many` defaults to `one` with an "s". The number is written the way the
  // server writes it ("1,500"), whatever the browser's language.
  function count(n, one, many) {
    return `${n.toLocaleString("en-US")} ${n === 1 ? one : many || `${one}s`}`;
  }

  // The rules of mlcore.words.file_size: 1 KB is 1024 bytes, one decimal, a half rounded to even
  // as Python's round() does, so that the page and the server never say the same size differently.
  const SIZE_UNITS = ["KB", "MB", "GB", "TB", "PB"];
  function fileSize(bytes) {
    const sign = bytes < 0 ? "-" : "";
    const whole = Math.abs(Math.trunc(bytes));
    if (whole < 1024) return `${sign}${whole} byte${whole === 1 ? "" : "s"}`;
    let power = 1;
    while (power < SIZE_UNITS.length && whole >= 1024 ** (power + 1)) power += 1;
    const tenths = (whole / 1024 ** power) * 10;
    let rounded = Math.round(tenths);
    if (Math.abs(tenths % 1) === 0.5 && rounded % 2 !== 0) rounded -= 1;
    return `${sign}${(rounded / 10).toFixed(1)} ${SIZE_UNITS[power - 1]}`;
  }

  document.addEventListener("submit", (event) => {
    const question = (event.submitter && event.submitter.dataset.confirm) || event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  function drawBars() {
    document.querySelectorAll("[data-percent]").forEach((bar) => { bar.style.width = `${bar.dataset.percent}%`; });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawBars);
  else drawBars();

  // The per-epoch charts of the run page and the compare page look alike: epochs along the bottom,
  // the legend under the chart, no Plotly toolbar.
  function chartLayout(yTitle) {
    return {
      margin: { t: 10, r: 10, b: 45, l: 55 }, xaxis: { title: { text: "Epoch" }, dtick: 1 },
      yaxis: { title: { text: yTitle } }, legend: { orientation: "h", y: -0.25 },
    };
  }
  const chartConfig = { displayModeBar: false, responsive: true };

  window.site = { el, csrfToken, requestJson, poll, count, fileSize, chartLayout, chartConfig };
})();
