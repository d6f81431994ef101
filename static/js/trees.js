// The run page's "Boosted trees" card: while a worker fits them, its bar and step follow the job
// (asked every 2 s); when it ends, the page is loaded again to show the figures and the choice.
(function () {
  const card = document.getElementById("trees");
  if (!card || !document.getElementById("trees-bar")) return;
  window.site.poll(card.dataset.stateUrl, (answer) => {
    if (!answer.busy) {
      window.location.reload();
      return false;
    }
    const bar = document.getElementById("trees-bar");
    bar.value = answer.percent;
    bar.textContent = `${answer.percent} %`;
    document.getElementById("trees-phase").textContent = answer.phase;
    return true;
  }, { every: 2000, delay: 1000 });
})();
