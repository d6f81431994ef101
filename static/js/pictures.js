// The test pictures behind a cell of the confusion matrix: keys for the buttons of the picture that has
// the focus (tabbed or clicked to). A key clicks the button that shows it, so a key does exactly what
// its button does; Z presses the page's Undo button.
(function () {
  const list = document.getElementById("test-pictures");
  if (!list) return;
  list.querySelectorAll(".test-picture").forEach((picture) => {
    // A click anywhere on the card (not on its controls) gives it the focus its keys act on.
    picture.addEventListener("click", (event) => {
      if (!event.target.closest("a, button, select, input, label")) picture.focus();
    });
  });
  // Back from a change: the picture it was made to has the focus again, so its keys go on working.
  const changed = /^#picture-\d+$/.test(window.location.hash) && document.querySelector(window.location.hash);
  if (changed) changed.focus();
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.target.closest("select, input, textarea")) return;
    const key = event.key.toLowerCase();
    let button = null;
    if (key === "z") {
      button = document.querySelector("#picture-undo button[data-key=z]");
    } else {
      const picture = event.target.closest(".test-picture");
      if (picture) button = picture.querySelector(`button[data-key="${key}"]`);
    }
    if (!button) return;
    event.preventDefault();
    button.click();
  });
})();
