import assert from 'node:assert/strict';
import { stringify } from 'yaml';
import { formatProblems, loadConfigFromText, type LoadResult } from '../../src/config/load.js';
import type { Config, ConfigProblem } from '../../src/config/types.js';

/** A config document as a spec writes it (turned into YAML to load). */
export type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The smallest valid config: one upstream, one enforce policy with a keyless authority. */
export const BASE_DOC: Doc = {
  upstreams: [{ name: 'ghcr.io', url: 'https://ghcr.io' }],
  policies: [{ name: 'p', match: ['ghcr.io/**'], mode: 'enforce', authorities: [{ keyless: { issuer: 'https://issuer.example', subject: 'me@example.com' } }] }],
};

export const problemsOf = (r: LoadResult): ConfigProblem[] => (r.ok ? r.warnings : r.problems);

/**
 * How the config specs load a document: as `test.yaml`, relative paths from `baseDir()` (read
 * when loading: a spec's temp dir may be made in its `before`).
 */
export function configLoader(baseDir: () => string) {
  const load = (doc: Doc | string, env: Record<string, string> = {}): Promise<LoadResult> =>
    loadConfigFromText(typeof doc === 'string' ? doc : stringify(doc), { source: 'test.yaml', env, baseDir: baseDir() });
  /** BASE_DOC changed by `fn`. */
  const patched = (fn: (d: Doc) => void): Doc => {
    const d = structuredClone(BASE_DOC);
    fn(d);
    return d;
  };
  const okConfig = (r: LoadResult): Config => {
    assert.ok(r.ok, formatProblems(problemsOf(r), r.source));
    return r.config;
  };
  /** Asserts that loading fails with exactly one error, at `path`, whose message matches `message`. */
  async function rejects(doc: Doc | string, path: string, message: RegExp, env?: Record<string, string>): Promise<void> {
    const r = await load(doc, env);
    assert.equal(r.ok, false, `expected ${path} to be refused`);
    const errors = problemsOf(r).filter((p) => p.severity === 'error');
    assert.deepEqual(errors.map((e) => e.path), [path], formatProblems(errors, 'test.yaml'));
    assert.match(errors[0].message, message);
  }
  return { load, patched, okConfig, rejects };
}
