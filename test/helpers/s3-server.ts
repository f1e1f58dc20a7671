import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import S3rver from 's3rver';
import type { SharedS3Config } from '../../src/config/types.js';
import { tempDir } from './temp.js';

/** The bucket every test server has (a valid S3 bucket name). */
export const TEST_BUCKET = 'sigil-test';
/** s3rver's fixed key pair: it checks request signatures against it. */
const CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface S3Server {
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  /** A `cache.shared.s3` for this server (path-style, its credentials, prefix ''). */
  config(over?: Partial<SharedS3Config>): SharedS3Config;
  /** Writes `bytes` under `key` directly, past every check of the Bucket (a damaged or planted object). */
  putRaw(key: string, bytes: Buffer): Promise<void>;
  /** Makes it unreachable: open connections are cut, new ones refused. */
  stop(): Promise<void>;
  /** Serves again on the same port and directory, with what it held. */
  start(): Promise<void>;
  /** Stops it for good (its directory goes when the test process exits). */
  close(): Promise<void>;
}

/** An S3-compatible server (s3rver) in this process on 127.0.0.1 and a free port, in a temp directory, with TEST_BUCKET created. */
export async function startS3Server(): Promise<S3Server> {
  const directory = await tempDir('sigil-s3-');
  let port = 0;
  let server: S3rver | undefined;
  const start = async (): Promise<void> => {
    if (server) return;
    const s = new S3rver({ address: '127.0.0.1', port, silent: true, directory, configureBuckets: [{ name: TEST_BUCKET }] });
    atomicPuts((s as unknown as { store: FilesystemStore }).store);
    port = (await s.run()).port;
    server = s;
  };
  const stop = async (): Promise<void> => {
    const s = server;
    server = undefined;
    if (!s) return;
    const closed = s.close();
    s.httpServer.closeAllConnections(); // keep-alive sockets would hold close() open
    await closed;
  };
  await start();
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    config: (over = {}) => ({ endpoint, region: 'us-east-1', bucket: TEST_BUCKET, prefix: '', forcePathStyle: true, credentials: CREDENTIALS, redirect: false, ...over }),
    async putRaw(key, bytes) {
      const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: CREDENTIALS, requestChecksumCalculation: 'WHEN_REQUIRED' });
      try {
        await client.send(new PutObjectCommand({ Bucket: TEST_BUCKET, Key: key, Body: bytes }));
      } finally {
        client.destroy();
      }
    },
    stop,
    start,
    close: stop,
  };
}

/** The parts of s3rver's FilesystemStore (lib/stores/filesystem.js) that atomicPuts replaces and uses. */
interface FilesystemStore {
  getResourcePath(bucket: string, key: string, resource: string): string;
  putMetadata(bucket: string, key: string, metadata: unknown, md5: string): Promise<void>;
  putObject(object: { bucket: string; key: string; content: Buffer | Readable; metadata: unknown }): Promise<{ size: number; md5: string }>;
}

/**
 * Makes s3rver's PUT atomic, as S3's is ("Amazon S3 never adds partial objects"; MinIO and Ceph
 * alike): s3rver writes an object in place, so a HEAD or GET during a PUT — a first one, or
 * another replica's upload of the same object — sees it empty or cut short. Here the bytes go to
 * a temporary file beside the object, renamed over it once complete. (What sigil does with a
 * store that shows partial objects is specified in src/registry/shared-store.test.ts.)
 */
function atomicPuts(store: FilesystemStore): void {
  store.putObject = async (object) => {
    const objectPath = store.getResourcePath(object.bucket, object.key, 'object');
    const partial = `${objectPath}.partial-${randomBytes(6).toString('hex')}`;
    await mkdir(dirname(objectPath), { recursive: true });
    const md5 = createHash('md5');
    let size = 0;
    const tally = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        md5.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    });
    const source = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
    try {
      await pipeline(source, tally, createWriteStream(partial));
      await rename(partial, objectPath);
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    }
    const digest = md5.digest('hex');
    await store.putMetadata(object.bucket, object.key, object.metadata, digest);
    return { size, md5: digest };
  };
}
