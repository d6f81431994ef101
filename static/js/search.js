// "Try several settings": on the form, the preview (how many runs, how long each) follows the boxes
// ticked, asked of the server so it is worded once; on a search's page, the leaderboard redraws itself
// from the polled JSON (training_app/search_views.py `leaderboard`) until no run waits or trains.
(function () {
  "use strict";
  const { el, requestJson, poll } = window.site;
  const { statusUrl } = document.currentScript.dataset;

  const form = document.getElementById("search-form");
  if (form) {
    const preview = document.getElementById("search-preview");
    let asked = 0;
    async function update() {
      const mine = ++asked;  // only the latest question's answer is shown
      const query = new URLSearchParams(new FormData(form));
      query.delete("csrfmiddlewaretoken");
      const { ok, answer } = await requestJson(`${form.dataset.previewUrl}?${query}`);
      if (ok && mine === asked) preview.replaceChildren(el("strong", { textContent: answer.text }));
    }
    form.addEventListener("change", update);
  }

  if (!statusUrl) return;
  let drawn = "";
  function row(data) {
    return el("tr", { "data-run": data.id },
      el("td", { className: "num", textContent: data.place }),
      el("td", null, el("a", { href: data.url, textContent: `Run ${data.id}` })),
      el("td", { className: "wrap", textContent: data.settings }),
      el("td", { textContent: data.budget_text }),
      el("td", null, el("span", { className: `badge ${data.badge_classes}`, textContent: data.status_label }), " ",
        el("span", { className: "muted", textContent: data.epoch_text })),
      el("td", { className: "num", textContent: data.best_val_text }),
      el("td", { className: "num", textContent: data.test_text }));
  }
  poll(statusUrl, (board) => {
    document.getElementById("search-summary").textContent = board.summary;
    const key = JSON.stringify(board.rows);
    if (key !== drawn) {  // redrawn only when it changed
      drawn = key;
      document.getElementById("leaderboard-rows").replaceChildren(...board.rows.map(row));
    }
    const longer = document.getElementById("longer-form");
    longer.hidden = !board.best;
    if (board.best) document.getElementById("train-longer").textContent = board.best.text;
    // Runs waiting their turn in the search start as places free up: this poll starts them too.
    const going = board.active + board.waiting > 0;
    document.getElementById("stop-form").hidden = !going;
    return going;  // nothing changes once every run has ended and none waits its turn
  }, { every: 3000, delay: 3000 });
})();
