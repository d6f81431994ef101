// The dataset page: the class chart, and live progress while uploads are read.
(function () {
  const data = document.getElementById("class-data");
  if (data && window.Plotly) {
    const chart = JSON.parse(data.textContent);
    Plotly.newPlot("class-chart", [{
      type: "bar", x: chart.names, y: chart.counts, marker: { color: "#2563eb" },
      text: chart.counts, textposition: "auto",
    }], {
      margin: { t: 10, r: 10, b: 60, l: 50 }, xaxis: { type: "category", title: { text: "Class" } },
      yaxis: { title: { text: "Images" } },
    }, { displayModeBar: false, responsive: true });
  }

  const busy = document.querySelectorAll('.upload[data-status="queued"], .upload[data-status="running"]');
  if (!busy.length) return;
  async function poll() {
    const response = await fetch(window.datasetProgressUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) return setTimeout(poll, 2000);
    const { uploads } = await response.json();
    let running = false;
    for (const upload of uploads) {
      const bar = document.getElementById(`upload-bar-${upload.id}`);
      if (bar) bar.style.width = `${upload.percent}%`;
      const count = document.getElementById(`upload-count-${upload.id}`);
      if (count) count.textContent = `${upload.done} of ${upload.total} images read`;
      const status = document.getElementById(`upload-status-${upload.id}`);
      if (status) status.textContent = upload.status_label;
      if (upload.status === "queued" || upload.status === "running") running = true;
    }
    if (running) setTimeout(poll, 1000);
    else window.location.reload();
  }
  setTimeout(poll, 500);
})();
