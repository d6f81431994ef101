// Likely wrong labels: one suspect at a time. A key clicks the button or follows the link that shows it, so a
// key does exactly what its button does: K keep, M move to the suggested class, X remove, arrows previous/next.
(function () {
  const suspect = document.getElementById("label-suspect");
  if (!suspect) return;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (event.target.closest("select, input, textarea, [contenteditable]")) return;
    const control = suspect.querySelector(`[data-key="${event.key.toLowerCase()}"]`);
    if (!control) return;
    event.preventDefault();
    control.click();
  });
})();
