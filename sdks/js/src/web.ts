// The browser host: the recorder over localStorage, fetch, sendBeacon and the page's
// lifecycle. Do Not Track and Global Privacy Control turn recording off before
// anything is written to storage or sent. The bundles' entries are `browser.ts` (debug
// notes as codes) and `browser-debug.ts` (in words).

import { createCore, type Tally, type TallyOptions } from "./core.js";
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

/** `createTally`, with the words for debug notes when `describe` is given. */
export function createBrowserTally(options: TallyOptions, describe?: Describe): Tally {
  const nav = globalThis.navigator as PrivacyNavigator | undefined;
  const refusal = browserRefusal(nav);
  let storage: KeyValueStorage | null = null;
  try {
    // Reading it throws where storage is blocked (sandboxed frames, some privacy
    // modes); the SDK then keeps its queue in memory only.
    if (!refusal) storage = localStorage;
  } catch {}
  return createCore(options, {
    storage,
    // Looked up at each call, so a page's later wrapper of `fetch` is honoured; where
    // there is none, the call throws and the collector counts as unreachable.
    fetch: (url, init) => fetch(url, init),
    random: (bytes) => crypto.getRandomValues(bytes),
    now: Date.now,
    refusal,
    defaultSource: "web",
    // A browser without `sendBeacon` throws here, and the queue goes with `fetch` keepalive.
    sendBeacon: (url, body) => nav!.sendBeacon!(url, body),
    onHidden: (callback) => {
      if (typeof addEventListener !== "function") return;
      addEventListener("pagehide", callback);
      // On the document: browsers from before 2020 do not let it bubble to the window.
      globalThis.document?.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "hidden") callback();
      });
    },
    // The path only: never the query string or fragment, which carry searches, tokens
    // and form values.
    route: () => globalThis.location?.pathname,
    describe,
  });
}
