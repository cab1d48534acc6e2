// One plotly figure, drawn in the page by the plotly.js the server serves from static/ (ui.chart).
// A script loaded by URL is kept compiled in the browser's cache, so a new tab draws at once;
// Streamlit's own plotly chunk costs every new tab about 0.7 s, cached or not. Streamlit calls this
// function when the chart first appears and again whenever its figure changes.

function loadPlotly(url) {
  // One script element per page, however many charts ask for it.
  window.genderLensPlotly ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = url;
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => {
      delete window.genderLensPlotly; // the next chart tries again
      reject(new Error(`plotly.js did not load from ${url}`));
    };
    document.head.append(script);
  });
  return window.genderLensPlotly;
}

export default function ({ parentElement, data }) {
  const { data: traces, layout } = JSON.parse(data.figure);
  let chart = parentElement.querySelector(".gender-chart");
  if (!chart) {
    chart = document.createElement("div");
    chart.className = "gender-chart";
    parentElement.append(chart);
  }
  chart.style.height = `${layout.height ?? 450}px`; // the chart's room, kept while plotly.js loads
  // The page's font; the colours stay the figure's own, which its white template keeps readable.
  layout.font = { family: getComputedStyle(parentElement).fontFamily, ...layout.font };

  loadPlotly(data.plotlyUrl)
    .then((Plotly) => {
      if (chart.failed) chart.replaceChildren(); // the message of an earlier try
      chart.failed = false;
      // The width is the container's, given outright at every draw and every resize: plotly's own
      // autosize keeps the width of the draw before, so a draw racing a resize could stay too wide.
      const width = chart.clientWidth || undefined; // 0 while hidden: plotly's default until shown
      Plotly.react(chart, traces, { ...layout, width }, { displaylogo: false, ...data.config });
      if (!chart.resizing) {
        // Columns and the sidebar change a chart's width without resizing the window.
        chart.resizing = new ResizeObserver(() => {
          const width = chart.clientWidth;
          if (width && chart._fullLayout?.width !== width) Plotly.relayout(chart, { width });
        });
        chart.resizing.observe(chart);
      }
    })
    .catch((error) => {
      chart.failed = true;
      chart.textContent = `The chart could not be drawn: ${error.message}.`;
    });

  return () => {
    chart.resizing?.disconnect();
    window.Plotly?.purge(chart);
  };
}
