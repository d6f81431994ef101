// A classification's page while a worker classifies: the progress bar and its words follow the job,
// and the page reloads once it has finished, to show the results.
(function () {
  "use strict";
  const state = document.getElementById("job-state");
  if (!state || state.dataset.finished === "1") return;
  const bar = state.querySelector(".progress");
  const text = document.getElementById("job-text");
  site.poll(state.dataset.statusUrl, (job) => {
    if (bar) {
      bar.setAttribute("aria-valuenow", job.percent);
      bar.firstElementChild.style.width = `${job.percent}%`;
    }
    text.textContent = job.text;
    if (job.finished) {
      window.location.reload();
      return false;
    }
    return true;
  }, { every: 1000 });
})();
