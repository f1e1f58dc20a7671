import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * A file held open through a shared, writable memory mapping by another process (python3: Node has
 * no mmap), the way a program that can write the store's directory could hold it. Every page is
 * written once at the start (with its own bytes), so that each is dirty and writable in the
 * mapping: the kernel updates the file's times at that first write fault, and later writes to a
 * page that is still dirty and writable change the bytes without faulting, so without changing
 * the times.
 */
export interface MappedFile {
  /** Writes `bytes` at `at` through the mapping (no write(2): no fault while the page is still writable). */
  write(at: number, bytes: Buffer): Promise<void>;
  /** Unmaps and ends the process. */
  close(): Promise<void>;
}

const SCRIPT = `
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
size = os.fstat(fd).st_size
m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
os.close(fd)
for off in range(0, size, mmap.PAGESIZE):
    m[off] = m[off]
print('mapped', flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == 'write':
        off = int(cmd[1])
        data = bytes.fromhex(cmd[2])
        m[off:off + len(data)] = data
        print('written', flush=True)
    else:
        break
m.close()
`;

/** Maps `path` (a non-empty file) for writing in a python3 process, or says why it cannot (no python3): the caller skips. */
export async function mapFile(path: string): Promise<MappedFile | { unavailable: string }> {
  const child = spawn('python3', ['-c', SCRIPT, path], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const next = async (want: string): Promise<void> => {
    const r = await lines.next();
    if (r.done || r.value !== want) throw new Error(`mapped file ${path}: expected "${want}", got ${r.done ? 'the end' : JSON.stringify(r.value)}; ${stderr.trim()}`);
  };
  const spawned = await new Promise<Error | null>((resolve) => {
    child.once('spawn', () => resolve(null));
    child.once('error', resolve);
  });
  if (spawned) return { unavailable: `cannot run python3 to map a file: ${spawned.message}` };
  await next('mapped');
  return {
    async write(at, bytes) {
      child.stdin.write(`write ${at} ${bytes.toString('hex')}\n`);
      await next('written');
    },
    async close() {
      child.stdin.end('close\n');
      await exited;
    },
  };
}
