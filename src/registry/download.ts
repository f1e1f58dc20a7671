import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Digest } from '../oci/digest.js';
import type { Registry } from '../oci/registry.js';
import type { StoreParts } from './offline.js';

/**
 * What became of a download into the store, for the requests that wait on it: `writing` (read
 * behind the writer), `stored` (stored already: read the store), `passthrough` (not stored: ask
 * the upstream as without a store).
 */
export type Download = { kind: 'writing'; size: number | undefined } | { kind: 'stored' } | { kind: 'passthrough' };

/** One blob to download into the store: where from, and what admitted it (admission.ts). */
export interface DownloadOf {
  readonly repository: string;
  readonly digest: Digest;
  /** The size its manifest's descriptor gives: the upstream cannot make it longer. */
  readonly admittedSize: number | undefined;
  /**
   * Without an admitted size, the size the descriptor of the request that started it gives (from
   * a manifest not verified yet): only which layer below answers (the bucket holding another size
   * is skipped), never what the download, which other requests join, is held to.
   */
  readonly descriptorSize?: number | undefined;
  /** The manifest that named it, recorded with the blob. */
  readonly namedBy: Digest | undefined;
}

/**
 * Starts the upstream download of one blob into the store. Resolves once the upstream answered,
 * with what the waiting requests do, and `done`, which settles once the store committed the blob
 * (and the catalog recorded it for the repository) or the write failed.
 */
export async function startDownload(up: Registry, store: StoreParts, blob: DownloadOf, log: Logger): Promise<{ download: Download; done: Promise<unknown> }> {
  const { content, catalog } = store;
  const { repository, digest, admittedSize, namedBy } = blob;
  const descriptorSize = admittedSize ?? blob.descriptorSize;
  const settled = Promise.resolve();
  const passthrough = { download: { kind: 'passthrough' } as Download, done: settled };
  if (await content.has(digest)) {
    // Stored for another repository (or by another process): confirm this repository has it upstream.
    const head = await up.openBlob(repository, digest, { method: 'HEAD' });
    head.body?.destroy();
    try {
      await catalog.noteBlob(up.name, repository, digest, namedBy);
    } catch (err) {
      log.warn({ digest, repository, err: String(err) }, 'blob stored but not recorded');
      return passthrough;
    }
    return { download: { kind: 'stored' }, done: settled };
  }
  // The store's writer hashes the bytes and commits (and lets readers finish) only on a match.
  const res = await up.openBlob(repository, digest, { method: 'GET', verifyDigest: false, ...(descriptorSize !== undefined ? { descriptorSize } : {}) });
  const length = res.headers['content-length'];
  const announced = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
  const refused =
    // Not what the manifest said, or too big to store: served as it comes, through the digest check.
    (admittedSize !== undefined && announced !== undefined && announced !== admittedSize) ||
    (announced ?? admittedSize ?? 0) > content.maxBytes ||
    // No room for the size it announces.
    (admittedSize === undefined && announced !== undefined && !(await content.admitWrite(announced)));
  if (refused) {
    res.body?.destroy();
    return passthrough;
  }
  // an upstream body's chunks are its own, never changed: followers that keep up are served from them
  const w = content.beginWrite(digest, admittedSize ?? announced, { chunksHandedOver: true });
  if (w.kind === 'follower') {
    // Another download of this digest (another repository or upstream) is writing it: do not
    // depend on it (it may be slow on purpose); these requests pass through instead.
    res.body?.destroy();
    w.stream.destroy();
    return passthrough;
  }
  try {
    await w.opened;
  } catch {
    // The disk refused the temp file (the store counted and logged it, and stops writing): nothing
    // was written, nobody reads behind it; these requests pass through instead.
    res.body?.destroy();
    return passthrough;
  }
  pipeline(res.body!, w.writer).catch(() => {
    /* the store's `done` reports it */
  });
  const done = w.done
    .then(
      () => catalog.noteBlob(up.name, repository, digest, namedBy),
      (err: unknown) => log.warn({ digest, repository, err: String(err) }, 'blob not stored'),
    )
    .catch((err: unknown) => log.warn({ digest, err: String(err) }, 'blob stored but not recorded'));
  return { download: { kind: 'writing', size: admittedSize ?? announced }, done };
}
