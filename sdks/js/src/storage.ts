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

/** One app's items in a storage that may be missing or may throw: a read that fails
 * is null, a write that fails is reported and the SDK keeps going in memory. Keys
 * carry the app's name, so two apps on one origin never mix. */
export class AppStorage {
  constructor(
    readonly _storage: KeyValueStorage | null,
    private readonly _app: string,
    private readonly _failed: (key: string, err: unknown) => void,
  ) {}

  _key(item: StoredItem): string {
    return `tally:${this._app}:${item}`;
  }

  _read(item: StoredItem): string | null {
    try {
      return this._storage ? this._storage.getItem(this._key(item)) : null;
    } catch {
      return null;
    }
  }

  /** Writes `value`, or removes the item when it is null. */
  _write(item: StoredItem, value: string | null): void {
    const key = this._key(item);
    try {
      if (!this._storage) return;
      if (value === null) this._storage.removeItem(key);
      else this._storage.setItem(key, value);
    } catch (err) {
      this._failed(key, err);
    }
  }
}
