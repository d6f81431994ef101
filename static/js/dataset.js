// The dataset page: the class chart, and live progress while uploads are read.
(function () {
  const { progressUrl } = document.currentScript.dataset;
  const data = document.getElementById("class-data");
  if (data && window.Plotly) {
    const chart = JSON.parse(data.textContent);
    const config = { displayModeBar: false, responsive: true };
    // One bar per class, stacked by split: how many images each class has, and where they go.
    const splits = [["train", "Training", "#2563eb"], ["val", "Validation", "#f59e0b"], ["test", "Test", "#10b981"]];
    Plotly.newPlot("class-chart", splits.map(([key, label, color]) => ({
      type: "bar", name: label, x: chart.names, y: chart.splits[key], marker: { color },
    })), {
      barmode: "stack", margin: { t: 10, r: 10, b: 60, l: 50 }, legend: { orientation: "h", y: 1.12 },
      xaxis: { type: "category", title: { text: "Class" } }, yaxis: { title: { text: "Images" } },
    }, config);
    if (document.getElementById("size-chart")) {
      const sizes = chart.sizes;
      const largest = Math.max(...sizes.count);
      Plotly.newPlot("size-chart", [{
        type: "scatter", mode: "markers", x: sizes.width, y: sizes.height,
        text: sizes.count.map((n, i) => `${sizes.width[i]} × ${sizes.height[i]}: ${site.count(n, "image")}`),
        hoverinfo: "text",
        marker: { size: sizes.count.map((n) => 6 + 30 * Math.sqrt(n / largest)), color: "#2563eb", opacity: 0.6 },
      }], {
        margin: { t: 10, r: 10, b: 50, l: 60 },
        xaxis: { title: { text: "Width (pixels)" }, rangemode: "tozero" },
        yaxis: { title: { text: "Height (pixels)" }, rangemode: "tozero" },
      }, config);
    }
  }

  const busy = document.querySelectorAll('.upload[data-status="queued"], .upload[data-status="running"]');
  if (!busy.length) return;
  // Once the person is leaving for another page, a reload here would pull them back.
  let leaving = false;
  window.addEventListener("beforeunload", () => { leaving = true; });
  function show({ uploads }) {
    if (leaving) return false;
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
    if (!running) window.location.reload(); // the dataset page shows what the finished uploads added
    return running;
  }
  site.poll(progressUrl, show, { every: 1000, delay: 500 });
})();
