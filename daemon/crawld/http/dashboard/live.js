// Live updates: the daemon's job events (GET /events?format=ndjson), read with fetch()
// and a stream reader, since EventSource cannot send an Authorization header. A dropped
// stream reconnects after a growing pause and resumes after the last event it had
// (last-event-id), so nothing is missed. A daemon without /events (404) is polled: the
// views are told to reload what they show every few seconds.

import {readLines, request} from "./api.js";

const POLL_MS = 3000;

export class Live {
  constructor() {
    this.listeners = new Set();
    this.mode = "off"; // stream | poll | off
    this.lastId = null;
    this.stopped = false;
    this.abort = null;
    this.timer = null;
  }

  /** fn(event) for each event: {kind: created|started|stats|ended|changed, job},
   * {kind: "reset"} (reload what you show) or {kind: "poll"} (the same, when polling).
   * Returns the function that stops listening. */
  listen(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(event) {
    for (const fn of [...this.listeners]) {
      try {
        fn(event);
      } catch (error) {
        console.error("a view failed on a live event", error);
      }
    }
  }

  start() {
    this.stopped = false;
    this.run();
  }

  stop() {
    this.stopped = true;
    this.mode = "off";
    if (this.abort) this.abort.abort();
    clearInterval(this.timer);
  }

  async run() {
    let pause = 1000;
    while (!this.stopped) {
      this.abort = new AbortController();
      try {
        const response = await request("events", {
          params: {format: "ndjson", "last-event-id": this.lastId},
          signal: this.abort.signal,
        });
        if (response.status === 404) {
          this.poll();
          return;
        }
        if (response.status === 401 || response.status === 403) return; // the app logs in again
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        this.mode = "stream";
        pause = 1000;
        await readLines(response, (line) => this.line(line));
      } catch (error) {
        if (this.stopped) return;
      }
      this.mode = "off";
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 15000);
    }
  }

  line(text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      return;
    }
    const kind = data.event || data.kind;
    if (kind === "keep-alive") return;
    if (data.id) this.lastId = data.id;
    if (kind === "reset") {
      this.emit({kind: "reset"});
      return;
    }
    if (kind === "ready") return;
    const job = data.job || (data.identifier ? data : null);
    if (job) this.emit({kind, job});
  }

  poll() {
    this.mode = "poll";
    clearInterval(this.timer);
    this.timer = setInterval(() => this.emit({kind: "poll"}), POLL_MS);
  }
}
