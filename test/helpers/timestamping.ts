import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPrivateSigstore, type PrivateSigstore } from './private-sigstore.js';
import { RekorV2Log } from './rekor-v2.js';
import { TestTsa } from './tsa.js';

// The private Sigstore as public-good is since 2025: a Rekor v2 log and a timestamp authority
// listed beside Fulcio, the CT log and Rekor v1 — and a second TSA that no root lists.

export interface TimestampingSigstore {
  readonly sigstore: PrivateSigstore;
  readonly log: RekorV2Log;
  readonly tsa: TestTsa;
  /** A TSA no trusted root lists. */
  readonly stranger: TestTsa;
}

export async function createTimestampingSigstore(dir: string): Promise<TimestampingSigstore> {
  const log = new RekorV2Log();
  const tsa = new TestTsa(join(dir, 'tsa'));
  const stranger = new TestTsa(join(dir, 'stranger'));
  const sigstore = await createPrivateSigstore(join(dir, 'root'), { tlogs: [log], timestampAuthorities: [tsa] });
  return { sigstore, log, tsa, stranger };
}

/**
 * Writes a trusted root with the private CA and `timestampAuthorities` (default: the root's own)
 * and no log at all: a keyless signature's time can then only come from a TSA (or be now).
 */
export function writeCaTsaRoot(sigstore: PrivateSigstore, path: string, timestampAuthorities?: unknown[]): string {
  const root = JSON.parse(sigstore.trustedRootJson) as Record<string, unknown>;
  writeFileSync(path, JSON.stringify({ ...root, tlogs: [], ctlogs: [], ...(timestampAuthorities ? { timestampAuthorities } : {}) }));
  return path;
}
