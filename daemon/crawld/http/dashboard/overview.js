// Overview: the daemon's status (status.json), recent failures with their reasons, and
// the jobs finished per hour by outcome (job-history.json).

import {call, missing} from "./api.js";
import {debounce, fill, h, timeEl, what} from "./dom.js";
import {historyChart} from "./chart.js";

const STATUS_MS = 5000;

function figure(label, value, id) {
  return h("div", {class: "figure"}, h("dt", {}, label), h("dd", {id}, value));
}

export function render(box, {app}) {
  const figures = h("dl", {class: "figures", id: "figures"});
  const failures = h("div", {id: "failures"}, h("p", {class: "muted"}, "Loading…"));
  const chart = h("section", {class: "card", id: "history", "aria-labelledby": "history-title"},
    h("h2", {id: "history-title"}, "Jobs finished per hour (last 24 hours)"),
    h("div", {id: "history-chart"}, h("p", {class: "muted"}, "Loading…")));
  fill(box,
    h("h1", {}, "Overview"),
    h("section", {class: "card", "aria-labelledby": "status-title"},
      h("h2", {id: "status-title"}, "Daemon"), figures),
    chart,
    h("section", {class: "card", "aria-labelledby": "failures-title"},
      h("h2", {id: "failures-title"}, "Recent failures"), failures));

  async function loadStatus() {
    try {
      const s = await call("status.json");
      const slots = s["job-slots"] !== undefined
        ? `${s["jobs-running"]} / ${s["job-slots"]}` : "—";
      fill(figures,
        figure("Uptime", s.uptime, "fig-uptime"),
        figure("Memory", `${Number(s["memory-usage"]).toFixed(0)} MB`, "fig-memory"),
        figure("CPU", `${Number(s["cpu-usage"]).toFixed(0)} %`, "fig-cpu"),
        figure("Slots used", slots, "fig-slots"),
        figure("Queued", s["jobs-pending"] ?? "—", "fig-queued"),
        figure("Schedules", s["jobs-scheduled"], "fig-scheduled"),
        figure("Jobs run", s["jobs-run"], "fig-run"),
        figure("Successful", s["jobs-successful"], "fig-successful"),
        figure("Failed", s["jobs-failed"], "fig-failed"),
        figure("Canceled", s["jobs-canceled"], "fig-canceled"),
        figure("Projects", `${s.projects} (${s.spiders} spiders)`, "fig-projects"),
        figure("Version", `crawld ${s["daemon-version"]} on ${s.hostname}`, "fig-version"));
    } catch (error) {
      fill(figures, h("p", {class: "error"}, error.message));
    }
  }

  async function loadFailures() {
    try {
      const {jobs} = await call("list-jobs.json", {params: {status: "FAILED", limit: 8}});
      if (!jobs.length) {
        fill(failures, h("p", {class: "muted"}, "No failed job is kept."));
        return;
      }
      fill(failures, h("table", {class: "jobs"},
        h("thead", {}, h("tr", {}, ["Job", "Finished", "Reason"].map((t) =>
          h("th", {scope: "col"}, t)))),
        h("tbody", {}, jobs.map((job) => h("tr", {},
          h("td", {}, h("a", {href: `#/job/${job.identifier}`}, job.description || what(job))),
          h("td", {}, timeEl(job.finished)),
          h("td", {class: "reason"}, job.reason || (job["exit-code"] !== null
            ? `exit code ${job["exit-code"]}` : job.signal || "")))))));
    } catch (error) {
      fill(failures, h("p", {class: "error"}, error.message));
    }
  }

  async function loadHistory() {
    try {
      const {buckets} = await call("job-history.json", {params: {hours: 24}});
      fill(document.getElementById("history-chart") || chart, historyChart(buckets));
    } catch (error) {
      if (missing(error)) chart.hidden = true;
      else fill(chart, h("p", {class: "error"}, error.message));
    }
  }

  loadStatus();
  loadFailures();
  loadHistory();
  const timer = setInterval(loadStatus, STATUS_MS);
  const ended = debounce(() => {
    loadFailures();
    loadHistory();
    loadStatus();
  }, 500);
  const unlisten = app.live.listen((event) => {
    if (event.kind === "ended" || event.kind === "poll" || event.kind === "reset") ended();
  });
  return {leave() {
    clearInterval(timer);
    unlisten();
  }};
}
