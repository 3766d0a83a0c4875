// What the end-to-end tests share: a real `tally serve`, a static server for the test
// page (another origin), a counting proxy in front of the collector, and headless
// Chromium driven by puppeteer-core.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const workspace = join(root, "..", "..");

/** The `tally` binary: $TALLY_BIN, or the workspace's debug build. */
export function tallyBinary() {
  const path = process.env.TALLY_BIN ?? join(workspace, "target", "debug", "tally");
  if (!existsSync(path)) {
    throw new Error(
      `${path} is missing: run \`cargo build -p tally-cli\` first (or set TALLY_BIN)`,
    );
  }
  return path;
}

/** Chromium, or null (outside CI) with a note; under CI a missing browser fails. */
export function chromiumPath() {
  const path = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (existsSync(path)) return path;
  if (process.env.CI) throw new Error(`${path} is missing; CI must install chromium`);
  console.log(`note: ${path} not found; skipping the headless browser tests`);
  return null;
}

export const APP = "webe2e";

/** Starts `tally serve` on a free port with CORS for `origin`; returns its URL and keys. */
export async function startCollector(origins) {
  const bin = tallyBinary();
  const dir = mkdtempSync(join(tmpdir(), "tally-e2e-"));
  const db = join(dir, "collector.db");
  const key = (app, role) => {
    const args = ["keys", "create", "--db", db, "--app", app, "--role", role];
    return execFileSync(bin, args, { encoding: "utf8" }).trim().split("\n").at(-1);
  };
  const ingest = key(APP, "ingest");
  const admin = key(APP, "admin");
  const config = join(dir, "collector.toml");
  writeFileSync(
    config,
    `cors_allowed_origins = ${JSON.stringify(origins)}\nrate_limit_burst = 10000\n`,
  );
  const child = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--db", db, "--config", config], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const url = await new Promise((resolve, reject) => {
    let log = "";
    child.stderr.on("data", (chunk) => {
      log += chunk;
      const match = log.match(/listening on (http:\/\/\S+) \(/);
      if (match) resolve(match[1]);
    });
    child.on("exit", (code) => reject(new Error(`tally serve exited (${code}): ${log}`)));
  });
  const stored = async (installId) => {
    const response = await fetch(`${url}/v1/events?install_id=${installId}&limit=1000`, {
      headers: { authorization: `Bearer ${admin}` },
    });
    if (response.status !== 200) {
      throw new Error(`GET /v1/events: ${response.status} ${await response.text()}`);
    }
    return (await response.json()).events;
  };
  // Keys are looked up on use, so one made while the collector runs works at once.
  const stop = () => {
    child.kill("SIGTERM");
    child.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  };
  return { url, ingest, admin, key, stored, stop };
}

/** A proxy to `target` that counts ingest requests and can answer 503 to the first few. */
export async function startProxy(target) {
  const state = { failNext: 0, posts: [] };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      if (req.method === "POST") {
        state.posts.push({
          url: req.url,
          type: req.headers["content-type"],
          body: body.toString(),
        });
        if (state.failNext > 0) {
          state.failNext--;
          res.writeHead(503, {
            "content-type": "application/json",
            "retry-after": "1",
            "access-control-allow-origin": req.headers.origin ?? "",
            "access-control-expose-headers": "retry-after",
          });
          res.end('{"error":{"code":"unavailable","message":"overloaded (test proxy)"}}');
          return;
        }
      }
      const forward = httpRequest(
        `${target}${req.url}`,
        { method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode, answer.headers);
          answer.pipe(res);
        },
      );
      forward.on("error", () => {
        res.writeHead(502);
        res.end();
      });
      forward.end(body);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, state, close: () => server.close() };
}

/** Serves the test page and the built bundle; returns the page origin. */
export async function startPageServer(extra = {}) {
  const files = {
    ...extra,
    "/tally.min.js": ["text/javascript", readFileSync(join(root, "dist", "tally.min.js"))],
    "/page.html": ["text/html", readFileSync(join(root, "e2e", "page.html"))],
    "/other.html": ["text/html", "<!doctype html><title>other</title><p>another page"],
  };
  const server = createServer((req, res) => {
    const file = files[new URL(req.url, "http://x").pathname];
    if (!file) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { "content-type": file[0], "cache-control": "no-store" });
    res.end(typeof file[1] === "function" ? file[1]() : file[1]);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

/** Headless Chromium with a fresh profile, as the team's guide prescribes. */
export async function launchChromium(executablePath) {
  const { default: puppeteer } = await import("puppeteer-core");
  const profile = mkdtempSync(join(tmpdir(), "tally-chromium-"));
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    userDataDir: profile,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  // close() waits for Chromium to exit; only then is its profile free to delete.
  const close = browser.close.bind(browser);
  browser.close = async () => {
    await close();
    try {
      rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
    } catch {
      // A leftover temporary directory is not worth failing a test for.
    }
  };
  return browser;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `check()` resolves truthy, for at most `ms`. */
export async function until(check, ms = 20_000, what = String(check)) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}
