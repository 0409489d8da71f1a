// Logging in: an API key (kept in this tab and sent as a Bearer token), or a user and
// password, checked once by POST /login.json for a session token sent the same way.

import {ApiError, call, credential} from "./api.js";
import {fill, h} from "./dom.js";

export function renderLogin(box, {message, done}) {
  const error = h("p", {class: "error", role: "alert", id: "login-error"});
  const fail = (text) => fill(error, text);

  const keyInput = h("input", {id: "login-key", type: "password", autocomplete: "off",
    required: true, spellcheck: "false"});
  const keyForm = h("form", {class: "card login", "aria-labelledby": "login-key-title"},
    h("h2", {id: "login-key-title"}, "With an API key"),
    h("label", {for: "login-key"}, "API key"), keyInput,
    h("p", {class: "hint"}, "crawld keys add --role reader|operator prints one."),
    h("button", {type: "submit"}, "Log in with the key"));
  keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    fail("");
    credential.set("key", keyInput.value.trim());
    try {
      const who = await call("whoami.json");
      if (!who.role) throw new ApiError(401, "no credential was accepted");
      done();
    } catch (err) {
      credential.clear();
      fail(err.status === 401 ? "That key is not valid." : err.message);
    }
  });

  const user = h("input", {id: "login-user", autocomplete: "username", required: true,
    spellcheck: "false"});
  const password = h("input", {id: "login-password", type: "password",
    autocomplete: "current-password", required: true});
  const userForm = h("form", {class: "card login", "aria-labelledby": "login-user-title"},
    h("h2", {id: "login-user-title"}, "With a user and password"),
    h("label", {for: "login-user"}, "User"), user,
    h("label", {for: "login-password"}, "Password"), password,
    h("button", {type: "submit"}, "Log in"));
  userForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    fail("");
    credential.clear();
    try {
      const answer = await call("login.json", {form: {user: user.value, password: password.value}});
      credential.set("session", answer.token);
      password.value = "";
      done();
    } catch (err) {
      fail(err.status === 401 ? "Wrong user or password." : err.message);
    }
  });

  fill(box,
    h("h1", {}, "Log in to crawld"),
    message ? h("p", {class: "muted"}, message) : null,
    error,
    h("div", {class: "login-forms"}, userForm, keyForm));
  user.focus();
}
