// The results page's tables on a phone: each row becomes a small card, one "column: value"
// line per cell, so that no value sits off-screen behind a sideways scroll. The labels come
// from the table's own header; custom.css lays the cards out below 768 px only.
(function () {
  function stack(table) {
    const headers = Array.from(table.querySelectorAll("thead tr:last-child th"))
      .map(function (th) { return th.textContent.trim(); });
    table.querySelectorAll("tbody tr").forEach(function (row) {
      Array.from(row.children).forEach(function (cell, i) {
        if (headers[i]) { cell.setAttribute("data-label", headers[i]); }
      });
    });
    table.classList.add("stacked");
  }
  function stackAll() {
    if (!document.querySelector("section#results-at-a-glance")) { return; }
    document.querySelectorAll(".cell_output table").forEach(stack);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", stackAll);
  } else {
    stackAll();
  }
})();
