// On a phone, figures never shrink below MIN_SCALE of their natural size, so that their smallest
// text stays legible: a figure wider than the column scrolls sideways inside it instead. The
// book's figures are drawn at 100 dpi with no text under 8 pt (11.1 px at natural size;
// tests/test_plot.py checks both), so 0.81 keeps every label at 9 px or more. On a wider screen
// a figure keeps fitting the column, with all its panels in view.
(function () {
  const MIN_SCALE = 0.81;
  const PHONE = window.matchMedia("(max-width: 767px)");
  function hold(img) {
    img.style.minWidth = PHONE.matches && img.naturalWidth > 0
      ? Math.round(img.naturalWidth * MIN_SCALE) + "px" : "";
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
  PHONE.addEventListener("change", holdAll);
})();
