// Projects: each project with its spiders and scripts; push an archive (drop it on the
// zone or pick it with the file input), with the API's error shown as it gives it;
// remove a project (asked twice, in the page: no browser dialog).

import {call} from "./api.js";
import {fill, h, notice} from "./dom.js";

async function describe(name) {
  const [spiders, scripts] = await Promise.all([
    call("list-spiders.json", {params: {project: name}}).then((a) => a.spiders, () => []),
    call("list-scripts.json", {params: {project: name}}).then((a) => a.scripts, () => []),
  ]);
  return {name, spiders, scripts};
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
    const button = h("button", {type: "button", class: "danger small",
      "aria-label": `Remove project ${name}`}, "Remove");
    let armed = false;
    button.addEventListener("click", async () => {
      if (!armed) {
        armed = true;
        button.textContent = `Remove ${name}?`;
        button.setAttribute("aria-label", `Confirm: remove project ${name}`);
        setTimeout(() => {
          armed = false;
          button.textContent = "Remove";
          button.setAttribute("aria-label", `Remove project ${name}`);
        }, 5000);
        return;
      }
      try {
        await call("remove-project.json", {form: {name}});
        notice(`Removed ${name}.`);
        load();
      } catch (err) {
        notice(`Cannot remove ${name}: ${err.message}`, "error");
      }
    });
    return button;
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
        h("tbody", {}, found.map((p) => h("tr", {dataset: {project: p.name}},
          h("th", {scope: "row"}, p.name),
          h("td", {}, names(p.spiders)),
          h("td", {}, names(p.scripts)),
          h("td", {class: "actions"},
            h("a", {href: `#/jobs?project=${encodeURIComponent(p.name)}`}, "Jobs"),
            app.canOperate ? h("a", {href: `#/schedule?project=${encodeURIComponent(p.name)}`},
              "Schedule") : null,
            app.canOperate ? removeButton(p.name) : null))))));
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
