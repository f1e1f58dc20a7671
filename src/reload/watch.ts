import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { readConfigFile } from '../config/read-file.js';

/**
 * How long after the first change in a watched directory the files are compared, and how long a
 * changed content must then stay the same before it counts. An editor saves in steps (a temp
 * file, a rename, a chmod), `kubectl` updates a ConfigMap or Secret by swapping a symlink, a
 * certificate and its key are written one after the other, and a file copied in place is
 * readable half-written: a half-written config can be valid YAML that lists fewer policies.
 * One reload after the burst, from contents that held still for this long.
 */
export const RELOAD_DEBOUNCE_MS = 500;

/** The debounce's timer (tests fire it by hand). */
export interface DebounceTimer {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimer: DebounceTimer = {
  set: (fn, ms) => setTimeout(fn, ms).unref(),
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * Watches the files a config names and says which changed. It watches their directories, not
 * the files: an editor that saves by writing a new file and renaming it over the old one, and
 * Kubernetes, which mounts a ConfigMap or Secret as symlinks through `..data` and updates them by
 * renaming a new `..data` into place, change the directory entry and leave a watch on the old
 * file (inode) blind. Any event in such a directory schedules one comparison of the files'
 * contents (through symlinks) with what was last seen; only a changed content counts, so an
 * unrelated file in the same directory, or a file saved unchanged, reloads nothing; and it
 * counts once a second look, RELOAD_DEBOUNCE_MS later, finds the same content. A watch follows
 * its directory's inode: a directory moved away and replaced by another of the same name (a
 * deploy that swaps a whole config directory) is watched anew at the next look, else every
 * change in it would go unseen.
 */
export class FileWatcher {
  readonly #onChange: (changed: string[]) => void;
  readonly #log: Logger;
  readonly #debounceMs: number;
  readonly #timer: DebounceTimer;
  /** file → sha256 of its content, or the error reading it (a missing file is a state too). */
  readonly #seen = new Map<string, string>();
  /** file → a changed content seen once, waiting for a second look to find it again. */
  readonly #settling = new Map<string, string>();
  /** directory → its watch, and the identity (device:inode) of the directory it watches. */
  readonly #dirs = new Map<string, { readonly watcher: FSWatcher; readonly id: string }>();
  #scheduled: unknown = undefined;
  #checking: Promise<string[]> = Promise.resolve([]);
  #closed = false;

  constructor(opts: { onChange: (changed: string[]) => void; logger: Logger; debounceMs?: number; timer?: DebounceTimer }) {
    this.#onChange = opts.onChange;
    this.#log = opts.logger;
    this.#debounceMs = opts.debounceMs ?? RELOAD_DEBOUNCE_MS;
    this.#timer = opts.timer ?? realTimer;
  }

  /**
   * From now on, watches these files (and no others). Files watched already keep what was last
   * seen of them, so a change made while a reload was reading them is still seen as one; new
   * files are read now.
   */
  async watch(files: readonly string[]): Promise<void> {
    if (this.#closed) return;
    const wanted = new Set(files);
    for (const f of [...this.#seen.keys()]) {
      if (!wanted.has(f)) {
        this.#seen.delete(f);
        this.#settling.delete(f);
      }
    }
    for (const f of wanted) if (!this.#seen.has(f)) this.#seen.set(f, await contentOf(f));
    const dirs = new Set([...wanted].map((f) => dirname(f)));
    for (const [dir, w] of this.#dirs) {
      if (!dirs.has(dir)) {
        w.watcher.close();
        this.#dirs.delete(dir);
      }
    }
    await this.#followMoved();
    for (const dir of dirs) if (!this.#dirs.has(dir)) await this.#watchDir(dir);
  }

  /**
   * Compares every watched file with what was last seen; calls onChange with those whose new
   * content this look found as the previous look did, once no file is still changing (a first
   * sighting schedules another look): a certificate and its key, or a config and a file it
   * names, written one after the other, make one reload, never one with half of them.
   */
  check(): Promise<string[]> {
    this.#checking = this.#checking.then(async () => {
      await this.#followMoved();
      const held: Array<[string, string]> = [];
      let settling = false;
      for (const [file, before] of this.#seen) {
        const now = await contentOf(file);
        if (!this.#seen.has(file)) continue; // no longer watched
        if (now === before) {
          this.#settling.delete(file);
        } else if (this.#settling.get(file) === now) {
          held.push([file, now]);
        } else {
          this.#settling.set(file, now);
          settling = true;
        }
      }
      if (settling) {
        this.#schedule(); // another look; what held still waits for it
        return [];
      }
      const changed: string[] = [];
      for (const [file, now] of held) {
        this.#settling.delete(file);
        this.#seen.set(file, now);
        changed.push(file);
      }
      if (changed.length > 0 && !this.#closed) {
        try {
          this.#onChange(changed);
        } catch (err) {
          this.#log.error({ err: String(err) }, 'config: reacting to changed files failed');
        }
      }
      return changed;
    });
    return this.#checking;
  }

  /** The comparison the last event led to, once it is done (tests: what it found). */
  get settled(): Promise<string[]> {
    return this.#checking;
  }

  /** The directories watched now. */
  get directories(): string[] {
    return [...this.#dirs.keys()];
  }

  close(): void {
    this.#closed = true;
    if (this.#scheduled !== undefined) this.#timer.clear(this.#scheduled);
    for (const w of this.#dirs.values()) w.watcher.close();
    this.#dirs.clear();
  }

  /** Watches anew each directory whose name now leads to another directory (or to none: dropped until the next `watch`). */
  async #followMoved(): Promise<void> {
    for (const [dir, w] of [...this.#dirs]) {
      const id = await identity(dir);
      if (id === w.id || this.#dirs.get(dir) !== w) continue;
      w.watcher.close();
      this.#dirs.delete(dir);
      if (id !== null && !this.#closed) await this.#watchDir(dir);
    }
  }

  async #watchDir(dir: string): Promise<void> {
    const id = await identity(dir);
    if (this.#closed || this.#dirs.has(dir)) return;
    let w: FSWatcher;
    try {
      // persistent: false, so that watching never keeps a stopping process alive.
      w = watch(dir, { persistent: false }, () => this.#schedule());
    } catch (err) {
      this.#log.warn({ dir, err: (err as Error).message }, 'config: cannot watch this directory; changes of the files in it need SIGHUP');
      return;
    }
    w.on('error', (err) => {
      this.#log.warn({ dir, err: err.message }, 'config: watching this directory failed; watched again after the next reload, SIGHUP until then');
      w.close();
      if (this.#dirs.get(dir)?.watcher === w) this.#dirs.delete(dir);
    });
    this.#dirs.set(dir, { watcher: w, id: id ?? '' });
  }

  #schedule(): void {
    if (this.#scheduled !== undefined || this.#closed) return;
    this.#scheduled = this.#timer.set(() => {
      this.#scheduled = undefined;
      void this.check();
    }, this.#debounceMs);
  }
}

/** The directory's device:inode; null when there is none by that name. */
async function identity(dir: string): Promise<string | null> {
  try {
    const st = await stat(dir);
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

async function contentOf(file: string): Promise<string> {
  try {
    return createHash('sha256').update(await readConfigFile(file)).digest('hex');
  } catch (err) {
    return `unreadable: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
}
