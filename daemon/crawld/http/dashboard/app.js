// The crawld dashboard: who is logged in, the views by the URL's fragment
// (#/overview, #/projects, #/schedule, #/jobs?..., #/job/<id>) and live updates.

import {ApiError, call, credential, firstWhoami, onUnauthorized} from "./api.js";
import {fill, h, notice} from "./dom.js";
import {Live} from "./live.js";
import {renderLogin} from "./login.js";
import * as overview from "./overview.js";
import * as projects from "./projects.js";
import * as schedule from "./schedule.js";
import * as jobs from "./jobs.js";
import * as job from "./job.js";

const VIEWS = {overview, projects, schedule, jobs, job};
const main = () => document.getElementById("main");

const app = {
  who: null,
  live: new Live(),
  current: null, // the shown view's handle: {leave()}
  get canOperate() {
    return Boolean(this.who && this.who.role === "operator");
  },
  /** Go to a view: app.go("jobs", {tab: "completed"}) or app.go("job/<id>"). */
  go(path, params) {
    const query = params ? new URLSearchParams(params).toString() : "";
    location.hash = `#/${path}${query ? `?${query}` : ""}`;
  },
};

function parseHash() {
  const text = location.hash.replace(/^#\/?/, "") || "overview";
  const [path, query] = text.split("?");
  const [name, ...rest] = path.split("/");
  return {name, arg: rest.join("/"), params: new URLSearchParams(query || "")};
}

function route() {
  if (!app.who) return;
  const {name, arg, params} = parseHash();
  const view = VIEWS[name] || overview;
  if (app.current && app.current.leave) app.current.leave();
  for (const link of document.querySelectorAll("#nav a")) {
    const here = link.getAttribute("href") === `#/${name === "job" ? "jobs" : name}`;
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const box = main();
  fill(box);
  notice("");
  document.title = `crawld: ${name}`;
  app.current = view.render(box, {app, arg, params}) || null;
}

function showWho() {
  const who = app.who;
  const box = document.getElementById("who");
  const nav = document.getElementById("nav");
  nav.hidden = false;
  document.body.classList.toggle("reader", !app.canOperate);
  for (const link of nav.querySelectorAll("[data-operator]")) link.hidden = !app.canOperate;
  if (who.auth === "none") {
    fill(box, h("span", {class: "muted"}, "authentication off"));
    return;
  }
  fill(box,
    h("span", {class: "name"}, who.name || "key"), " ",
    h("span", {class: `role role-${who.role}`}, who.role), " ",
    h("button", {type: "button", class: "link", onclick: logout}, "Log out"));
}

async function logout() {
  const cred = credential.get();
  if (cred && cred.kind === "session") {
    try {
      await call("logout.json", {form: {}});
    } catch {
      // the session may have expired already: nothing to end
    }
  }
  credential.clear();
  loggedOut("You are logged out.");
}

function loggedOut(message) {
  app.who = null;
  app.live.stop();
  if (app.current && app.current.leave) app.current.leave();
  app.current = null;
  document.getElementById("nav").hidden = true;
  fill(document.getElementById("who"));
  renderLogin(main(), {message, done: boot});
}

let started = false;

/** Who are we: log in first when authentication is on and we have no credential. */
export async function boot() {
  let who;
  const asked = started ? call("whoami.json") : firstWhoami; // the first: already on its way
  started = true;
  try {
    who = await asked;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      credential.clear();
      loggedOut("That credential is not valid any more; log in again.");
      return;
    }
    fill(main(), h("p", {class: "error", role: "alert"},
      `The daemon cannot be reached: ${error.message}`));
    return;
  }
  if (who.auth !== "none" && !who.role) {
    loggedOut("");
    return;
  }
  app.who = who;
  showWho();
  app.live.start();
  route();
}

onUnauthorized(() => {
  if (app.who && app.who.auth !== "none") {
    credential.clear();
    loggedOut("Your session has ended; log in again.");
  }
});
window.addEventListener("hashchange", route);
// the skip link moves the focus: a fragment would be taken for a view's name
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  main().focus();
});
boot();
