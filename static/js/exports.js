// The run page's "Use the model elsewhere" table: while a format is being made and checked, its row
// shows the worker's step with a moving bar, then its download; asked again every 2 s until none is busy.
(function () {
  const card = document.getElementById("exports");
  if (!card) return;
  const { el } = window.site;

  function actions(row) {
    const cell = el("td", { className: "export-actions" });
    if (row.download_url) cell.append(el("a", { className: "button", href: row.download_url }, `Download (${row.size})`));
    if (!row.busy) {
      const form = el("form", { method: "post", action: row.make_url },
        el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: window.site.csrfToken() }),
        el("button", { type: "submit", className: "secondary" }, row.status ? "Make again" : "Make it"));
      cell.append(form);
    }
    return cell;
  }

  function draw(rows) {
    for (const row of rows) {
      const line = card.querySelector(`tr[data-kind="${row.kind}"]`);
      if (!line) continue;
      const state = el("td", { className: "export-state" }, row.state);
      if (row.busy) state.prepend(el("progress"), " ");
      line.querySelector(".export-state").replaceWith(state);
      line.querySelector(".export-actions").replaceWith(actions(row));
    }
    return rows.some((row) => row.busy);
  }

  let polling = null;
  function watch() {
    if (polling) return;
    polling = window.site.poll(card.dataset.stateUrl, (answer) => {
      const busy = draw(answer.exports);
      if (!busy) polling = null;
      return busy;
    }, { every: 2000, delay: 1000 });
  }

  // "Make it" without leaving the page: the answer is the table as it is now.
  card.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { ok, answer } = await window.site.requestJson(event.target.action, { method: "POST" });
    if (ok) {
      draw(answer.exports);
      watch();
    } else {
      event.target.submit();  // let the server answer in a page (logged out, say)
    }
  });
  if (card.querySelector("progress")) watch();
})();
