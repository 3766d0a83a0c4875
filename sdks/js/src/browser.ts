// The browser host: `createTally` with localStorage, fetch, sendBeacon and the page's
// lifecycle. Do Not Track and Global Privacy Control turn recording off before
// anything is written to storage or sent. This file is the small bundle's entry
// (dist/tally.min.js), so it exports only what a page needs, and its debug notes are
// codes; `browser-debug.ts` adds their sentences.

import { createCore, type Platform, type Tally, type TallyOptions } from "./core.js";
import type { Describe, Refusal } from "./messages.js";
import type { KeyValueStorage } from "./storage.js";

interface PrivacyNavigator {
  doNotTrack?: string | null;
  globalPrivacyControl?: boolean;
  sendBeacon?: (url: string, data?: BodyInit | null) => boolean;
}

/** Why the browser asks for no tracking (`gpc`, `dnt`), or null. */
export function browserRefusal(nav: PrivacyNavigator | undefined): Refusal | null {
  if (nav?.globalPrivacyControl === true) return "gpc";
  return nav?.doNotTrack === "1" ? "dnt" : null;
}

function localStorageOrNull(): KeyValueStorage | null {
  try {
    // Reading the property throws where storage is blocked (sandboxed frames, some
    // privacy modes); the SDK then keeps its queue in memory only.
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

/** Starts recording in a web page. Never throws; with DNT, GPC or an earlier
 * `optOut()`, the handle records, stores and sends nothing. */
export function createTally(options: TallyOptions): Tally {
  return createBrowserTally(options);
}

/** `createTally`, with the words for debug notes when `describe` is given. */
export function createBrowserTally(options: TallyOptions, describe?: Describe): Tally {
  const nav = globalThis.navigator as PrivacyNavigator | undefined;
  const refusal = browserRefusal(nav);
  const platform: Platform = {
    storage: refusal ? null : localStorageOrNull(),
    // Looked up at each call, so a page's later wrapper of `fetch` is honoured.
    fetch: "fetch" in globalThis ? (url, init) => fetch(url, init) : undefined,
    random: (bytes) => void globalThis.crypto.getRandomValues(bytes),
    now: () => Date.now(),
    refusal,
    defaultSource: "web",
    sendBeacon: nav?.sendBeacon ? (url, body) => nav.sendBeacon!(url, body) : undefined,
    onHidden: (callback) => {
      if (typeof addEventListener !== "function") return;
      addEventListener("pagehide", callback);
      if (typeof document !== "undefined") {
        document.addEventListener("visibilitychange", () => {
          if (document.visibilityState === "hidden") callback();
        });
      }
    },
    // The path only: never the query string or fragment, which carry searches, tokens
    // and form values.
    route: () => (typeof location !== "undefined" ? location.pathname : undefined),
    describe,
  };
  return createCore(options, platform);
}
