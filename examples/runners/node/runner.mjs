#!/usr/bin/env node
// A designrun runner in Node 20, no dependencies: a reference for runner authors (docs/runner.md).
//
//   node runner.mjs [COMMAND [ARGS...]] < job.json     (or DESIGNRUN_JOB='{...}' node runner.mjs)
//
// It reports "running", runs COMMAND (default: a short built-in demo) with DESIGNRUN_OUTPUT_DIR,
// DESIGNRUN_PROMPT and DESIGNRUN_RUN_ID set, streams its stdout/stderr lines as log events in
// batches (in order, one sender at a time, every event with an idempotency key and its number in
// metadata.seq), reports progress, uploads the files left in the output folder, and finishes
// "completed" (or "failed") with eventCount and artifactCount.
//
// The rules a runner must keep (what `designrun-runner-check` tests):
// - retry connection errors, 429 and 5xx with backoff; a Retry-After holds for every request;
// - resend a batch unchanged (same idempotency keys) until it is acknowledged;
// - any other 4xx is final: the request is dropped, never resent;
// - 409 means the run was cancelled: stop the command, exit;
// - refresh the run-scoped token before it expires (here: at half its life).
import { spawn } from "node:child_process";
import { mkdtempSync, openAsBlob, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { randomUUID } from "node:crypto";

const MAX_ATTEMPTS = 10;
const BATCH = 20;
const FLUSH_MS = 200;

class Refused extends Error {}
class Cancelled extends Error {}

function readJob() {
  const text = process.env.DESIGNRUN_JOB || readFileSync(0, "utf8");
  const job = JSON.parse(text);
  if (!job.callbackUrl || !(job.runnerToken || job.runnerSecret)) {
    throw new Error("the job needs callbackUrl and runnerToken");
  }
  return job;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Client {
  constructor(job) {
    this.base = job.callbackUrl.replace(/\/+$/, "");
    this.prefix = randomUUID();
    this.notBefore = 0; // Date.now() before which nothing is sent (a Retry-After)
    this.setToken(job.runnerToken || job.runnerSecret);
  }

  setToken(token) {
    this.token = token;
    this.refreshAt = Infinity; // the legacy shared secret never expires
    const payload = token.split(".")[1];
    if (payload) {
      try {
        const { exp } = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
        if (Number.isFinite(exp)) this.refreshAt = Date.now() + (exp * 1000 - Date.now()) / 2;
      } catch {
        // not a JWT: used as it is
      }
    }
  }

  async refreshIfDue() {
    if (Date.now() < this.refreshAt || this.refreshing) return;
    this.refreshing = true;
    try {
      const answer = await this.post("token", () => ({ body: "{}", json: true }), { refresh: false });
      if (answer.runnerToken) this.setToken(answer.runnerToken);
    } catch (error) {
      if (error instanceof Cancelled) throw error;
      // keep the current token; the next request tries again
    } finally {
      this.refreshing = false;
    }
  }

  // POST with retries; makeBody() is called per attempt (a file body is re-read each time).
  async post(endpoint, makeBody, { refresh = true } = {}) {
    for (let attempt = 1; ; attempt++) {
      if (refresh) await this.refreshIfDue();
      const wait = this.notBefore - Date.now();
      if (wait > 0) await sleep(wait);
      const { body, json } = await makeBody();
      const headers = { Authorization: `Bearer ${this.token}`, Accept: "application/json" };
      if (json) headers["Content-Type"] = "application/json";
      let response;
      try {
        response = await fetch(`${this.base}/${endpoint}`, {
          method: "POST",
          headers,
          body,
          signal: AbortSignal.timeout(30_000),
        });
      } catch {
        response = null; // connection error or timeout: the request may have been stored
      }
      const status = response ? response.status : 0;
      const answer = response ? await response.json().catch(() => ({})) : {};
      if (status >= 200 && status < 300) return answer;
      if (status === 409) throw new Cancelled(`the run is ${answer.runStatus}`);
      if (status !== 0 && status !== 429 && status < 500) {
        throw new Refused(`${endpoint}: HTTP ${status} ${answer.code || ""}`);
      }
      if (attempt >= MAX_ATTEMPTS) throw new Error(`${endpoint}: giving up after ${attempt} attempts`);
      const retryAfter = Number(response?.headers.get("retry-after"));
      let delay = Math.min(5000, 200 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
      if (Number.isFinite(retryAfter) && retryAfter >= 0 && response?.headers.has("retry-after")) {
        delay = retryAfter * 1000;
        this.notBefore = Math.max(this.notBefore, Date.now() + delay);
      }
      await sleep(delay);
    }
  }

  json(endpoint, value) {
    return this.post(endpoint, () => ({ body: JSON.stringify(value), json: true }));
  }
}

class Events {
  constructor(client, onError) {
    this.client = client;
    this.onError = onError;
    this.queue = [];
    this.count = 0;
    this.sending = Promise.resolve();
    this.timer = null;
  }

  add(eventType, message) {
    this.count += 1;
    this.queue.push({
      eventType,
      message,
      metadata: { seq: this.count },
      idempotencyKey: `${this.client.prefix}:${this.count}`,
    });
    if (this.queue.length >= BATCH) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), FLUSH_MS);
  }

  // One sender at a time, batches from the head of the queue: the order is kept, and a batch
  // leaves the queue only once acknowledged (or refused for good).
  flush() {
    clearTimeout(this.timer);
    this.timer = null;
    this.sending = this.sending
      .then(async () => {
        while (this.queue.length) {
          const batch = this.queue.slice(0, BATCH);
          try {
            await this.client.json("events", { events: batch });
          } catch (error) {
            if (!(error instanceof Refused)) throw error;
            console.error(`runner.mjs: events refused and dropped: ${error.message}`);
          }
          this.queue.splice(0, batch.length);
        }
      })
      .catch(this.onError);
    return this.sending;
  }
}

async function main() {
  const job = readJob();
  const client = new Client(job);
  const out = mkdtempSync(join(tmpdir(), "designrun-node-"));
  let child = null;
  let failure = null; // the first error that ends the run (a Cancelled, or retries spent)
  const fail = (error) => {
    if (failure) return;
    failure = error;
    if (child && child.exitCode === null) child.kill("SIGTERM");
  };
  const events = new Events(client, fail);
  try {
    await client.json("status", { status: "running" });
    const command = process.argv.slice(2);
    const [program, ...args] = command.length ? command : [process.execPath, "-e", DEMO];
    child = spawn(program, args, {
      cwd: out,
      env: {
        ...process.env,
        DESIGNRUN_JOB: "",
        DESIGNRUN_OUTPUT_DIR: out,
        DESIGNRUN_PROMPT: job.prompt || "",
        DESIGNRUN_RUN_ID: job.runId || "",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise((resolve) => child.on("close", (code) => resolve(code ?? 1)));
    let lines = 0;
    let progress = Promise.resolve();
    const onLine = (stream) => (line) => {
      events.add(`log.${stream}`, line);
      lines += 1;
      if (lines % 3 === 0) {
        // A progress report is also how a cancel (409) is learnt; a refused one is not fatal.
        const value = lines / (lines + 6);
        progress = progress
          .then(() => client.json("status", { progress: value }))
          .catch((error) => {
            if (!(error instanceof Refused)) fail(error);
          });
      }
    };
    createInterface({ input: child.stdout }).on("line", onLine("stdout"));
    createInterface({ input: child.stderr }).on("line", onLine("stderr"));
    const code = await exited;
    await progress;
    await events.flush(); // events are accepted in any run state: send them even after a cancel
    if (failure) throw failure;
    let uploads = 0;
    for (const name of readdirSync(out)) {
      const path = join(out, name);
      if (!statSync(path).isFile()) continue;
      uploads += 1;
      const key = `${client.prefix}:artifact:${uploads}`;
      await client.post("artifacts", async () => {
        const form = new FormData();
        form.set("artifactType", "file");
        form.set("idempotencyKey", key);
        form.set("file", await openAsBlob(path), name);
        return { body: form, json: false };
      });
    }
    const counts = { eventCount: events.count, artifactCount: uploads };
    if (code === 0) {
      await client.json("status", { status: "completed", ...counts });
    } else {
      const error = `command exited with code ${code}`;
      await client.json("status", { status: "failed", error, ...counts });
    }
    return code;
  } catch (error) {
    if (error instanceof Cancelled) {
      if (child && child.exitCode === null) child.kill("SIGTERM");
      console.error(`runner.mjs: ${error.message}; stopped`);
      return 0;
    }
    throw error;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const DEMO = `
const fs = require("node:fs");
let i = 0;
const step = () => {
  i += 1;
  console.log("step " + i + " of 12");
  if (i < 12) return setTimeout(step, 100);
  fs.writeFileSync(process.env.DESIGNRUN_OUTPUT_DIR + "/index.html", "<h1>" + (process.env.DESIGNRUN_PROMPT || "hello") + "</h1>\\n");
};
step();
`;

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`runner.mjs: ${error.stack || error}`);
    process.exit(1);
  },
);
