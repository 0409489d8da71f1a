// Schedule: a spider or script of a project, now or on a schedule. The next five fire
// times of `when` are previewed as you type (preview-schedule.json), or the grammar's
// own message when it does not parse.

import {call} from "./api.js";
import {debounce, fill, h, notice} from "./dom.js";

const FAIL_ON = [
  ["all-requests-failed", "all requests failed"],
  ["no-items", "no items"],
  ["error-log", "an ERROR log line"],
  ["unfinished", "not finished (finish_reason)"],
  ["none", "never (exit code only)"],
];

const local = new Intl.DateTimeFormat(undefined, {
  weekday: "short", year: "numeric", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** "NAME=VALUE" lines as [name, value] pairs (400-style message on a bad line). */
export function pairs(text, what) {
  const found = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (!line) continue;
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`${what}, line ${i + 1}: expected NAME=VALUE`);
    found.push([line.slice(0, at).trim(), line.slice(at + 1)]);
  }
  return found;
}

function field(id, label, input, hint) {
  return h("div", {class: "field"}, h("label", {for: id}, label), input,
    hint ? h("p", {class: "hint", id: `${id}-hint`}, hint) : null);
}

export function render(box, {app, params}) {
  if (!app.canOperate) {
    fill(box, h("h1", {}, "Schedule"),
      h("p", {class: "muted", id: "reader-note"},
        `Your role (${app.who.role}) may look but not schedule jobs.`));
    return {leave() {}};
  }
  const project = h("select", {id: "f-project", name: "project", required: true});
  const kind = h("select", {id: "f-kind", name: "kind"},
    h("option", {value: "spider"}, "spider"), h("option", {value: "script"}, "browser script"));
  const target = h("select", {id: "f-target", name: "target", required: true});
  const when = h("input", {id: "f-when", name: "when", value: params.get("when") || "now",
    required: true, spellcheck: "false", "aria-describedby": "f-when-hint when-preview"});
  const zones = typeof Intl.supportedValuesOf === "function"
    ? Intl.supportedValuesOf("timeZone") : [];
  const tz = h("input", {id: "f-tz", name: "tz", list: "tz-list", spellcheck: "false",
    placeholder: "the daemon's time zone"});
  const args = h("textarea", {id: "f-args", name: "args", rows: 3, spellcheck: "false",
    placeholder: "category=books"});
  const settings = h("textarea", {id: "f-settings", name: "settings", rows: 3,
    spellcheck: "false", placeholder: "DOWNLOAD_DELAY=0.5"});
  const description = h("input", {id: "f-description", name: "description"});
  const failOn = FAIL_ON.map(([value, label]) => h("label", {class: "check"},
    h("input", {type: "checkbox", name: "fail-on", value}), ` ${label}`));
  const preview = h("div", {id: "when-preview", "aria-live": "polite"});
  const error = h("p", {class: "error", role: "alert", id: "schedule-error"});

  const form = h("form", {class: "card schedule", id: "schedule-form"},
    field("f-project", "Project", project),
    field("f-kind", "Runs a", kind),
    field("f-target", "Spider or script", target),
    field("f-when", "When", when,
      "now, every 10 minutes, daily at 03:00, weekdays at 9:30, cron 0 */2 * * * …"),
    preview,
    field("f-tz", "Time zone", tz, "An IANA name, e.g. Europe/Paris; empty: the daemon's."),
    h("datalist", {id: "tz-list"}, zones.map((z) => h("option", {value: z}))),
    field("f-args", "Spider arguments", args, "One NAME=VALUE a line (scrapy crawl -a)."),
    field("f-settings", "Scrapy settings", settings, "One NAME=VALUE a line (-s)."),
    field("f-description", "Description", description),
    h("fieldset", {class: "field"}, h("legend", {}, "Fail the job when"), failOn,
      h("p", {class: "hint"}, "None checked: the daemon's [crawld] fail-on.")),
    error,
    h("button", {type: "submit", id: "f-submit"}, "Schedule"));
  fill(box, h("h1", {}, "Schedule a job"), form);

  async function loadTargets() {
    const name = project.value;
    if (!name) return;
    const script = kind.value === "script";
    try {
      const answer = await call(script ? "list-scripts.json" : "list-spiders.json",
        {params: {project: name}});
      const list = script ? answer.scripts : answer.spiders;
      fill(target, list.map((n) => h("option", {value: n}, n)));
      if (!list.length) fill(target, h("option", {value: ""}, `no ${kind.value} in ${name}`));
    } catch (err) {
      fill(error, err.message);
    }
  }

  const showPreview = debounce(async () => {
    const text = when.value.trim();
    if (!text) {
      fill(preview);
      return;
    }
    try {
      const answer = await call("preview-schedule.json",
        {params: {when: text, tz: tz.value.trim(), count: 5}});
      if (text !== when.value.trim()) return; // typed on meanwhile
      const label = text === "now" ? "Runs at once:" : `Next runs (${answer.tz}), in your time:`;
      fill(preview, h("p", {class: "hint"}, label),
        h("ol", {class: "fire-times"}, answer.next.map((t) =>
          h("li", {}, h("time", {datetime: t}, local.format(new Date(t)))))));
    } catch (err) {
      fill(preview, h("p", {class: "error", id: "when-error"}, err.message));
    }
  }, 250);

  when.addEventListener("input", showPreview);
  tz.addEventListener("input", showPreview);
  project.addEventListener("change", loadTargets);
  kind.addEventListener("change", loadTargets);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fill(error);
    const data = new URLSearchParams();
    try {
      data.append("project", project.value);
      data.append(kind.value === "script" ? "script" : "spider", target.value);
      data.append("when", when.value.trim());
      if (tz.value.trim()) data.append("tz", tz.value.trim());
      if (description.value) data.append("description", description.value);
      for (const [name, value] of pairs(args.value, "Spider arguments")) {
        data.append(`arg-${name}`, value);
      }
      for (const [name, value] of pairs(settings.value, "Scrapy settings")) {
        data.append("setting", `${name}=${value}`);
      }
      const checked = form.querySelectorAll("input[name=fail-on]:checked");
      if (checked.length) data.append("fail-on", [...checked].map((c) => c.value).join(","));
    } catch (err) {
      fill(error, err.message);
      return;
    }
    try {
      const answer = await call("schedule-job.json", {form: data});
      notice(`Scheduled job ${answer.identifier}.`);
      app.go(`job/${answer.identifier}`);
    } catch (err) {
      fill(error, err.message);
    }
  });

  (async () => {
    try {
      const {projects} = await call("list-projects.json");
      fill(project, projects.map((n) => h("option", {value: n}, n)));
      if (!projects.length) {
        fill(error, "No project yet: push one on the Projects page first.");
        return;
      }
      if (params.get("project") && projects.includes(params.get("project"))) {
        project.value = params.get("project");
      }
      await loadTargets();
    } catch (err) {
      fill(error, err.message);
    }
  })();
  showPreview();
  return {leave() {}};
}
