// The Node entry point: `createTally` for programs and servers. The queue is in memory,
// or in a file when `queuePath` is given, so a crash or restart loses nothing queued.
// Timers never keep the process alive, `shutdown()` stops within its timeout, and a
// program that ends without calling it still gets one bounded flush before exit.

import { randomFillSync } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

import { createCore, type Tally, type TallyOptions } from "./core.js";
import { describe, type Refusal } from "./messages.js";
import { memoryStorage, type KeyValueStorage } from "./storage.js";

export type { CommandTimer, Tally, TallyOptions, TallyStats, TrackFields } from "./core.js";
export type { Level } from "./level.js";
export { memoryStorage, type KeyValueStorage } from "./storage.js";
export { validateEvent, type TallyEvent, type ValidationError } from "./validate.js";

/** Node settings: the browser's, plus where the queue is kept. */
export interface NodeTallyOptions extends TallyOptions {
  /** A JSON file holding the queue and ids across runs; memory when absent. */
  queuePath?: string;
  /** Flush within this many ms when the process is about to exit; default 2000. */
  exitTimeoutMs?: number;
}

/** Storage in one JSON file, rewritten whole through a rename so it is never torn. */
export function fileStorage(path: string): KeyValueStorage {
  let items: Record<string, string> = {};
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8")) as unknown;
    if (parsed && typeof parsed === "object") items = parsed as Record<string, string>;
  } catch {
    // Missing or unreadable: start empty; the next write replaces it.
  }
  const save = (): void => {
    mkdirSync(dirname(path), { recursive: true });
    const temporary = `${path}.${process.pid}.tmp`;
    writeFileSync(temporary, JSON.stringify(items), { mode: 0o600 });
    renameSync(temporary, path);
  };
  return {
    getItem: (key) => items[key] ?? null,
    setItem: (key, value) => {
      items[key] = value;
      save();
    },
    removeItem: (key) => {
      if (key in items) {
        delete items[key];
        save();
      }
    },
  };
}

/** `DO_NOT_TRACK` set to anything but empty or `0` asks for no recording, as for the
 * Rust SDK. */
export function environmentRefusal(env: Record<string, string | undefined>): Refusal | null {
  const value = env.DO_NOT_TRACK;
  return value !== undefined && value !== "" && value !== "0" ? "env" : null;
}

/** Starts recording in a Node program. Never throws. */
export function createTally(options: NodeTallyOptions): Tally {
  const refusal = environmentRefusal(process.env);
  let storage: KeyValueStorage | null = null;
  if (!refusal) {
    try {
      storage = options.queuePath ? fileStorage(options.queuePath) : memoryStorage();
    } catch {
      storage = memoryStorage();
    }
  }
  const tally = createCore(options, {
    storage,
    fetch: globalThis.fetch,
    random: (bytes) => void randomFillSync(bytes),
    now: () => Date.now(),
    refusal,
    defaultSource: "backend",
    unref: (timer) => timer.unref?.(),
    describe,
  });
  if (tally.isEnabled()) {
    // `beforeExit` comes when nothing else keeps the loop alive: one bounded flush, once.
    const onExit = (): void => {
      process.removeListener("beforeExit", onExit);
      void tally.shutdown({ timeoutMs: options.exitTimeoutMs ?? 2000 });
    };
    process.on("beforeExit", onExit);
  }
  return tally;
}
