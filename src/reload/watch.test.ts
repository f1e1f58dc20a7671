import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { createLogger } from '../audit/logger.js';
import { tempDir } from '../../test/helpers/temp.js';
import { FileWatcher, type DebounceTimer } from './watch.js';

/** inotify delivers within milliseconds; this only keeps a missing event from hanging the file. */
const EVENT_GUARD_MS = 20_000;

/** A debounce timer the test fires by hand; `armed()` resolves once an event has scheduled it. */
function handTimer() {
  let pending: (() => void) | undefined;
  const waiters: Array<() => void> = [];
  const timer: DebounceTimer = {
    set(fn) {
      pending = fn;
      for (const w of waiters.splice(0)) w();
      return 1;
    },
    clear() {
      pending = undefined;
    },
  };
  return {
    timer,
    async armed(): Promise<void> {
      if (pending) return;
      const guard = sleep(EVENT_GUARD_MS).then(() => {
        throw new Error('no file system event arrived');
      });
      await Promise.race([new Promise<void>((r) => waiters.push(r)), guard]);
    },
    fire(): void {
      const fn = pending;
      pending = undefined;
      fn?.();
    },
    get isArmed(): boolean {
      return pending !== undefined;
    },
  };
}

async function rig(files: Record<string, string>) {
  const dir = await tempDir('sigil-watch-');
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  const t = handTimer();
  const calls: string[][] = [];
  const watcher = new FileWatcher({ onChange: (changed) => calls.push(changed), logger: createLogger('silent'), timer: t.timer });
  return { dir, watcher, calls, settle: () => settle(t, watcher), t };
}

/**
 * After a change: the event arrives and schedules a look; each look that finds a new content
 * schedules another; fired until none is scheduled. What all those looks reported.
 */
async function settle(t: ReturnType<typeof handTimer>, watcher: FileWatcher): Promise<string[]> {
  await t.armed();
  const found: string[] = [];
  while (t.isArmed) {
    t.fire();
    found.push(...(await watcher.settled));
  }
  return found;
}

test('a file rewritten in place is a change', async () => {
  const { dir, watcher, calls, settle } = await rig({ 'sigil.yaml': 'a: 1\n' });
  const file = join(dir, 'sigil.yaml');
  await watcher.watch([file]);
  await writeFile(file, 'a: 2\n');
  assert.deepEqual(await settle(), [file]);
  assert.deepEqual(calls, [[file]]);
  watcher.close();
});

test('a file an editor replaces by renaming a new one over it is a change', async () => {
  const { dir, watcher, calls, settle } = await rig({ 'sigil.yaml': 'a: 1\n' });
  const file = join(dir, 'sigil.yaml');
  await watcher.watch([file]);
  await writeFile(join(dir, '.sigil.yaml.swp'), 'a: 2\n');
  await rename(join(dir, '.sigil.yaml.swp'), file);
  assert.deepEqual(await settle(), [file]);
  assert.deepEqual(calls, [[file]]);
  watcher.close();
});

test('a Kubernetes ConfigMap update (the ..data symlink swapped to a new directory) is a change', async () => {
  const dir = await tempDir('sigil-watch-');
  const mount = join(dir, 'config');
  await mkdir(join(mount, '..2030_01_01_00_00_00.1'), { recursive: true });
  await writeFile(join(mount, '..2030_01_01_00_00_00.1', 'sigil.yaml'), 'a: 1\n');
  await symlink('..2030_01_01_00_00_00.1', join(mount, '..data'));
  await symlink('..data/sigil.yaml', join(mount, 'sigil.yaml'));
  const file = join(mount, 'sigil.yaml');
  const t = handTimer();
  const calls: string[][] = [];
  const watcher = new FileWatcher({ onChange: (c) => calls.push(c), logger: createLogger('silent'), timer: t.timer });
  await watcher.watch([file]);
  // What the kubelet does: a new timestamped directory, a new link, renamed over ..data.
  await mkdir(join(mount, '..2030_01_01_00_01_00.2'));
  await writeFile(join(mount, '..2030_01_01_00_01_00.2', 'sigil.yaml'), 'a: 2\n');
  await symlink('..2030_01_01_00_01_00.2', join(mount, '..data_tmp'));
  await rename(join(mount, '..data_tmp'), join(mount, '..data'));
  await rm(join(mount, '..2030_01_01_00_00_00.1'), { recursive: true });
  assert.deepEqual(await settle(t, watcher), [file]);
  assert.deepEqual(calls, [[file]]);
  watcher.close();
});

test('another file changing in the same directory is no change', async () => {
  const { dir, watcher, calls, settle } = await rig({ 'sigil.yaml': 'a: 1\n', 'notes.txt': 'x' });
  await watcher.watch([join(dir, 'sigil.yaml')]);
  await writeFile(join(dir, 'notes.txt'), 'y');
  assert.deepEqual(await settle(), []);
  assert.deepEqual(calls, []);
  watcher.close();
});

test('a file saved with the same content is no change', async () => {
  const { dir, watcher, calls, settle } = await rig({ 'sigil.yaml': 'a: 1\n' });
  const file = join(dir, 'sigil.yaml');
  await watcher.watch([file]);
  await writeFile(file, 'a: 1\n');
  assert.deepEqual(await settle(), []);
  assert.deepEqual(calls, []);
  watcher.close();
});

test('a file removed is a change, and so is its return', async () => {
  const { dir, watcher, calls, settle } = await rig({ 'tls.key': 'k1' });
  const file = join(dir, 'tls.key');
  await watcher.watch([file]);
  await rm(file);
  assert.deepEqual(await settle(), [file]);
  await writeFile(file, 'k2');
  assert.deepEqual(await settle(), [file]);
  assert.equal(calls.length, 2);
  watcher.close();
});

test('a change seen once is not reported again by a later event', async () => {
  const { dir, watcher, calls, settle } = await rig({ 'sigil.yaml': 'a: 1\n', 'notes.txt': 'x' });
  const file = join(dir, 'sigil.yaml');
  await watcher.watch([file]);
  await writeFile(file, 'a: 2\n');
  assert.deepEqual(await settle(), [file]);
  await writeFile(join(dir, 'notes.txt'), 'y');
  assert.deepEqual(await settle(), []);
  assert.equal(calls.length, 1);
  watcher.close();
});

test('watching a new list drops the directories no file is in any more; a file kept keeps what was seen of it', async () => {
  const a = await tempDir('sigil-watch-');
  const b = await tempDir('sigil-watch-');
  await writeFile(join(a, 'sigil.yaml'), '1');
  await writeFile(join(b, 'key.pub'), 'k');
  const watcher = new FileWatcher({ onChange: () => {}, logger: createLogger('silent'), timer: handTimer().timer });
  await watcher.watch([join(a, 'sigil.yaml'), join(b, 'key.pub')]);
  assert.deepEqual(watcher.directories.sort(), [a, b].sort());
  await writeFile(join(a, 'sigil.yaml'), '2'); // changed before the next watch(): still a change
  await watcher.watch([join(a, 'sigil.yaml')]);
  assert.deepEqual(watcher.directories, [a]);
  assert.deepEqual(await watcher.check(), [], 'first look');
  assert.deepEqual(await watcher.check(), [join(a, 'sigil.yaml')], 'second look, the same content');
  watcher.close();
});

test('a file still being written between two looks counts only once its content holds still', async () => {
  const { dir, watcher, calls, t } = await rig({ 'sigil.yaml': 'policies: [a, b, c]\n' });
  const file = join(dir, 'sigil.yaml');
  await watcher.watch([file]);
  await writeFile(file, 'policies: [a]\n'); // the first part of a slow copy: valid, and fewer policies
  await t.armed();
  t.fire();
  assert.deepEqual(await watcher.settled, [], 'a content seen once does not count yet');
  await writeFile(file, 'policies: [a, b, c, d]\n'); // the copy goes on
  assert.deepEqual(await settle(t, watcher), [file]);
  assert.deepEqual(calls, [[file]], 'one change, the finished file');
  watcher.close();
});

test('a watched file replaced by a FIFO is a change the watcher reports without waiting on it, and it goes on watching', { timeout: 60_000 }, async () => {
  const { dir, watcher, calls, settle } = await rig({ 'tls.crt': 'c1' });
  const file = join(dir, 'tls.crt');
  await watcher.watch([file]);
  await rm(file);
  execFileSync('mkfifo', [file]); // no writer ever opens it
  assert.deepEqual(await settle(), [file]);
  await rm(file);
  await writeFile(file, 'c2');
  assert.deepEqual(await settle(), [file], 'the next change is still seen');
  assert.equal(calls.length, 2);
  watcher.close();
});

test('a watched directory swapped for another of the same name is watched anew: a change in the new one is seen', async () => {
  const base = await tempDir('sigil-watch-');
  const conf = join(base, 'conf');
  await mkdir(conf);
  const file = join(conf, 'sigil.yaml');
  await writeFile(file, 'a: 1\n');
  const t = handTimer();
  const calls: string[][] = [];
  const watcher = new FileWatcher({ onChange: (c) => calls.push(c), logger: createLogger('silent'), timer: t.timer });
  await watcher.watch([file]);
  // A deploy that puts a whole new config directory in place of the old one.
  await rename(conf, join(base, 'conf.old'));
  await mkdir(conf);
  await writeFile(file, 'a: 2\n');
  assert.deepEqual(await settle(t, watcher), [file]);
  await writeFile(file, 'a: 3\n'); // only the new directory sees this
  assert.deepEqual(await settle(t, watcher), [file]);
  assert.deepEqual(calls, [[file], [file]]);
  assert.deepEqual(watcher.directories, [conf]);
  watcher.close();
});

test('a certificate and its key written one after the other are reported together, once both hold still', async () => {
  const { dir, watcher, calls, t } = await rig({ 'tls.crt': 'c1', 'tls.key': 'k1' });
  const [crt, key] = [join(dir, 'tls.crt'), join(dir, 'tls.key')];
  await watcher.watch([crt, key]);
  await writeFile(crt, 'c2');
  await t.armed();
  t.fire();
  assert.deepEqual(await watcher.settled, [], 'first look: the new certificate, seen once');
  await writeFile(key, 'k2'); // the key follows, after the first look
  t.fire();
  assert.deepEqual(await watcher.settled, [], 'the certificate held still, the key did not: a reload now would pair it with the old key');
  assert.deepEqual(await settle(t, watcher), [crt, key]);
  assert.deepEqual(calls, [[crt, key]], 'one reload, with both');
  watcher.close();
});
