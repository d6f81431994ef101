// The API tokens page: a "Copy" button on each command (site.js asks before a token is revoked).
(function () {
  "use strict";
  const { el } = window.site;

  // Copies the command's text; where the browser refuses (an address not served over HTTPS, for
  // one), selects it instead so that Ctrl+C copies it.
  async function copy(pre, button) {
    try {
      await navigator.clipboard.writeText(pre.textContent);
      button.textContent = "Copied";
    } catch (error) {
      window.getSelection().selectAllChildren(pre);
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  }

  for (const pre of document.querySelectorAll("pre.command")) {
    const button = el("button", { type: "button", className: "secondary copy", text: "Copy",
                                  "aria-label": "Copy this command" });
    button.addEventListener("click", () => copy(pre, button));
    pre.before(el("div", { className: "copy-row" }, button));
  }
})();
