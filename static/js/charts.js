/* Minimal inline SVG line charts for the supervisor dashboard's trends.
 *
 * Why our own: no maintained chart library is published as a pip-installable static package
 * (the XStatic Chart.js package is version 1.0.2 from 2015), the product must run without a CDN
 * or a JavaScript build, and three time-series line charts need little: scaled polylines, a few
 * grid lines, time labels, an optional goal line and a text summary for screen readers.
 */

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2456d6", "#c0392b", "#1a7f4b", "#b76e00", "#7b3fb8", "#0f7c8c",
                        "#a8326e", "#5b6475"];

function node(name, attrs = {}, text = null) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== null) el.textContent = text;
  return el;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const exp = Math.pow(10, Math.floor(Math.log10(value)));
  // Steps whose halves are whole numbers from 2 up, so the middle grid line reads cleanly.
  for (const step of [1, 2, 4, 6, 8, 10]) {
    if (value <= step * exp) return step * exp;
  }
  return 10 * exp;
}

const clock = (ms) =>
  new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

/**
 * Draw a line chart into ``container`` (its content is replaced).
 * options: { series: [{ name, color, points: [{ t: ms, v: number|null }] }],
 *            from: ms, to: ms, fixedMax?: number, minMax?: number, goal?: number,
 *            format?: (v) => string,
 *            label: string (accessible name), empty: string }
 * A null value breaks the line (no data for that moment).
 */
export function lineChart(container, options) {
  const width = 360, height = 150;
  const pad = { left: 40, right: 8, top: 8, bottom: 22 };
  const format = options.format || ((v) => String(Math.round(v)));
  const values = options.series.flatMap((s) => s.points.map((p) => p.v)).filter((v) => v !== null);
  const svg = node("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": options.label,
    class: "sv-svg",
  });
  container.replaceChildren(svg);
  if (!values.length) {
    svg.append(node("text", { x: width / 2, y: height / 2, "text-anchor": "middle",
                              class: "sv-svg-empty" }, options.empty));
    return;
  }
  const from = options.from, to = Math.max(options.to, from + 1);
  const yMax = options.fixedMax ??
    niceMax(Math.max(...values, options.goal ?? 0, options.minMax ?? 0));
  const x = (t) => pad.left + ((t - from) / (to - from)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / yMax) * (height - pad.top - pad.bottom);

  for (const v of [0, yMax / 2, yMax]) {
    svg.append(node("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v),
                              class: "sv-svg-grid" }));
    svg.append(node("text", { x: pad.left - 4, y: y(v) + 4, "text-anchor": "end",
                              class: "sv-svg-label" }, format(v)));
  }
  svg.append(node("text", { x: pad.left, y: height - 6, class: "sv-svg-label" }, clock(from)));
  svg.append(node("text", { x: width - pad.right, y: height - 6, "text-anchor": "end",
                            class: "sv-svg-label" }, clock(to)));
  if (options.goal != null) {
    svg.append(node("line", { x1: pad.left, x2: width - pad.right, y1: y(options.goal),
                              y2: y(options.goal), class: "sv-svg-goal" }));
  }
  for (const series of options.series) {
    let run = [];
    const flush = () => {
      if (run.length === 1) {
        const [px, py] = run[0];
        svg.append(node("circle", { cx: px, cy: py, r: 2.5, fill: series.color }));
      } else if (run.length > 1) {
        svg.append(node("polyline", {
          points: run.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" "),
          fill: "none", stroke: series.color, "stroke-width": 2,
          "vector-effect": "non-scaling-stroke", "stroke-linejoin": "round",
        }));
      }
      run = [];
    };
    for (const p of series.points) {
      if (p.v === null) flush();
      else run.push([x(p.t), y(Math.min(p.v, yMax))]);
    }
    flush();
  }
}
