// Sorts any <table data-sortable> by the column whose header is clicked; a second click reverses it.
// A cell sorts by its data-sort-value when it has one, else by its text. Numbers (also "93.5%")
// compare as numbers, text as a person reads it ("run 9" before "run 10"). Empty cells ("" or "–")
// always go last. A header with data-sort="none" is left alone; data-sort-first="descending"
// makes its first click sort from the highest. The header sorted by carries aria-sort.
(function () {
  const { el } = window.site;
  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  const NUMBER = /^[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?\s*%?$/i;

  function keyOf(row, index) {
    const cell = row.cells[index];
    if (!cell) return "";
    const value = cell.dataset.sortValue !== undefined ? cell.dataset.sortValue : cell.textContent;
    return value.trim();
  }

  function isEmpty(key) {
    return key === "" || key === "–" || key === "-";
  }

  function compare(a, b) {
    if (NUMBER.test(a) && NUMBER.test(b)) return parseFloat(a) - parseFloat(b);
    return collator.compare(a, b);
  }

  function sortBy(table, header, index) {
    const current = header.getAttribute("aria-sort");
    const first = header.dataset.sortFirst === "descending" ? "descending" : "ascending";
    const direction = current === first ? (first === "ascending" ? "descending" : "ascending") : first;
    const sign = direction === "ascending" ? 1 : -1;
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).map((row, position) => ({ row, position, key: keyOf(row, index) }));
    rows.sort((x, y) => {
      const xEmpty = isEmpty(x.key), yEmpty = isEmpty(y.key);
      if (xEmpty || yEmpty) return xEmpty === yEmpty ? x.position - y.position : (xEmpty ? 1 : -1);
      return sign * compare(x.key, y.key) || x.position - y.position;
    });
    rows.forEach(({ row }) => body.appendChild(row));
    table.querySelectorAll("thead th[aria-sort]").forEach((th) => th.removeAttribute("aria-sort"));
    header.setAttribute("aria-sort", direction);
  }

  function setUp(table) {
    if (table.dataset.sortReady) return;
    table.dataset.sortReady = "yes";
    const headers = table.tHead ? Array.from(table.tHead.rows[0].cells) : [];
    headers.forEach((header, index) => {
      if (header.dataset.sort === "none") return;
      const button = el("button", { type: "button", className: "sort", title: "Sort by this column" },
                        Array.from(header.childNodes));
      header.appendChild(button);
      button.addEventListener("click", () => sortBy(table, header, index));
    });
  }

  function setUpAll() {
    document.querySelectorAll("table[data-sortable]").forEach(setUp);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUpAll);
  else setUpAll();
})();
