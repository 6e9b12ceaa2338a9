// Small SVG charts, drawn from numbers (no library): a line over time with its latest and highest value.
const svgNS = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}) {
  const node = document.createElementNS(svgNS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

/**
 * Draws `values` (one per time bucket, oldest first; null for no data) into a new <svg> and returns it.
 * `format` turns a value into the label text; `title` is the accessible name.
 */
export function lineChart(values, { title, format = String, width = 360, height = 120 } = {}) {
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, preserveAspectRatio: "none" });
  const known = values.filter((v) => v !== null && v !== undefined);
  const top = Math.max(1e-9, ...known);
  const left = 4, right = width - 4, bottom = height - 14, upper = 14;
  const x = (i) => left + ((right - left) * i) / Math.max(1, values.length - 1);
  const y = (v) => bottom - ((bottom - upper) * v) / top;
  chart.append(svg("line", { class: "axis", x1: left, x2: right, y1: bottom, y2: bottom }));
  let path = "", area = "";
  values.forEach((value, i) => {
    const v = value ?? 0;
    path += `${i === 0 ? "M" : "L"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
  });
  if (values.length > 0) {
    area = `${path}L${x(values.length - 1).toFixed(1)},${bottom}L${x(0).toFixed(1)},${bottom}Z`;
    chart.append(svg("path", { class: "area", d: area }), svg("path", { class: "line", d: path }));
  }
  const latest = known.length ? known[known.length - 1] : null;
  const label = svg("text", { x: left, y: 10 });
  label.textContent = `now ${latest === null ? "–" : format(latest)} · peak ${known.length ? format(Math.max(...known)) : "–"}`;
  const span = svg("text", { x: right, y: height - 2, "text-anchor": "end" });
  span.textContent = "last hour";
  chart.append(label, span);
  const description = svg("title");
  description.textContent = `${title}: ${label.textContent}`;
  chart.prepend(description);
  return chart;
}
