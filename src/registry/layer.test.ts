import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FetchedManifest, Registry } from '../oci/registry.js';
import { FakeRegistry, imageManifest } from '../../test/helpers/fake-registry.js';
import { Layer, stack } from './layer.js';

/** A layer that notes its name on every manifest it passes up. */
class Marking extends Layer {
  readonly #mark: string;
  constructor(below: Registry, mark: string) {
    super(below);
    this.#mark = mark;
  }
  override async fetchManifest(repository: string, reference: string): Promise<FetchedManifest> {
    const m = await this.below.fetchManifest(repository, reference);
    return { ...m, mediaType: `${m.mediaType}+${this.#mark}` };
  }
}

const marking = (mark: string) => (below: Registry) => new Marking(below, mark);

test('stack puts layers in front bottom first, and leaves out the ones given as false', async () => {
  const bottom = new FakeRegistry();
  const m = bottom.put('app', imageManifest(), 'v1');
  const r = stack(bottom, marking('a'), false, undefined, marking('b'));
  assert.equal((await r.fetchManifest('app', 'v1')).mediaType, `${m.mediaType}+a+b`);
  assert.equal(r.name, bottom.name);
});

test('what a layer does not override goes below unchanged', async () => {
  const bottom = new FakeRegistry();
  bottom.tagLists.set('app', ['v1']);
  const r = stack(bottom, marking('a'));
  assert.deepEqual((await r.listTags('app', {})).tags, ['v1']);
  assert.deepEqual(bottom.calls, ['listTags app']);
});
