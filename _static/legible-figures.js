// Figures never shrink below MIN_SCALE of their natural size, so that their smallest text stays
// legible. The book's figures are drawn at 100 dpi with no text under 8 pt (11.1 px at natural
// size; tests/test_plot.py checks both), so 0.81 keeps every label at 9 px or more. They are
// also drawn at most 840 px wide, so at 1280 px they fit the column (672 px) at 80 % or more;
// on a narrower screen, such as a phone, a figure wider than the column scrolls sideways
// inside it instead of shrinking.
(function () {
  const MIN_SCALE = 0.81;
  function hold(img) {
    img.style.minWidth = img.naturalWidth > 0 ? Math.round(img.naturalWidth * MIN_SCALE) + "px" : "";
  }
  function holdAll() {
    document.querySelectorAll(".cell_output img, figure img").forEach(function (img) {
      if (img.complete) { hold(img); } else { img.addEventListener("load", function () { hold(img); }); }
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", holdAll);
  } else {
    holdAll();
  }
})();
