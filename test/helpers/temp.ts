import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/** A fresh directory under os.tmpdir(); the caller removes it. */
export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix.endsWith('-') ? prefix : `${prefix}-`));
}

/**
 * A maker of fresh directories under os.tmpdir(), all removed after the tests of the file (or
 * of the suite) where it is called: call it at the top level of a test file or of a describe.
 */
export function tempDirs(prefix: string): () => Promise<string> {
  const made: string[] = [];
  after(async () => {
    for (const d of made.splice(0)) await rm(d, { recursive: true, force: true });
  });
  return async () => {
    const d = await tempDir(prefix);
    made.push(d);
    return d;
  };
}
