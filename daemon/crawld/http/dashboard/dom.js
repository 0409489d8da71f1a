// Small DOM helpers shared by the views: elements from code (never from HTML text, so
// nothing a job or a user wrote can become markup), times in the browser's time zone,
// durations, sizes.

/** An element: h("a", {href: "#/jobs", class: "x", onclick: fn}, "text", child...). */
export function h(tag, attrs, ...children) {
  const el = tag.includes(":")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.split(":")[1])
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.setAttribute("class", value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "value" && "value" in el) {
      el.value = value;
    } else if (name === "checked" || name === "selected") {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children (strings become text; null, false and undefined are skipped). */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const timeOnly = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** An ISO 8601 time of the API in the browser's time zone ("" for null). Today's
 * times show the time only; the full date is in the element's title. */
export function time(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  const today = new Date();
  const same = when.toDateString() === today.toDateString();
  return (same ? timeOnly : dateTime).format(when);
}

/** A <time> element for an API time, its full local date and time as title. */
export function timeEl(iso) {
  if (!iso) return h("span", {class: "none"}, "—");
  return h("time", {datetime: iso, title: dateTime.format(new Date(iso))}, time(iso));
}

/** Seconds as "1h 2m 3s" (null: "—"). */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  let rest = Math.max(0, Math.round(seconds));
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  if (!parts.length || rest) parts.push(`${rest}s`);
  return parts.slice(0, 2).join(" ");
}

/** How long a job took, or has been running for. */
export function jobDuration(job) {
  if (job.duration !== null && job.duration !== undefined) return duration(job.duration);
  if (job.started && !job.finished) {
    return duration((Date.now() - new Date(job.started).getTime()) / 1000) + " so far";
  }
  return "—";
}

/** Bytes as "1.2 MB". */
export function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = "B";
  for (const u of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = u;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${unit}`;
}

/** The status of a job as a badge. */
export function badge(status) {
  return h("span", {class: `badge s-${String(status).toLowerCase()}`}, status);
}

/** Items scraped, from a job's stats (null when not known). */
export function items(job) {
  const stats = job.stats;
  if (!stats || typeof stats !== "object") return null;
  const count = stats.item_scraped_count;
  return typeof count === "number" ? count : 0;
}

/** What a job runs: project/spider (or script), or the browsed URL. */
export function what(job) {
  if (job.kind === "browse") return "browse";
  return `${job.project}/${job.spider}` + (job.kind === "script" ? " (script)" : "");
}

/** Call fn at most once per `ms`, the last call winning. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A message in the page's status line (polite live region): text, or an array of
 * text and elements (a link to what was made). */
export function notice(text, kind = "info") {
  const box = document.getElementById("notice");
  if (!box) return;
  fill(box, text ? h("p", {class: `notice ${kind}`}, text) : null);
  if (text && kind !== "error") {
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => fill(box), 6000);
  }
}
