// One job: status and reason, arguments and settings, stats, its two logs (tail, older
// parts on demand, followed live), its items, and for a browser job the live
// screenshot, posts, progress and a message box; cancel.

import {call, missing, request} from "./api.js";
import {badge, fill, h, jobDuration, notice, timeEl, what} from "./dom.js";
import {LogView} from "./logview.js";

const ITEMS_PAGE = 20;
const BROWSER_MS = 3000;
const HEADLINE_STATS = [
  ["item_scraped_count", "Items"], ["response_received_count", "Pages"],
  ["downloader/request_count", "Requests"], ["log_count/ERROR", "Errors"],
  ["finish_reason", "Finish reason"], ["elapsed_time_seconds", "Elapsed (s)"],
];
const ACTIVE = new Set(["SCHEDULED", "PAUSED", "PENDING", "RUNNING"]);
const number = new Intl.NumberFormat(undefined, {maximumFractionDigits: 2});

/** A stat's value for reading: numbers grouped and rounded, the rest as it is. */
function statText(value) {
  return typeof value === "number" ? number.format(value) : String(value);
}

function pairsOf(value) {
  if (!value) return [];
  if (Array.isArray(value)) return value;
  return Object.entries(value);
}

function nameValueTable(id, pairs) {
  if (!pairs.length) return h("p", {class: "muted", id}, "none");
  return h("table", {class: "kv", id}, h("tbody", {}, pairs.map(([k, v]) =>
    h("tr", {}, h("th", {scope: "row"}, k), h("td", {class: "mono"},
      typeof v === "string" ? v : JSON.stringify(v))))));
}

function cellText(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text === undefined ? "" : text;
}

export function render(box, {app, arg}) {
  const id = arg;
  const head = h("div", {id: "job-head"});
  const facts = h("dl", {class: "facts", id: "job-facts"});
  const params = h("div", {id: "job-params"});
  const stats = h("div", {id: "job-stats"});
  const logs = {out: new LogView(id, "out"), err: new LogView(id, "err")};
  const itemsBox = h("section", {class: "card", id: "job-items", "aria-labelledby": "items-title",
    hidden: true}, h("h2", {id: "items-title"}, "Items"));
  const browserBox = h("section", {class: "card", id: "job-browser", hidden: true,
    "aria-labelledby": "browser-title"}, h("h2", {id: "browser-title"}, "Browser"));
  let job = null;
  let timers = [];
  let left = false;

  const logTabs = h("div", {class: "tabs", role: "tablist", "aria-label": "Logs"});
  const logPanel = h("div", {role: "tabpanel", id: "log-panel"});
  for (const stream of ["out", "err"]) {
    const tab = h("button", {type: "button", role: "tab", id: `tab-log-${stream}`,
      "aria-selected": String(stream === "out"), "aria-controls": "log-panel"},
    stream === "out" ? "Output (.out)" : "Errors (.err)");
    tab.addEventListener("click", () => {
      for (const b of logTabs.children) b.setAttribute("aria-selected", String(b === tab));
      fill(logPanel, logs[stream].el);
    });
    logTabs.append(tab);
  }
  fill(logPanel, logs.out.el);

  fill(box, head,
    h("section", {class: "card", "aria-labelledby": "facts-title"},
      h("h2", {id: "facts-title"}, "Details"), facts),
    h("section", {class: "card spider-only", "aria-labelledby": "stats-title"},
      h("h2", {id: "stats-title"}, "Stats"), stats),
    h("section", {class: "card spider-only", "aria-labelledby": "params-title"},
      h("h2", {id: "params-title"}, "Arguments and settings"), params),
    h("section", {class: "card", "aria-labelledby": "logs-title"},
      h("h2", {id: "logs-title"}, "Logs"), logTabs, logPanel),
    itemsBox, browserBox);

  function show() {
    for (const section of box.querySelectorAll(".spider-only")) {
      section.hidden = job.kind !== "spider"; // a browser job has no Scrapy stats or -a/-s
    }
    const cancel = app.canOperate && ACTIVE.has(job.status)
      ? h("button", {type: "button", class: "danger", id: "cancel-job", onclick: cancelJob},
        "Cancel job") : null;
    fill(head, h("h1", {}, job.description || what(job), " ", badge(job.status)),
      job.reason ? h("p", {class: "reason", id: "job-reason"}, job.reason) : null, cancel);
    const rows = [
      ["Identifier", h("span", {class: "mono"}, job.identifier)],
      ["Runs", what(job)],
      ["Schedule", job.schedule],
      job.parent ? ["Schedule it ran for", h("a", {href: `#/job/${job.parent}`}, job.parent)] : null,
      ["Created", timeEl(job.created)], ["Started", timeEl(job.started)],
      ["Finished", timeEl(job.finished)], ["Duration", jobDuration(job)],
      job["next-run"] ? ["Next run", timeEl(job["next-run"])] : null,
      ["Exit code", job["exit-code"] ?? "—"], job.signal ? ["Signal", job.signal] : null,
      job.pid ? ["Process", `pid ${job.pid}`] : null,
      job["fail-on"] ? ["Fails on", job["fail-on"]] : null,
    ].filter(Boolean);
    fill(facts, rows.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
    fill(params, job.args === undefined && job.settings === undefined
      ? h("p", {class: "muted"}, "This daemon does not record spider arguments.")
      : [h("h3", {}, "Arguments (-a)"), nameValueTable("job-args", pairsOf(job.args)),
        h("h3", {}, "Settings (-s)"), nameValueTable("job-settings", pairsOf(job.settings))]);
    showStats();
  }

  function showStats() {
    const data = job.stats;
    if (!data || typeof data !== "object") {
      fill(stats, h("p", {class: "muted"}, job.stats === undefined
        ? "This daemon does not collect stats." : "No stats reported yet."));
      return;
    }
    fill(stats,
      h("dl", {class: "figures"}, HEADLINE_STATS.filter(([k]) => k in data).map(([k, label]) =>
        h("div", {class: "figure"}, h("dt", {}, label), h("dd", {}, statText(data[k]))))),
      h("details", {}, h("summary", {}, "All stats"),
        nameValueTable("job-all-stats", Object.entries(data).sort())));
  }

  async function cancelJob() {
    try {
      const answer = await call("cancel-job.json", {form: {id}});
      notice(`Job ${answer["job-status"] === "CANCELED" ? "canceled" : "is being canceled"}.`);
      refresh();
    } catch (err) {
      notice(`Cannot cancel: ${err.message}`, "error");
    }
  }

  async function refresh() {
    try {
      const {jobs} = await call("list-jobs.json", {params: {id}});
      update(jobs[0]);
    } catch (err) {
      fill(head, h("h1", {}, "Job"), h("p", {class: "error", role: "alert"}, err.message));
    }
  }

  function update(fresh) {
    const before = job;
    job = fresh;
    show();
    if (job.status === "RUNNING" && !left) {
      logs.out.follow();
      logs.err.follow();
    }
    if (before && before.status !== job.status && !ACTIVE.has(job.status)) loadItems(0);
  }

  // -- items ------------------------------------------------------------------------
  let itemsOffset = 0;
  async function loadItems(offset) {
    if (!job || job.kind !== "spider") return;
    try {
      const answer = await call("job-items.json", {params: {id, offset, limit: ITEMS_PAGE}});
      itemsOffset = offset;
      itemsBox.hidden = false;
      const page = answer.items;
      const columns = [...new Set(page.flatMap((item) =>
        item && typeof item === "object" && !Array.isArray(item) ? Object.keys(item) : ["value"]))]
        .slice(0, 10);
      const table = page.length ? h("div", {class: "scroll"}, h("table", {class: "items", id: "items-table"},
        h("thead", {}, h("tr", {}, h("th", {scope: "col"}, "#"),
          columns.map((c) => h("th", {scope: "col"}, c)))),
        h("tbody", {}, page.map((item, i) => h("tr", {}, h("td", {class: "num"}, String(offset + i + 1)),
          columns.map((c) => {
            const text = cellText(typeof item === "object" && item !== null && !Array.isArray(item)
              ? item[c] : item);
            return h("td", {title: text.length > 120 ? text : null},
              text.length > 120 ? `${text.slice(0, 120)}…` : text);
          }))))))
        : h("p", {class: "muted"}, "No items.");
      const prev = h("button", {type: "button", class: "small", disabled: offset === 0,
        onclick: () => loadItems(Math.max(0, offset - ITEMS_PAGE))}, "Previous");
      const next = h("button", {type: "button", class: "small",
        disabled: offset + page.length >= answer.total,
        onclick: () => loadItems(offset + ITEMS_PAGE)}, "Next");
      fill(itemsBox, h("h2", {id: "items-title"}, `Items (${answer.total})`), table,
        h("div", {class: "pager"}, prev,
          h("span", {class: "muted small"}, page.length
            ? `${offset + 1}–${offset + page.length} of ${answer.total}` : ""), next));
    } catch (err) {
      itemsBox.hidden = missing(err);
      if (!missing(err)) fill(itemsBox, h("h2", {}, "Items"), h("p", {class: "error"}, err.message));
    }
  }

  // -- browser jobs -----------------------------------------------------------------
  let lastMessage = 0;
  function browserPanel() {
    browserBox.hidden = false;
    const shot = h("img", {id: "screenshot", alt: "The job's page, as last captured"});
    const shotNote = h("p", {class: "muted small", id: "screenshot-note"});
    const progress = h("div", {id: "job-progress"});
    const events = h("ol", {class: "events", id: "job-events"});
    const posts = h("ol", {class: "events", id: "job-posts"});
    let shown = null;

    async function screenshot() {
      if (!job || job.status !== "RUNNING") {
        fill(shotNote, "The screenshot is taken while the job runs.");
        return;
      }
      const response = await request("job-screenshot.png", {params: {id}});
      if (!response.ok) {
        fill(shotNote, `No screenshot (${response.status}).`);
        return;
      }
      if (shown) URL.revokeObjectURL(shown);
      shown = URL.createObjectURL(await response.blob());
      shot.src = shown;
      fill(shotNote, `Taken ${new Date().toLocaleTimeString()}.`);
    }

    async function output() {
      try {
        const answer = await call("job-output.json",
          {params: {id, "from-pos": Number.MAX_SAFE_INTEGER, "from-message-id": lastMessage}});
        if (answer.progress !== null && answer.progress !== undefined) {
          const value = Number(answer.progress);
          fill(progress, value >= 0 && value <= 1
            ? h("progress", {value, max: 1, "aria-label": "progress"}) : null,
          ` ${answer["progress-label"] || ""} (${value <= 1 ? Math.round(value * 100) + " %" : value})`);
        }
        for (const m of answer.messages) {
          lastMessage = Math.max(lastMessage, m.id);
          events.append(h("li", {}, timeEl(m.date), ` ${m.type}: ${JSON.stringify(m.data)}`));
        }
      } catch {
        // an older daemon, or the job is gone: the panel keeps what it shows
      }
      if (app.canOperate && job && job.status === "RUNNING") {
        try {
          const answer = await call("job-posts.json", {params: {id}});
          for (const p of answer.posts) {
            posts.append(h("li", {}, timeEl(p.date), ` ${JSON.stringify(p.data ?? p)}`));
          }
        } catch {
          // not running any more
        }
      }
    }

    const message = h("textarea", {id: "job-message", rows: 2, spellcheck: "false",
      placeholder: '{"say": "hello"}'});
    const messageError = h("p", {class: "error", role: "alert"});
    const send = h("form", {class: "message"},
      h("label", {for: "job-message"}, "Message to the script (JSON)"), message,
      h("button", {type: "submit"}, "Send"), messageError);
    send.addEventListener("submit", async (event) => {
      event.preventDefault();
      fill(messageError);
      try {
        await call("job-message.json", {form: {id, data: message.value}});
        notice("Message sent.");
        message.value = "";
      } catch (err) {
        fill(messageError, err.message);
      }
    });

    fill(browserBox, h("h2", {id: "browser-title"}, "Browser"),
      h("div", {class: "shot"}, shot, shotNote,
        h("button", {type: "button", class: "small", onclick: screenshot}, "Take a screenshot")),
      h("h3", {}, "Progress"), progress,
      h("h3", {}, "Events"), events,
      app.canOperate ? [h("h3", {}, "Posts"), posts, send] : null);
    screenshot();
    output();
    timers.push(setInterval(() => {
      if (job && job.status === "RUNNING") {
        screenshot();
        output();
      }
    }, BROWSER_MS));
    timers.push({revoke: () => shown && URL.revokeObjectURL(shown)});
  }

  const unlisten = app.live.listen((event) => {
    if (event.kind === "poll" || event.kind === "reset") {
      if (!job || ACTIVE.has(job.status)) refresh();
      return;
    }
    if (event.job.identifier === id) update(event.job);
  });

  (async () => {
    await refresh();
    if (!job) return;
    logs.out.load().then(() => job.status === "RUNNING" && !left && logs.out.follow());
    logs.err.load().then(() => job.status === "RUNNING" && !left && logs.err.follow());
    loadItems(0);
    if (job.kind !== "spider") browserPanel();
  })();

  return {leave() {
    left = true;
    unlisten();
    logs.out.stop();
    logs.err.stop();
    for (const t of timers) {
      if (t.revoke) t.revoke();
      else clearInterval(t);
    }
    timers = [];
  }};
}
