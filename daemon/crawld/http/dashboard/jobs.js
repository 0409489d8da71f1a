// Jobs: active (running, queued), scheduled (templates: next run, pause, resume, run
// now, edit) and completed, each a table paged on the server (list-jobs' limit and
// offset), filtered by project, spider, status and text (q); rows follow the event
// stream without a reload.

import {call} from "./api.js";
import {badge, debounce, fill, h, items, jobDuration, notice, timeEl, what} from "./dom.js";

const PAGE = 50;
const TABS = {
  active: {title: "Active", sections: [["RUNNING", "Running"], ["PENDING", "Queued"]]},
  scheduled: {title: "Scheduled", sections: [["SCHEDULED", "Scheduled"], ["PAUSED", "Paused"]]},
  completed: {title: "Completed", sections: [["COMPLETED", "Completed"]],
    statuses: ["SUCCESSFUL", "FAILED", "CANCELED"]},
};
const TEMPLATE = new Set(["SCHEDULED", "PAUSED"]);

/** The statuses a section lists (a group is its members). */
function members(status) {
  return status === "COMPLETED" ? ["SUCCESSFUL", "FAILED", "CANCELED"] : [status];
}

export function render(box, {app, params}) {
  const state = {
    tab: TABS[params.get("tab")] ? params.get("tab") : "active",
    project: params.get("project") || "",
    spider: params.get("spider") || "",
    status: params.get("status") || "",
    q: params.get("q") || "",
  };
  const sections = new Map(); // status -> {offset, body, pager, count}
  const area = h("div", {id: "job-sections"});

  function sync() {
    const shown = Object.entries(state).filter(([, v]) => v);
    history.replaceState(null, "", `#/jobs?${new URLSearchParams(shown)}`);
  }

  // -- filters --------------------------------------------------------------------
  const projectSelect = h("select", {id: "filter-project"}, h("option", {value: ""}, "all"));
  const spiderInput = h("input", {id: "filter-spider", value: state.spider,
    spellcheck: "false", placeholder: "any"});
  const statusSelect = h("select", {id: "filter-status"});
  const search = h("input", {id: "filter-q", type: "search", value: state.q,
    spellcheck: "false", placeholder: "identifier, description, spider, project"});
  call("list-projects.json").then(({projects}) => {
    for (const name of projects) projectSelect.append(h("option", {value: name}, name));
    projectSelect.value = state.project;
  }, () => {});
  const changed = () => {
    state.project = projectSelect.value;
    state.spider = spiderInput.value.trim();
    state.status = statusSelect.value;
    state.q = search.value.trim();
    sync();
    build();
  };
  projectSelect.addEventListener("change", changed);
  statusSelect.addEventListener("change", changed);
  spiderInput.addEventListener("input", debounce(changed, 400));
  search.addEventListener("input", debounce(changed, 300));

  const tabs = h("div", {class: "tabs", role: "tablist", "aria-label": "Jobs"},
    Object.entries(TABS).map(([name, tab]) => {
      const button = h("button", {type: "button", role: "tab", id: `tab-${name}`,
        "aria-selected": String(name === state.tab), "aria-controls": "job-sections"},
      tab.title);
      button.addEventListener("click", () => {
        state.tab = name;
        state.status = "";
        for (const b of tabs.querySelectorAll("[role=tab]")) {
          b.setAttribute("aria-selected", String(b === button));
        }
        sync();
        build();
      });
      return button;
    }));
  tabs.addEventListener("keydown", (event) => {
    const all = [...tabs.querySelectorAll("[role=tab]")];
    const at = all.indexOf(document.activeElement);
    if (at < 0 || !["ArrowLeft", "ArrowRight"].includes(event.key)) return;
    const next = all[(at + (event.key === "ArrowRight" ? 1 : all.length - 1)) % all.length];
    next.focus();
    next.click();
  });

  fill(box, h("h1", {}, "Jobs"), tabs,
    h("form", {class: "filters", role: "search", onsubmit: (e) => e.preventDefault()},
      h("label", {for: "filter-project"}, "Project"), projectSelect,
      h("label", {for: "filter-spider"}, "Spider"), spiderInput,
      h("label", {for: "filter-status"}, "Status"), statusSelect,
      h("label", {for: "filter-q"}, "Search"), search),
    area);

  // -- rows -------------------------------------------------------------------------
  function act(label, path, job, extra) {
    return h("button", {type: "button", class: "small", "aria-label": `${label} ${job.identifier}`,
      onclick: async () => {
        try {
          const answer = await call(path, {form: {id: job.identifier}});
          notice(label === "Run now"
            ? ["Started run ", h("a", {href: `#/job/${answer.identifier}`}, answer.identifier), "."]
            : `${label}: done.`);
          reloadAll();
        } catch (err) {
          notice(`${label} failed: ${err.message}`, "error");
        }
      }, ...extra}, label);
  }

  function actions(job) {
    if (!app.canOperate) return h("td", {class: "actions"});
    const cell = h("td", {class: "actions"});
    if (job.status === "SCHEDULED") cell.append(act("Pause", "pause-job.json", job));
    if (job.status === "PAUSED") cell.append(act("Resume", "resume-job.json", job));
    if (TEMPLATE.has(job.status)) {
      cell.append(act("Run now", "run-job.json", job));
      cell.append(h("button", {type: "button", class: "small", "aria-label": `Edit ${job.identifier}`,
        onclick: (e) => edit(job, e.target.closest("tr"))}, "Edit"));
    }
    if (!["SUCCESSFUL", "FAILED", "CANCELED"].includes(job.status)) {
      cell.append(act("Cancel", "cancel-job.json", job, {class: "small danger"}));
    }
    return cell;
  }

  function row(job) {
    const link = h("a", {href: `#/job/${job.identifier}`}, job.description || what(job));
    const cells = [h("td", {class: "job"}, link,
      job.description ? h("div", {class: "muted small"}, what(job)) : null)];
    cells.push(h("td", {}, badge(job.status)));
    if (TEMPLATE.has(job.status)) {
      cells.push(h("td", {class: "mono"}, job.schedule),
        h("td", {}, timeEl(job["next-run"])), h("td", {}, timeEl(job["last-run"])));
    } else {
      const count = items(job);
      cells.push(h("td", {class: "wide"}, timeEl(job.created)), h("td", {}, timeEl(job.started)),
        h("td", {}, timeEl(job.finished)), h("td", {}, jobDuration(job)),
        h("td", {class: "num"}, count === null ? "—" : String(count)));
    }
    cells.push(actions(job));
    return h("tr", {dataset: {id: job.identifier, status: job.status}}, cells);
  }

  function edit(job, tr) {
    const old = tr.nextElementSibling;
    if (old && old.classList.contains("edit-row")) {
      old.remove();
      return;
    }
    const id = job.identifier;
    const when = h("input", {id: `edit-when-${id}`, value: job.schedule, spellcheck: "false"});
    const tz = h("input", {id: `edit-tz-${id}`, value: job.tz || "", spellcheck: "false"});
    const desc = h("input", {id: `edit-desc-${id}`, value: job.description});
    const error = h("p", {class: "error", role: "alert"});
    const form = h("form", {class: "edit"},
      h("label", {for: `edit-when-${id}`}, "When"), when,
      h("label", {for: `edit-tz-${id}`}, "Time zone"), tz,
      h("label", {for: `edit-desc-${id}`}, "Description"), desc,
      h("button", {type: "submit"}, "Save"), error);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await call("update-job.json", {form: {id, when: when.value, tz: tz.value || null,
          description: desc.value}});
        notice("Schedule updated.");
        reloadAll();
      } catch (err) {
        fill(error, err.message);
      }
    });
    tr.after(h("tr", {class: "edit-row"}, h("td", {colspan: 9}, form)));
    when.focus();
  }

  function head(template) {
    const names = template
      ? ["Job", "Status", "When", "Next run", "Last run", ""]
      : ["Job", "Status", "Created", "Started", "Finished", "Duration", "Items", ""];
    return h("thead", {}, h("tr", {}, names.map((n, i) =>
      h("th", {scope: "col", class: !template && i === 2 ? "wide" : null}, n))));
  }

  // -- sections ---------------------------------------------------------------------
  async function load(status) {
    const section = sections.get(status);
    if (!section) return;
    const query = {status, limit: PAGE + 1, offset: section.offset,
      project: state.project, spider: state.spider, q: state.q};
    try {
      const {jobs} = await call("list-jobs.json", {params: query});
      if (sections.get(status) !== section) return; // rebuilt meanwhile
      const page = jobs.slice(0, PAGE);
      fill(section.body, page.length ? page.map(row)
        : h("tr", {}, h("td", {colspan: 9, class: "muted"}, "none")));
      const more = jobs.length > PAGE;
      section.prev.disabled = section.offset === 0;
      section.next.disabled = !more;
      fill(section.count, page.length
        ? `${section.offset + 1}–${section.offset + page.length}${more ? "" : " (last page)"}`
        : "");
    } catch (err) {
      fill(section.body, h("tr", {}, h("td", {colspan: 9, class: "error"}, err.message)));
    }
  }

  function build() {
    const tab = TABS[state.tab];
    const statuses = tab.statuses || tab.sections.map(([s]) => s);
    fill(statusSelect, h("option", {value: ""}, "all"),
      statuses.map((s) => h("option", {value: s}, s.toLowerCase())));
    if (!statuses.includes(state.status)) state.status = "";
    statusSelect.value = state.status;
    let shown = tab.sections;
    if (state.status) {
      shown = tab.statuses ? [[state.status, state.status.toLowerCase()]]
        : tab.sections.filter(([s]) => s === state.status);
    }
    sections.clear();
    fill(area, shown.map(([status, title]) => {
      const section = {offset: 0, body: h("tbody", {}),
        prev: h("button", {type: "button", class: "small"}, "Previous"),
        next: h("button", {type: "button", class: "small"}, "Next"),
        count: h("span", {class: "muted small"})};
      section.prev.addEventListener("click", () => {
        section.offset = Math.max(0, section.offset - PAGE);
        load(status);
      });
      section.next.addEventListener("click", () => {
        section.offset += PAGE;
        load(status);
      });
      sections.set(status, section);
      return h("section", {class: "card", "aria-labelledby": `sec-${status}`, dataset: {status}},
        h("h2", {id: `sec-${status}`}, title),
        h("div", {class: "scroll"}, h("table", {class: "jobs", id: `jobs-${status}`},
          head(TEMPLATE.has(status)), section.body)),
        h("div", {class: "pager"}, section.prev, section.count, section.next));
    }));
    for (const status of sections.keys()) load(status);
  }

  function reloadAll() {
    for (const status of sections.keys()) load(status);
  }

  // -- live updates -----------------------------------------------------------------
  const pending = new Set();
  const reloadSoon = debounce(() => {
    for (const status of pending) load(status);
    pending.clear();
  }, 300);

  const unlisten = app.live.listen((event) => {
    if (event.kind === "poll" || event.kind === "reset") {
      reloadAll();
      return;
    }
    const job = event.job;
    const existing = area.querySelector(`tr[data-id="${CSS.escape(job.identifier)}"]`);
    for (const [status] of sections) {
      if (!members(status).includes(job.status)) continue;
      if (state.project && job.project !== state.project) continue;
      if (existing && existing.closest("section").dataset.status === status) {
        existing.replaceWith(row(job)); // in place: same page, same position
      } else {
        pending.add(status); // a new row for this list: its page changes
      }
    }
    if (existing && !members(existing.closest("section").dataset.status).includes(job.status)) {
      pending.add(existing.closest("section").dataset.status); // it left this list
    }
    const parent = job.parent &&
      area.querySelector(`tr[data-id="${CSS.escape(job.parent)}"]`);
    if (event.kind === "created" && parent) {
      pending.add(parent.closest("section").dataset.status); // a schedule fired: its last run
    }
    if (pending.size) reloadSoon();
  });

  build();
  return {leave: unlisten};
}
