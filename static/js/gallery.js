// The gallery: pick images (tick, Ctrl/Cmd-click, Shift-click for a range, whole page),
// act on them through the action bar, and look at one large in a dialog.
// Everything it needs is on the page already; it makes no requests of its own.
(function () {
  const filters = document.getElementById("gallery-filters");
  // Choosing a filter shows its images at once; the Show button stays for keyboards.
  if (filters) {
    filters.querySelectorAll("select").forEach((select) => {
      select.addEventListener("change", () => filters.submit());
    });
  }

  const gallery = document.getElementById("gallery");
  if (!gallery) return;
  const tiles = Array.from(gallery.querySelectorAll(".tile"));
  const ticks = tiles.map((tile) => tile.querySelector(".tick"));
  const actionBar = document.getElementById("bulk-form");
  const selectedCount = document.getElementById("selected-count");
  const actionCount = document.getElementById("action-count");
  let lastClicked = null; // the index a Shift-click range starts from

  function showSelection() {
    const selected = ticks.filter((tick) => tick.checked).length;
    selectedCount.textContent = `${selected} selected`;
    actionCount.textContent = `With the ${site.count(selected, "selected image")}:`;
    actionBar.hidden = selected === 0;
    tiles.forEach((tile, index) => tile.classList.toggle("selected", ticks[index].checked));
  }

  // Shift-click: everything from the last clicked image to this one takes this one's new state.
  function choose(index, checked, extendRange) {
    if (extendRange && lastClicked !== null) {
      const [from, to] = [Math.min(lastClicked, index), Math.max(lastClicked, index)];
      for (let i = from; i <= to; i += 1) ticks[i].checked = checked;
    } else {
      ticks[index].checked = checked;
    }
    lastClicked = index;
    showSelection();
  }

  ticks.forEach((tick, index) => {
    // The browser has already flipped the box by the time "click" arrives.
    tick.addEventListener("click", (event) => choose(index, tick.checked, event.shiftKey));
  });

  tiles.forEach((tile, index) => {
    tile.querySelector(".open").addEventListener("click", (event) => {
      if (event.shiftKey) choose(index, true, true);
      else if (event.ctrlKey || event.metaKey) choose(index, !ticks[index].checked, false);
      else openViewer(index);
    });
  });

  document.getElementById("select-page").addEventListener("click", () => {
    ticks.forEach((tick) => { tick.checked = true; });
    showSelection();
  });
  document.getElementById("clear-selection").addEventListener("click", () => {
    ticks.forEach((tick) => { tick.checked = false; });
    lastClicked = null;
    showSelection();
  });

  const viewer = document.getElementById("viewer");
  const viewerImage = document.getElementById("viewer-image");
  const viewerChange = document.getElementById("viewer-change");
  const VIEWER_WIDTH = 512; // CSS pixels, as in gallery.css
  let shown = 0;

  function showInViewer(index) {
    shown = (index + tiles.length) % tiles.length;
    const data = tiles[shown].dataset;
    viewerImage.src = data.full;
    viewerImage.alt = data.name;
    document.getElementById("viewer-name").textContent = data.name;
    document.getElementById("viewer-size").textContent = `${data.width} × ${data.height} pixels`;
    // Blown-up small images (28-pixel digits) stay crisp squares; shrunk large photos stay smooth.
    viewerImage.classList.toggle("pixelated", Number(data.width) < VIEWER_WIDTH);
    document.getElementById("viewer-label").textContent = data.label;
    document.getElementById("viewer-split").textContent = data.split;
    document.getElementById("viewer-conflict").hidden = data.conflict !== "yes";
    // Its own address for the move, inbox and remove buttons; after the change the page comes back
    // with this picture open again (the #view- fragment), so one can go on to the next.
    viewerChange.querySelectorAll("form").forEach((form) => {
      form.action = data.change;
      form.elements.next.value = `${window.location.pathname}${window.location.search}#view-${data.id}`;
    });
    const to = document.getElementById("viewer-to");
    if (data.class) to.value = data.class;
    document.getElementById("viewer-inbox").hidden = !data.class;
  }

  function openViewer(index) {
    showInViewer(index);
    if (!viewer.open) viewer.showModal();
  }

  document.getElementById("viewer-previous").addEventListener("click", () => showInViewer(shown - 1));
  document.getElementById("viewer-next").addEventListener("click", () => showInViewer(shown + 1));
  document.getElementById("viewer-close").addEventListener("click", () => viewer.close());
  viewer.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") showInViewer(shown - 1);
    else if (event.key === "ArrowRight") showInViewer(shown + 1);
    else if (!event.ctrlKey && !event.metaKey && !event.altKey && !event.target.closest("select")
             && ["i", "x"].includes(event.key.toLowerCase())) {
      const button = viewerChange.querySelector(`button[data-key="${event.key.toLowerCase()}"]`);
      if (button.hidden) return;
      button.click();
    } else return;
    event.preventDefault();
  });
  // Z (outside the large view) presses the page's Undo button, when there is one.
  document.addEventListener("keydown", (event) => {
    if (viewer.open || event.ctrlKey || event.metaKey || event.altKey || event.key.toLowerCase() !== "z"
        || event.target.closest("select, input, textarea")) return;
    const undo = document.querySelector("#picture-undo button[data-key=z]");
    if (!undo) return;
    event.preventDefault();
    undo.click();
  });
  // A click on the dimmed page around the dialog closes it, as people expect of a pop-up.
  // Such a click lands on the dialog element itself, outside its box.
  viewer.addEventListener("click", (event) => {
    if (event.target !== viewer) return;
    const box = viewer.getBoundingClientRect();
    const inside = event.clientX >= box.left && event.clientX <= box.right
      && event.clientY >= box.top && event.clientY <= box.bottom;
    if (!inside) viewer.close();
  });
  viewer.addEventListener("close", () => {
    // Back to the image that was open, so keyboard users keep their place.
    tiles[shown].querySelector(".open").focus();
  });

  // After "Back", the browser may restore ticked boxes; the count and bar follow them.
  showSelection();
  // Back from a change made in the large view: the picture it showed, open again.
  const opened = /^#view-(\d+)$/.exec(window.location.hash);
  const again = opened ? tiles.findIndex((tile) => tile.dataset.id === opened[1]) : -1;
  if (again >= 0) openViewer(again);
})();
