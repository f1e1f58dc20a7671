import { after } from 'node:test';
import { HashPool } from '../../src/hash/hash-pool.js';

/** Hash workers for tests: `broken` dies on its first job, `stuck` never makes progress. */
export function testHashWorker(name: 'broken' | 'stuck'): URL {
  return new URL(`./hash-workers/${name}.js`, import.meta.url);
}

/**
 * A maker of hash pools, all closed after the tests of the file (or of the suite) where it is
 * called: call it at the top level of a test file or of a describe.
 */
export function hashPools(): (opts?: ConstructorParameters<typeof HashPool>[0]) => HashPool {
  const made: HashPool[] = [];
  after(async () => {
    for (const p of made.splice(0)) await p.close();
  });
  return (opts) => {
    const p = new HashPool(opts);
    made.push(p);
    return p;
  };
}
