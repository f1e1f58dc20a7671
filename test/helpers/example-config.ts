import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The project's copy of the contract's example config. */
export const EXAMPLE_CONFIG = new URL('../../../docs/sigil.example.yaml', import.meta.url); // from dist/test/helpers

/** The mark docs/sigil.example.yaml puts on the keys of the contract sigil does not accept yet. */
const NOT_IMPLEMENTED = /#\s*NOT IMPLEMENTED YET/;

/**
 * docs/sigil.example.yaml as sigil accepts it today: each key marked NOT IMPLEMENTED YET is left
 * out with everything indented below it. A key loses its mark once it is implemented, and is
 * then loaded (and checked) with the rest.
 */
export async function implementedExample(): Promise<string> {
  const lines = (await readFile(EXAMPLE_CONFIG, 'utf8')).split('\n');
  const kept: string[] = [];
  let dropBelow: number | undefined; // dropping the lines indented deeper than this
  for (const line of lines) {
    const indent = line.length - line.trimStart().length;
    if (dropBelow !== undefined && (line.trim() === '' || indent > dropBelow)) continue;
    dropBelow = undefined;
    if (/^\s*[\w.-]+:/.test(line) && NOT_IMPLEMENTED.test(line)) {
      dropBelow = indent;
      continue;
    }
    kept.push(line);
  }
  return kept.join('\n');
}

/**
 * The TUF root.json the example names (`trust.tuf.root: config/tuf/root.json`, under `dir`):
 * what a config check reads of it (a TUF root's shape); no repository is asked.
 */
export async function writeExampleTufRoot(dir: string): Promise<void> {
  await mkdir(join(dir, 'config/tuf'), { recursive: true });
  await writeFile(join(dir, 'config/tuf/root.json'), JSON.stringify({ signed: { _type: 'root', version: 1 }, signatures: [] }));
}
