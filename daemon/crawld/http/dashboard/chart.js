// The chart of jobs finished per hour by outcome: stacked bars in SVG, drawn from
// job-history.json's buckets, with a table of the same figures for screen readers.

import {h} from "./dom.js";

const SERIES = [["SUCCESSFUL", "ok"], ["FAILED", "failed"], ["CANCELED", "canceled"]];
const hourFormat = new Intl.DateTimeFormat(undefined, {hour: "2-digit", minute: "2-digit"});

export function historyChart(buckets) {
  const width = 720;
  const height = 180;
  const pad = {left: 34, right: 8, top: 10, bottom: 24};
  const most = Math.max(1, ...buckets.map((b) => SERIES.reduce((n, [s]) => n + b[s], 0)));
  const step = (width - pad.left - pad.right) / Math.max(1, buckets.length);
  const scale = (height - pad.top - pad.bottom) / most;
  const svg = h("svg:svg", {viewBox: `0 0 ${width} ${height}`, class: "chart",
    role: "img", "aria-labelledby": "chart-title"});
  svg.append(h("svg:title", {id: "chart-title"},
    "Jobs finished per hour by outcome, oldest hour first"));
  for (const tick of [0, Math.ceil(most / 2), most]) {
    const y = height - pad.bottom - tick * scale;
    svg.append(h("svg:line", {x1: pad.left, x2: width - pad.right, y1: y, y2: y,
      class: "grid"}));
    svg.append(h("svg:text", {x: pad.left - 4, y: y + 4, class: "axis", "text-anchor": "end"},
      String(tick)));
  }
  buckets.forEach((bucket, i) => {
    const x = pad.left + i * step + step * 0.1;
    let y = height - pad.bottom;
    const start = new Date(bucket.start);
    for (const [status, css] of SERIES) {
      const count = bucket[status];
      if (!count) continue;
      const tall = count * scale;
      y -= tall;
      svg.append(h("svg:rect", {x, y, width: step * 0.8, height: tall, class: `bar ${css}`},
        h("svg:title", {}, `${hourFormat.format(start)}: ${count} ${status.toLowerCase()}`)));
    }
    if (i % Math.ceil(buckets.length / 8) === 0) {
      svg.append(h("svg:text", {x: x + step * 0.4, y: height - 6, class: "axis",
        "text-anchor": "middle"}, hourFormat.format(start)));
    }
  });
  const legend = h("p", {class: "legend"}, SERIES.map(([status, css]) =>
    h("span", {class: `key ${css}`}, status.toLowerCase())));
  const table = h("table", {class: "visually-hidden"},
    h("caption", {}, "Jobs finished per hour"),
    h("thead", {}, h("tr", {}, h("th", {scope: "col"}, "hour"),
      SERIES.map(([s]) => h("th", {scope: "col"}, s.toLowerCase())))),
    h("tbody", {}, buckets.filter((b) => SERIES.some(([s]) => b[s])).map((b) =>
      h("tr", {}, h("th", {scope: "row"}, hourFormat.format(new Date(b.start))),
        SERIES.map(([s]) => h("td", {}, String(b[s])))))));
  return h("div", {class: "chart-box"}, svg, legend, table);
}
