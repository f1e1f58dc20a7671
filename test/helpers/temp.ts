import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Every temp directory a test makes is removed when its test process exits: after every `after`
// hook, whatever order they were registered in, so nothing still writing into it (a store being
// closed, a child process being stopped) races the removal. A test may remove one earlier.

const made = new Set<string>();

function removeAll(): void {
  for (const d of made) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      // best effort at exit (e.g. a directory a test left read-only for a non-root user)
    }
  }
}

/** A fresh directory under os.tmpdir(), removed when the test process exits. */
export async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix.endsWith('-') ? prefix : `${prefix}-`));
  if (made.size === 0) process.once('exit', removeAll);
  made.add(d);
  return d;
}
