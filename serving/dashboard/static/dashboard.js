// Draws every chart of the page: each <div class="chart" data-spec="ID"> takes the plotly figure JSON
// of the <script type="application/json" id="ID"> beside it. No inline script: the page's CSP forbids it.
(function () {
  function draw() {
    document.querySelectorAll("div.chart[data-spec]").forEach(function (el) {
      var spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
      Plotly.newPlot(el, spec.data, spec.layout, { displaylogo: false, responsive: true, staticPlot: false,
        modeBarButtonsToRemove: ["toImage", "sendDataToCloud"] });
    });
    document.body.dataset.chartsDrawn = "true";
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
