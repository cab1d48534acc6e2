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

// The keys of a plotly figure that hold colours (color, bgcolor, colors, colorscale, colorway…).
const COLOUR_KEY = /color(s|scale|way)?$/i;

// The figure in the page's theme. Figures are drawn for a light page (gender/plots.py); on a dark
// one each colour of plots.ON_DARK becomes its counterpart, a name --st-… the page's colour of that
// name (Streamlit gives a component its theme as CSS variables, and calls it again when the viewer
// switches theme). Only values under colour keys change: a category code "white" stays a label.
function themed(figure, onDark, style) {
  if (style.colorScheme !== "dark") return figure; // Streamlit's own verdict on its theme
  const swaps = new Map(
    Object.entries(onDark).map(([from, to]) => [
      from.toLowerCase(),
      to.startsWith("--") ? style.getPropertyValue(to).trim() : to,
    ]),
  );
  const swap = (value, colour) => {
    if (Array.isArray(value)) return value.map((item) => swap(item, colour));
    if (value !== null && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, swap(item, colour || COLOUR_KEY.test(key))]));
    }
    return colour && typeof value === "string" ? (swaps.get(value.toLowerCase()) ?? value) : value;
  };
  return swap(figure, false);
}

// Horizontal bars' labels get a left margin of ~7 px a character (plots._label_margin). On a phone
// that took nearly the whole chart and left the bars a sliver: the margin is held to LABEL_SHARE of
// the width, and each label cut to fit it (hovering a bar still names it in full).
const LABEL_SHARE = 0.5;
const PX_PER_CHARACTER = 7;

// Plotly's label text escapes "&", "<" and ">" as entities (plots.plotly_text): cut the text, not an entity.
const unescaped = (label) => label.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
const escaped = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

// The layout for a chart `width` pixels wide.
function fitted(traces, layout, width) {
  const left = layout.margin?.l;
  const room = Math.floor(width * LABEL_SHARE);
  if (!width || !left || left <= room) return { ...layout, width };
  const characters = Math.max(3, Math.floor((room - 20) / PX_PER_CHARACTER));
  const labels = [...new Set(traces.filter((trace) => trace.orientation === "h").flatMap((trace) => trace.y ?? []))];
  const cut = (label) => {
    const text = unescaped(String(label));
    return text.length > characters ? escaped(text.slice(0, characters - 1)) + "…" : label;
  };
  return {
    ...layout,
    width,
    margin: { ...layout.margin, l: room },
    yaxis: { ...layout.yaxis, tickmode: "array", tickvals: labels, ticktext: labels.map(cut) },
  };
}

export default function ({ parentElement, data }) {
  const style = getComputedStyle(parentElement);
  const { data: traces, layout } = themed(JSON.parse(data.figure), data.onDark ?? {}, style);
  let chart = parentElement.querySelector(".gender-chart");
  if (!chart) {
    chart = document.createElement("div");
    chart.className = "gender-chart";
    parentElement.append(chart);
  }
  // This call's: Streamlit may call a remount's function before the unmount's cleanup, on the same
  // element, and that cleanup must then leave the chart and its observer to the remount.
  const mount = (chart.mount = {});
  chart.style.height = `${layout.height ?? 450}px`; // the chart's room, kept while plotly.js loads
  layout.font = { family: style.fontFamily, ...layout.font }; // the page's font

  loadPlotly(data.plotlyUrl)
    .then((Plotly) => {
      if (chart.failed) chart.replaceChildren(); // the message of an earlier try
      chart.failed = false;
      // The width is the container's, given outright at every draw and every resize: plotly's own
      // autosize keeps the width of the draw before, so a draw racing a resize could stay too wide.
      const width = chart.clientWidth || undefined; // 0 while hidden: plotly's default until shown
      const config = { displaylogo: false, ...data.config };
      // This figure at a width; kept on the element, so that a resize draws the latest figure,
      // whichever call set up the observer.
      chart.draw = (width) => Plotly.react(chart, traces, fitted(traces, layout, width), config);
      chart.draw(width);
      if (!chart.resizing) {
        // Columns and the sidebar change a chart's width without resizing the window.
        chart.resizing = new ResizeObserver(() => {
          const width = chart.clientWidth;
          if (width && chart._fullLayout?.width !== width) chart.draw(width);
        });
        chart.resizing.observe(chart);
      }
    })
    .catch((error) => {
      chart.failed = true;
      chart.textContent = `The chart could not be drawn: ${error.message}.`;
    });

  return () => {
    if (chart.mount !== mount) return; // drawn again since: no longer this call's to clean up
    chart.resizing?.disconnect();
    chart.resizing = undefined; // a later call on this element observes it again
    window.Plotly?.purge(chart);
  };
}
