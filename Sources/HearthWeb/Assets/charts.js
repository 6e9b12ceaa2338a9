// Small SVG charts, drawn from numbers (no library): a line over time with its latest and highest value.
const svgNS = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}) {
  const node = document.createElementNS(svgNS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

/**
 * Draws `values` (one per time bucket, oldest first; null for no data) and returns an element: a line of text with the
 * latest and highest value, then the curve. The text is HTML, not SVG, so it keeps its shape however wide the chart is.
 * `format` turns a value into the label text; `title` is the accessible name; `span` names the time covered.
 */
export function lineChart(values, { title, format = String, span = "last hour", width = 360, height = 100 } = {}) {
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true", preserveAspectRatio: "none" });
  const known = values.filter((v) => v !== null && v !== undefined);
  const top = Math.max(1e-9, ...known);
  const left = 2, right = width - 2, bottom = height - 2, upper = 4;
  const x = (i) => left + ((right - left) * i) / Math.max(1, values.length - 1);
  const y = (v) => bottom - ((bottom - upper) * v) / top;
  chart.append(svg("line", { class: "axis", x1: left, x2: right, y1: bottom, y2: bottom, "vector-effect": "non-scaling-stroke" }));
  let path = "";
  values.forEach((value, i) => {
    path += `${i === 0 ? "M" : "L"}${x(i).toFixed(1)},${y(value ?? 0).toFixed(1)}`;
  });
  if (values.length > 0) {
    const area = `${path}L${x(values.length - 1).toFixed(1)},${bottom}L${x(0).toFixed(1)},${bottom}Z`;
    chart.append(svg("path", { class: "area", d: area }), svg("path", { class: "line", d: path, "vector-effect": "non-scaling-stroke" }));
  }
  const latest = known.length ? known[known.length - 1] : null;
  const summary = `now ${latest === null ? "–" : format(latest)} · peak ${known.length ? format(Math.max(...known)) : "–"}`;
  const figure = document.createElement("div");
  figure.setAttribute("role", "img");
  figure.setAttribute("aria-label", `${title}, ${span}: ${summary}`);
  const label = document.createElement("div");
  label.className = "chart-label";
  label.textContent = summary;
  const foot = document.createElement("div");
  foot.className = "chart-span";
  foot.textContent = span;
  figure.append(label, chart, foot);
  return figure;
}
