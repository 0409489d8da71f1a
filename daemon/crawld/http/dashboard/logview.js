// One log of a job (.out or .err) as the job view shows it: only its tail is loaded
// (get-log with a negative offset and follow=0: a 1 GB log is never fetched whole),
// older parts on demand ("Load older", a bounded part before the first byte shown),
// and, while the job runs, what it writes next, read from get-log's own follow stream.

import {request} from "./api.js";
import {fill, h, size} from "./dom.js";

const TAIL = 64 * 1024; // bytes loaded at first and by each "Load older"
const MAX_SHOWN = 2 * 1024 * 1024; // characters kept on the page: older ones are dropped

export class LogView {
  constructor(jobId, stream) {
    this.jobId = jobId;
    this.stream = stream;
    this.start = 0; // byte offset of the first byte shown
    this.end = 0; // byte offset after the last byte shown
    this.following = null; // AbortController of the follow stream
    this.loaded = false; // the tail is shown: following starts after it
    this.pre = h("pre", {class: "log", id: `log-${stream}`, tabindex: 0,
      "aria-label": `standard ${stream === "out" ? "output" : "error"} of the job`});
    this.older = h("button", {type: "button", class: "small", id: `older-${stream}`,
      hidden: true, onclick: () => this.loadOlder()}, "Load older");
    this.info = h("span", {class: "muted small", id: `log-info-${stream}`});
    this.el = h("div", {class: "logbox"}, h("div", {class: "log-bar"}, this.older, this.info),
      this.pre);
  }

  path() {
    return `get-log/logs/${this.jobId}.${this.stream}`;
  }

  async part(params) {
    const response = await request(this.path(), {params: {...params, follow: 0}});
    if (response.status === 404) return null;
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return {text: await response.text(), offset: Number(response.headers.get("X-Log-Offset")),
      size: Number(response.headers.get("X-Log-Size"))};
  }

  /** Load the tail: the last TAIL bytes. */
  async load() {
    try {
      const found = await this.part({offset: -TAIL});
      this.loaded = true;
      if (!found) {
        fill(this.pre, h("span", {class: "muted"}, "No log (the job has not started)."));
        return;
      }
      this.start = found.offset;
      this.end = found.size;
      this.pre.textContent = found.text;
      this.showInfo();
      this.pre.scrollTop = this.pre.scrollHeight;
    } catch (error) {
      fill(this.pre, h("span", {class: "error"}, error.message));
    }
  }

  async loadOlder() {
    const from = Math.max(0, this.start - TAIL);
    const found = await this.part({offset: from, limit: this.start - from});
    if (!found) return;
    const height = this.pre.scrollHeight;
    this.pre.prepend(document.createTextNode(found.text));
    this.start = from;
    this.showInfo();
    this.pre.scrollTop += this.pre.scrollHeight - height; // stay where the reader was
  }

  showInfo() {
    this.older.hidden = this.start === 0;
    fill(this.info, this.end
      ? `bytes ${size(this.start)} to ${size(this.end)} of the log` : "empty so far");
  }

  /** Follow what the job writes from the last byte shown, until it ends. */
  async follow() {
    if (this.following || !this.loaded) return;
    if (this.pre.querySelector(".muted")) this.pre.textContent = "";
    this.following = new AbortController();
    try {
      const response = await request(this.path(), {params: {offset: this.end},
        signal: this.following.signal});
      if (!response.ok) return;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        this.end += value.length;
        this.append(decoder.decode(value, {stream: true}));
      }
    } catch {
      // aborted (the view was left) or the connection dropped: the tail stays shown
    } finally {
      this.following = null;
      this.showInfo(); // no longer "following"
    }
  }

  append(text) {
    const pre = this.pre;
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    pre.append(document.createTextNode(text));
    if (pre.textContent.length > MAX_SHOWN) {
      const kept = pre.textContent.slice(-MAX_SHOWN / 2);
      pre.textContent = kept;
      this.start = this.end - new TextEncoder().encode(kept).length;
      this.showInfo();
    } else {
      fill(this.info, `bytes ${size(this.start)} to ${size(this.end)} of the log, following`);
    }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  stop() {
    if (this.following) this.following.abort();
  }
}
