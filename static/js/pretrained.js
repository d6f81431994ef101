// The staff page "Pretrained networks": while a download is waiting or running, ask the server
// how far it is and redraw each network's card from the JSON. The texts come ready-made from
// the server, so nothing is worded twice; once no download is going on, the page stops asking.
(function () {
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

  async function poll() {
    // A page in a background tab asks nothing; it catches up as soon as it is looked at again.
    if (document.hidden) return document.addEventListener("visibilitychange", poll, { once: true });
    let active = true;
    try {
      const response = await fetch(window.pretrainedStatusUrl, { headers: { Accept: "application/json" } });
      // After logging out the request lands on the login page: stop rather than poll it for ever.
      if (response.redirected || response.status === 404) return;
      if (response.ok) {
        const data = await response.json();
        data.networks.forEach(draw);
        active = data.active;
      }
    } catch (error) { /* the server is restarting: try again */ }
    if (active) setTimeout(poll, window.pretrainedPollMs);
  }

  const going = Array.from(document.querySelectorAll('[data-field="progress"]')).some((bar) => !bar.hidden);
  if (going) poll();
})();
