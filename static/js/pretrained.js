// The staff page "Pretrained networks": while a download is waiting or running, ask the server
// how far it is and redraw each network's card from the JSON. The texts come ready-made from
// the server, so nothing is worded twice; once no download is going on, the page stops asking.
(function () {
  const { statusUrl, pollMs } = document.currentScript.dataset;
  function field(card, name) {
    return card.querySelector(`[data-field="${name}"]`);
  }

  function draw(row) {
    const card = document.getElementById(`network-${row.name}`);
    if (!card) return;
    const badge = field(card, "badge");
    badge.textContent = row.available ? "Available" : "Not available";
    badge.classList.toggle("done", row.available);
    field(card, "state").textContent = row.state_text + (row.size_text ? ` (${row.size_text})` : "");
    const download = row.download;
    field(card, "download").hidden = !download;
    if (download) {
      const bar = field(card, "progress");
      bar.hidden = !download.active;
      bar.firstElementChild.style.width = `${download.percent}%`;
      field(card, "download-text").textContent = download.text;
      const error = field(card, "error");
      error.textContent = download.error;
      error.hidden = !download.error;
    }
    field(card, "download-form").hidden = !row.can_download;
  }

  function show(data) {
    data.networks.forEach(draw);
    return data.active; // once no download is going on, the page stops asking
  }

  const going = Array.from(document.querySelectorAll('[data-field="progress"]')).some((bar) => !bar.hidden);
  if (going) site.poll(statusUrl, show, { every: Number(pollMs) });
})();
