// Likely wrong labels: one suspect at a time. A key clicks the button or follows the link that shows it, so a
// key does exactly what its button does: K keep, M move to the suggested class, X remove, arrows previous/next,
// Z undo the last decision (also once every suspect is decided).
(function () {
  const places = ["label-suspect", "label-review-undo"].map((id) => document.getElementById(id)).filter(Boolean);
  if (!places.length) return;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (event.target.closest("select, input, textarea, [contenteditable]")) return;
    const key = event.key.toLowerCase();
    const control = places.map((place) => place.querySelector(`[data-key="${key}"]`)).find(Boolean);
    if (!control) return;
    event.preventDefault();
    control.click();
  });
})();
