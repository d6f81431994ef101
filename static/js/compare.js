// The compare page: each run's loss and accuracy per epoch on one chart each, a colour a run (the
// colour of its column in the tables below), training solid and validation dotted, as on the run page.
(function () {
  // Each run's colour beside its name: set here, as the pages' Content-Security-Policy refuses style="".
  document.querySelectorAll(".swatch[data-colour]").forEach((swatch) => {
    swatch.style.backgroundColor = swatch.dataset.colour;
  });

  const data = document.getElementById("compare-curves");
  if (!data) return;
  const runs = JSON.parse(data.textContent);

  function lines(trainingKey, validationKey) {
    return runs.flatMap((run) => {
      const epochs = run.metrics.map((m) => m.epoch);
      const line = (key, what, dash) => ({
        x: epochs, y: run.metrics.map((m) => m[key]), name: `${run.name}, ${what}`, legendgroup: String(run.id),
        mode: "lines+markers", line: { color: run.colour, dash }, marker: { color: run.colour },
        hovertemplate: `${run.name}, ${what}, epoch %{x}: %{y:.3f}<extra></extra>`,
      });
      return [line(trainingKey, "training", "solid"), line(validationKey, "validation", "dot")];
    });
  }

  Plotly.newPlot("compare-loss-chart", lines("loss", "val_loss"), site.chartLayout("Loss (lower is better)"),
                 site.chartConfig);
  Plotly.newPlot("compare-accuracy-chart", lines("accuracy", "val_accuracy"),
                 site.chartLayout("Accuracy (share right)"), site.chartConfig);
})();
