// Projects: each project with its spiders and scripts and its stored versions (pushed
// archives and scrapyd eggs, newest first); push an archive (drop it on the zone or pick
// it with the file input), with the API's error shown as it gives it; delete a version
// that is not the current one, remove a project (each asked twice, in the page: no
// browser dialog).

import {call, missing} from "./api.js";
import {fill, h, notice, timeEl} from "./dom.js";

/** A project's versions, newest first (none from a daemon without list-versions). */
async function versionsOf(name) {
  try {
    const {versions} = await call("list-versions.json", {params: {project: name}});
    return versions.map((v, at) => ({...v, at}))
      .sort((a, b) => (Date.parse(b.pushed || 0) - Date.parse(a.pushed || 0)) || b.at - a.at);
  } catch (err) {
    if (missing(err)) return [];
    throw err;
  }
}

async function describe(name) {
  const [spiders, scripts, versions] = await Promise.all([
    call("list-spiders.json", {params: {project: name}}).then((a) => a.spiders, () => []),
    call("list-scripts.json", {params: {project: name}}).then((a) => a.scripts, () => []),
    versionsOf(name).catch(() => []),
  ]);
  return {name, spiders, scripts, versions};
}

/** A button that asks "label?" on the first click and acts on the second (within 5 s). */
function confirmButton(text, label, question, act) {
  const button = h("button", {type: "button", class: "danger small", "aria-label": label},
    text);
  let timer = null;
  const disarm = () => {
    clearTimeout(timer);
    timer = null;
    button.textContent = text;
    button.setAttribute("aria-label", label);
  };
  button.addEventListener("click", () => {
    if (timer === null) {
      button.textContent = question;
      button.setAttribute("aria-label", `Confirm: ${label.toLowerCase()}`);
      timer = setTimeout(disarm, 5000);
      return;
    }
    disarm(); // asked again next time, also when this attempt is refused
    act();
  });
  return button;
}

function count(n, one) {
  return `${n} ${one}${n === 1 ? "" : "s"}`;
}

function names(list) {
  return list.length ? list.join(", ") : h("span", {class: "muted"}, "none");
}

export function render(box, {app}) {
  const list = h("div", {id: "project-list"}, h("p", {class: "muted"}, "Loading…"));
  const result = h("div", {id: "push-result", role: "status", "aria-live": "polite"});
  const error = h("p", {id: "push-error", class: "error", role: "alert"});

  async function push(file) {
    fill(error);
    fill(result, h("p", {class: "muted"}, `Pushing ${file.name} (${file.size} bytes)…`));
    const form = new FormData();
    form.append("archive", file, file.name);
    try {
      const answer = await call("push-project.json", {form});
      fill(result, h("p", {class: "ok"}, `Pushed ${answer.name}: `,
        `${answer.spiders.length} spider(s)`,
        answer.scripts.length ? `, ${answer.scripts.length} script(s)` : ""));
      load();
    } catch (err) {
      fill(result);
      fill(error, `The push was refused (${err.status}): ${err.message}`);
    }
  }

  let upload = null;
  if (app.canOperate) {
    const input = h("input", {type: "file", id: "archive", accept: ".zip,application/zip"});
    input.addEventListener("change", () => {
      if (input.files.length) push(input.files[0]);
      input.value = "";
    });
    const zone = h("div", {class: "drop", id: "drop-zone"},
      h("p", {}, h("label", {for: "archive"}, "Drop a project's zip here, or choose it:")),
      input,
      h("p", {class: "hint"}, "A Scrapy project zipped with its scrapy.cfg at the top " +
        "(crawld push DIR zips one for you)."));
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) push(file);
    });
    upload = h("section", {class: "card", "aria-labelledby": "push-title"},
      h("h2", {id: "push-title"}, "Push a project"), zone, result, error);
  }

  function removeButton(name) {
    return confirmButton("Remove", `Remove project ${name}`, `Remove ${name}?`, async () => {
      try {
        await call("remove-project.json", {form: {name}});
        notice(`Removed ${name}.`);
        load();
      } catch (err) {
        notice(`Cannot remove ${name}: ${err.message}`, "error");
      }
    });
  }

  function deleteButton(project, version, error) {
    return confirmButton("Delete", `Delete version ${version} of ${project}`,
      `Delete ${version}?`, async () => {
        fill(error);
        try {
          await call("delete-version.json", {form: {project, version}});
          notice(`Deleted version ${version} of ${project}.`);
          load();
        } catch (err) {
          fill(error, `Version ${version} was not deleted (${err.status}): ${err.message}`);
        }
      });
  }

  /** The versions of project p: a row under the project's row. */
  function versionsRow(p) {
    if (!p.versions.length) return null;
    const error = h("p", {class: "error version-error", role: "alert"});
    return h("tr", {class: "versions", dataset: {versionsOf: p.name}},
      h("td", {colspan: 4},
        h("table", {class: "versions", "aria-label": `Versions of ${p.name}`},
          h("thead", {}, h("tr", {}, ["Version", "Kind", "Pushed", "Contents", ""].map((t) =>
            h("th", {scope: "col"}, t)))),
          h("tbody", {}, p.versions.map((v) => h("tr", {
            dataset: {version: v.name, current: v.current ? "yes" : "no"}},
          h("th", {scope: "row"}, v.name, v.current
            ? [" ", h("span", {class: "badge current"}, "current")] : null),
          h("td", {}, v.kind),
          h("td", {}, timeEl(v.pushed)),
          h("td", {}, count(v.spiders.length, "spider"),
            v.scripts.length ? `, ${count(v.scripts.length, "script")}` : ""),
          h("td", {class: "actions"},
            app.canOperate && !v.current ? deleteButton(p.name, v.name, error) : null))))),
        error));
  }

  async function load() {
    try {
      const {projects} = await call("list-projects.json");
      const found = await Promise.all(projects.map(describe));
      if (!found.length) {
        fill(list, h("p", {class: "muted"}, "No project yet."));
        return;
      }
      fill(list, h("table", {class: "projects"},
        h("thead", {}, h("tr", {}, ["Project", "Spiders", "Scripts", ""].map((t) =>
          h("th", {scope: "col"}, t)))),
        h("tbody", {}, found.map((p) => [h("tr", {dataset: {project: p.name}},
          h("th", {scope: "row"}, p.name),
          h("td", {}, names(p.spiders)),
          h("td", {}, names(p.scripts)),
          h("td", {class: "actions"},
            h("a", {href: `#/jobs?project=${encodeURIComponent(p.name)}`}, "Jobs"),
            app.canOperate ? h("a", {href: `#/schedule?project=${encodeURIComponent(p.name)}`},
              "Schedule") : null,
            app.canOperate ? removeButton(p.name) : null)), versionsRow(p)]))));
    } catch (err) {
      fill(list, h("p", {class: "error"}, err.message));
    }
  }

  fill(box, h("h1", {}, "Projects"), upload,
    h("section", {class: "card", "aria-labelledby": "list-title"},
      h("h2", {id: "list-title"}, "Pushed projects"), list));
  load();
  return {leave() {}};
}
