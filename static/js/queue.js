// The queue page: the server draws the runs; this fills in the workers (asking them takes about a
// second, too long to hold up the page) and redraws every section from the polled JSON.
// The texts come ready-made from the server, so nothing is worded or timed twice.
(function () {
  const { statusUrl } = document.currentScript.dataset;
  const POLL_MS = 2500;
  const { el, csrfToken } = window.site;

  function runLink(row) {
    return el("td", null, el("a", { href: row.url, textContent: `Run ${row.id}` }), ` on ${row.dataset}`);
  }

  // Rows are redrawn only when they changed, so a Cancel button does not vanish under the pointer.
  const drawn = {};
  function fill(id, rows, draw) {
    const key = JSON.stringify(rows);
    if (drawn[id] === key) return;
    drawn[id] = key;
    document.getElementById(`${id}-rows`).replaceChildren(...rows.map(draw));
    document.getElementById(`${id}-table`).hidden = rows.length === 0;
    const empty = document.getElementById(`${id}-empty`);
    if (empty) empty.hidden = rows.length > 0;
  }

  function waitingRow(row) {
    if (!row.mine) {
      return el("tr", { className: "other" }, el("td", { className: "num", textContent: row.place }),
        el("td", { colSpan: 4, className: "muted", textContent: row.text }));
    }
    const cancel = el("form", { method: "post", action: row.cancel_url },
      el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: csrfToken() }),
      el("input", { type: "hidden", name: "next", value: window.location.pathname }),
      el("button", { className: "secondary", type: "submit", textContent: "Cancel" }));
    return el("tr", { className: "mine" }, el("td", { className: "num", textContent: row.place }), runLink(row),
      el("td", { className: "settings", textContent: row.settings }), el("td", { textContent: row.waiting_text }),
      el("td", null, cancel));
  }

  function trainingRow(row) {
    const bar = el("div", { className: "progress" }, el("div"));
    bar.setAttribute("aria-label", "Training progress");
    bar.firstChild.style.width = `${row.percent}%`;
    const heard = row.stale ? el("span", { className: "stale-note", textContent: row.stale_text }) : row.heartbeat_text;
    return el("tr", { className: row.stale ? "stale" : "" }, runLink(row),
      el("td", { textContent: row.worker_host || "–" }),
      el("td", { className: "how-far" }, el("div", { textContent: `${row.phase} · ${row.epoch_text}` }), bar),
      el("td", { textContent: row.time_left_text || "–" }), el("td", null, heard));
  }

  function finishedRow(row) {
    return el("tr", null, runLink(row),
      el("td", null, el("span", { className: `badge ${row.badge_classes}`, textContent: row.status_label })),
      el("td", { className: "num", textContent: row.accuracy_text }), el("td", { textContent: row.when_text }));
  }

  function jobRow(row) {
    const tr = el("tr", null, el("td", { textContent: row.label }), el("td", { className: "num", textContent: row.queued }),
      el("td", { className: "num", textContent: row.running }), el("td", { className: "num", textContent: row.silent }));
    tr.dataset.kind = row.kind;
    return tr;
  }

  function workerItem(queue) {
    const title = el("strong", { textContent: queue.job[0].toUpperCase() + queue.job.slice(1) });
    const where = ` (queue “${queue.queue}”): `;
    if (queue.warning) {
      return el("li", { className: "none" }, title, where, el("span", { className: "warning", textContent: queue.warning }));
    }
    return el("li", null, title, where, `${site.count(queue.count, "worker")}: `, el("span", { className: "names", textContent: queue.workers.join(", ") }));
  }

  function hostItem(host) {
    const workers = el("ul", null, ...host.workers.map((worker) => el("li", { className: "names", textContent: worker.text })));
    return el("li", null, el("strong", { textContent: host.text }), workers);
  }

  function show(data) {
    document.getElementById("waiting-summary").textContent = data.waiting.summary;
    fill("waiting", data.waiting.rows, waitingRow);
    fill("training", data.training.rows, trainingRow);
    const others = document.getElementById("training-others");
    others.textContent = data.training.others_text;
    others.hidden = !data.training.others_text;
    fill("finished", data.finished, finishedRow);
    fill("jobs", data.jobs, jobRow);
    const error = document.getElementById("workers-error");
    error.textContent = data.workers.error;
    error.hidden = !data.workers.error;
    document.getElementById("workers-list").replaceChildren(...(data.workers.error ? [] : data.workers.queues.map(workerItem)));
    document.getElementById("hosts-list").replaceChildren(...data.workers.hosts.map(hostItem));
    document.getElementById("hosts").hidden = data.workers.hosts.length === 0;
  }

  site.poll(statusUrl, show, { every: POLL_MS });
})();
