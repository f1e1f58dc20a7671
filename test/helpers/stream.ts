import type { Readable } from 'node:stream';

/** Reads a stream to its end; rejects with its error. */
export async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** What a stream delivered: every byte emitted before its end or its error, and the error. */
export interface Drained {
  bytes: Buffer;
  error?: unknown;
}

/** Reads a stream in flowing mode to its end or error, keeping every chunk emitted before an error. */
export function drain(stream: Readable): Promise<Drained> {
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve({ bytes: Buffer.concat(chunks) }));
    stream.on('error', (error) => resolve({ bytes: Buffer.concat(chunks), error })); // every error handled, the first one counts
  });
}
