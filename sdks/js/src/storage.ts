// Where the queue, ids and the opt-out choice live: `localStorage` in browsers, memory
// or a file in Node. The SDK only ever needs these three synchronous calls.

/** The part of the Web Storage API the SDK uses. */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Storage that lives as long as the process: nothing survives a restart. */
export function memoryStorage(): KeyValueStorage {
  const items = new Map<string, string>();
  return {
    getItem: (key) => items.get(key) ?? null,
    setItem: (key, value) => void items.set(key, value),
    removeItem: (key) => void items.delete(key),
  };
}

/** The storage keys of one app, so two apps on one origin never mix. */
export function storageKeys(app: string) {
  const prefix = `tally:${app}:`;
  return {
    queue: `${prefix}queue`,
    install: `${prefix}install`,
    session: `${prefix}session`,
    consent: `${prefix}consent`,
  };
}
