// The live run page: polls the run's JSON and redraws progress and curves without reloading.
(function () {
  const { statusUrl } = document.currentScript.dataset;
  const layout = site.chartLayout;
  const config = site.chartConfig;

  // Before the first epoch ends there is nothing to draw: a plain sentence instead of empty axes.
  function drawCurves(metrics) {
    const curves = document.getElementById("curves");
    curves.hidden = !metrics.length;
    document.getElementById("curves-waiting").hidden = Boolean(metrics.length);
    if (!metrics.length) return;
    const epochs = metrics.map((m) => m.epoch);
    const line = (key, name, dash) => ({ x: epochs, y: metrics.map((m) => m[key]), name, mode: "lines+markers", line: { dash } });
    Plotly.react("loss-chart", [line("loss", "training", "solid"), line("val_loss", "validation", "dot")], layout("Loss"), config);
    Plotly.react("accuracy-chart", [line("accuracy", "training", "solid"), line("val_accuracy", "validation", "dot")], layout("Accuracy"), config);
    drawLearningRate(metrics);
  }

  const SUPERSCRIPT_DIGITS = "⁰¹²³⁴⁵⁶⁷⁸⁹";
  function superscript(number) {
    return String(number).replace("-", "⁻").replace(/\d/g, (digit) => SUPERSCRIPT_DIGITS[digit]);
  }

  // A step size as plain decimals (0.000003), never in e-notation (3e-06), as the pages write it
  // (mlcore/words.py `decimal`); three significant digits.
  function plainDecimal(x) {
    if (!x) return "0";
    const decimals = Math.min(20, Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x)))));
    const text = Number(x.toPrecision(3)).toFixed(decimals);
    return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
  }

  // The step size of each epoch; on a log scale when a schedule has shrunk it tenfold or more.
  function drawLearningRate(metrics) {
    const known = metrics.filter((m) => m.learning_rate !== null && m.learning_rate !== undefined);
    const rates = known.map((m) => m.learning_rate);
    const lrLayout = layout("Step size");
    const positive = rates.filter((r) => r > 0);
    if (positive.length && Math.max(...positive) / Math.min(...positive) >= 10) {
      // One tick a power of ten, written with superscript characters: Plotly's own "power" format
      // raises the exponent with a style="" attribute, which the Content-Security-Policy refuses.
      const low = Math.floor(Math.log10(Math.min(...positive)));
      const high = Math.ceil(Math.log10(Math.max(...positive)));
      const powers = Array.from({ length: high - low + 1 }, (_, i) => low + i);
      Object.assign(lrLayout.yaxis, { type: "log", tickvals: powers.map((p) => 10 ** p),
                                      ticktext: powers.map((p) => `10${superscript(p)}`) });
    }
    lrLayout.showlegend = false;
    Plotly.react("lr-chart", [{
      x: known.map((m) => m.epoch), y: rates, name: "step size", mode: "lines+markers", line: { shape: "hv" },
      text: rates.map(plainDecimal), hovertemplate: "epoch %{x}: %{text}<extra></extra>",
    }], lrLayout, config);
  }

  function number(value) {
    return value >= 100 ? Math.round(value).toLocaleString("en") : String(value);
  }

  function speedText(status) {
    const parts = [];
    if (status.samples_per_s !== null) {
      parts.push(status.samples_per_s_estimated
        ? `about ${number(status.samples_per_s)} images a second (estimated from the steps so far)`
        : `${number(status.samples_per_s)} images a second`);
    }
    if (status.seconds_per_epoch !== null) parts.push(`${status.seconds_per_epoch} s an epoch (the latest)`);
    return parts.length ? `Speed: ${parts.join(" · ")}` : "";
  }

  function showText(id, text) {
    const element = document.getElementById(id);
    if (!element) return;
    element.textContent = text || "";
    element.hidden = !text;
  }

  function timeLeft(seconds) {
    if (seconds === null) return "";
    if (seconds < 60) return `about ${seconds} s left`;
    return `about ${Math.round(seconds / 60)} min left`;
  }

  function show(status) {
    document.getElementById("run-status").textContent = status.status_label;
    // A run that learned nothing, or was never tested, never reads as a plain success
    // ("Finished — learned nothing useful", "Finished, not tested").
    document.getElementById("run-status").className = `badge ${status.badge_classes}`;
    // Each phase fills the bar on its own (packing, looking with the pretrained network, training,
    // testing); one that cannot be counted (saving) shows a moving band instead.
    const running = status.status === "running";
    const counted = status.phase_percent !== null && status.phase_percent !== undefined;
    const bar = document.getElementById("run-bar");
    bar.style.width = `${running && counted ? status.phase_percent : status.percent}%`;
    bar.parentElement.classList.toggle("indeterminate", running && Boolean(status.phase) && !counted);
    let phase = status.phase_text || status.phase || "";
    if (status.cancel_requested && !status.is_final) phase = "Stopping at the end of this step…";
    document.getElementById("run-phase").textContent = phase;
    let parts = [];
    if (status.epoch && status.phase === "Training") {
      parts = [`Epoch ${status.epoch} of ${status.epochs}, step ${status.batch} of ${status.batches_per_epoch}`,
               `${status.percent}%`, status.phase_time_left_text];
    } else if (running && counted) {
      parts = [`${status.phase_percent}%`, status.phase_time_left_text];
    } else if (status.epoch) {
      parts = [`Epoch ${status.epoch} of ${status.epochs}`, `${status.percent}%`, timeLeft(status.seconds_left)];
    }
    const detail = parts.filter(Boolean).join(" · ");
    document.getElementById("run-detail").textContent = detail;
    showText("run-speed", speedText(status));
    showText("overfitting-hint", status.overfitting_hint);
    showText("chance-hint", status.chance_hint);
    showText("best-epoch-note", status.best_epoch_note);
    const where = document.getElementById("run-where");
    if (where && status.where) where.textContent = status.where;
    drawCurves(status.metrics);
  }

  function drawConfusion() {
    const data = document.getElementById("confusion-data");
    if (!data || data.textContent === "null") return;
    const matrix = JSON.parse(data.textContent);
    const names = JSON.parse(document.getElementById("class-names").textContent);
    Plotly.newPlot("confusion-chart", [{
      // A pixel between cells keeps Plotly off its "fast" drawing, which sets a style="" attribute
      // that the pages' Content-Security-Policy refuses; it also sets the cells apart.
      type: "heatmap", z: matrix, x: names, y: names, showscale: false, xgap: 1, ygap: 1,
      colorscale: [[0, "#f8fafc"], [1, "#1d4ed8"]],
      text: matrix, texttemplate: "%{text}", hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>",
    }], {
      margin: { t: 10, r: 10, b: 60, l: 70 },
      xaxis: { title: { text: "Predicted class" }, type: "category", side: "bottom" },
      yaxis: { title: { text: "True class" }, type: "category", autorange: "reversed" },
    }, config);
    // A cell opens the test pictures behind it (training_app/pictures.html).
    const chart = document.getElementById("confusion-chart");
    chart.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (!point) return;
      const query = new URLSearchParams({ true: point.y, predicted: point.x });
      window.location.href = `${chart.dataset.picturesUrl}?${query}`;
    });
  }

  let status = JSON.parse(document.getElementById("run-data").textContent);
  show(status);
  drawConfusion();
  if (status.is_final) return;

  site.poll(statusUrl, (answer) => {
    status = answer;
    show(status);
    if (!status.is_final) return true;
    window.location.reload(); // the evaluation is drawn by the server: fetch it once the run has ended
    return false;
  }, { every: 1000, delay: 1000 });
})();
