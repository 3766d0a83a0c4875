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

/** What one app keeps: its queue, install id, session, and the opt-out choice. */
export type StoredItem = "queue" | "install" | "session" | "consent";
