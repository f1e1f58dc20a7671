import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
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
