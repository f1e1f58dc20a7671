// The exposition-format check that stands in for `promtool check metrics` where promtool is not
// installed (test/helpers/prometheus-text.ts): it must refuse what promtool refuses. With promtool
// on the PATH, each case is also given to promtool, which must agree.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkExposition, exportedNames, findPromtool, metricNamesIn, promtool } from '../helpers/prometheus-text.js';

const PROMTOOL = findPromtool();
const VALID = [
  '# HELP sigil_things_total Things done.',
  '# TYPE sigil_things_total counter',
  'sigil_things_total{kind="a",why="say \\"hi\\"\\n\\\\"} 3',
  'sigil_things_total{kind="b"} 0',
  '# HELP sigil_size_bytes Size.',
  '# TYPE sigil_size_bytes gauge',
  'sigil_size_bytes 1.5e+9',
  '# HELP sigil_wait_seconds Waits.',
  '# TYPE sigil_wait_seconds histogram',
  'sigil_wait_seconds_bucket{le="0.1",op="x"} 1',
  'sigil_wait_seconds_bucket{le="+Inf",op="x"} 2',
  'sigil_wait_seconds_sum{op="x"} 0.3',
  'sigil_wait_seconds_count{op="x"} 2',
  '',
].join('\n');

/** Each case: an exposition and what the check must say about it; `promtool`: promtool refuses it too. */
const BAD: Array<{ name: string; text: string; problem: RegExp; promtool: boolean }> = [
  { name: 'a gauge named _total (prom-client\'s nodejs_active_handles_total)', text: '# HELP a_total A.\n# TYPE a_total gauge\na_total 3\n', problem: /non-counter metrics should not have "_total"/, promtool: true },
  { name: 'a counter without _total', text: '# HELP a A.\n# TYPE a counter\na 3\n', problem: /counter metrics should have "_total"/, promtool: true },
  { name: 'no HELP', text: '# TYPE a_total counter\na_total 3\n', problem: /no help text/, promtool: true },
  { name: 'TYPE after the samples', text: '# HELP a_total A.\na_total 3\n# TYPE a_total counter\n', problem: /TYPE of a_total repeated or after its samples/, promtool: true },
  { name: 'HELP twice', text: '# HELP a_total A.\n# HELP a_total A.\n# TYPE a_total counter\na_total 3\n', problem: /second HELP/, promtool: true },
  { name: 'an escape other than \\\\, \\" and \\n in a label value', text: '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1\\q"} 3\n', problem: /invalid escape/, promtool: true },
  { name: 'a value that is not a float', text: '# HELP a_total A.\n# TYPE a_total counter\na_total 3x\n', problem: /not a float/, promtool: true },
  { name: 'no line feed after the last line', text: '# HELP a_total A.\n# TYPE a_total counter\na_total 3', problem: /last line/, promtool: true },
  { name: 'camelCase', text: '# HELP aB_total A.\n# TYPE aB_total counter\naB_total 3\n', problem: /snake_case/, promtool: true },
  { name: 'an abbreviated unit', text: '# HELP a_ms A.\n# TYPE a_ms gauge\na_ms 3\n', problem: /abbreviated units/, promtool: true },
  { name: 'a unit that is not the base unit', text: '# HELP a_milliseconds A.\n# TYPE a_milliseconds gauge\na_milliseconds 3\n', problem: /base unit/, promtool: true },
  { name: 'the type in the name', text: '# HELP a_gauge A.\n# TYPE a_gauge gauge\na_gauge 3\n', problem: /should not include type 'gauge'/, promtool: true },
  { name: 'an le label outside a histogram', text: '# HELP g G.\n# TYPE g gauge\ng{le="1"} 3\n', problem: /"le" label/, promtool: true },
  // stricter than promtool 2.42, which lets these through
  { name: 'one family in two groups', text: '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 3\n# HELP b B.\n# TYPE b gauge\nb 1\na_total{x="2"} 3\n', problem: /not one group/, promtool: false },
  { name: 'the same series twice', text: '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 3\na_total{x="1"} 4\n', problem: /same series twice/, promtool: false },
  { name: 'a histogram without a +Inf bucket', text: '# HELP h_seconds H.\n# TYPE h_seconds histogram\nh_seconds_bucket{le="0.1"} 1\nh_seconds_sum 0.3\nh_seconds_count 1\n', problem: /no \+Inf bucket/, promtool: false },
  { name: 'a histogram whose _count is not its +Inf bucket', text: '# HELP h_seconds H.\n# TYPE h_seconds histogram\nh_seconds_bucket{le="+Inf"} 2\nh_seconds_sum 0.3\nh_seconds_count 5\n', problem: /differs from the \+Inf bucket/, promtool: false },
  { name: 'a negative counter', text: '# HELP a_total A.\n# TYPE a_total counter\na_total -3\n', problem: /below 0/, promtool: false },
];

describe('the exposition-format check', () => {
  test('a well-formed exposition (escapes, exponent, histogram) has no problem', async () => {
    assert.deepEqual(checkExposition(VALID), []);
    if (PROMTOOL) assert.deepEqual(await promtool(PROMTOOL, ['check', 'metrics'], VALID), { code: 0, output: '' });
  });

  for (const c of BAD) {
    test(`refuses ${c.name}${c.promtool && PROMTOOL ? ', as promtool does' : ''}`, async () => {
      const problems = checkExposition(c.text);
      assert.ok(problems.some((p) => c.problem.test(p)), problems.join('\n'));
      if (PROMTOOL && c.promtool) assert.notEqual((await promtool(PROMTOOL, ['check', 'metrics'], c.text)).code, 0);
    });
  }

  test('the names a query may use: families, and a histogram\'s _bucket, _sum and _count', () => {
    assert.deepEqual([...exportedNames(VALID)].sort(), ['sigil_size_bytes', 'sigil_things_total', 'sigil_wait_seconds', 'sigil_wait_seconds_bucket', 'sigil_wait_seconds_count', 'sigil_wait_seconds_sum']);
  });
});

describe('the metric names a PromQL expression reads', () => {
  const cases: Array<[string, string[]]> = [
    ['up{job="sigil"} == 0', ['up']],
    ['sum by (policy) (increase(sigil_manifest_responses_total{verification="denied"}[10m])) > 10', ['sigil_manifest_responses_total']],
    ['histogram_quantile(0.99, sum by (le, route) (rate(sigil_http_request_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval])))', ['sigil_http_request_duration_seconds_bucket']],
    ['rate(a_total[1h]) > 0.5 * rate(b_total[1h] offset 1d) and on (instance) c unless ignoring(x) d', ['a_total', 'b_total', 'c', 'd']],
    ['sum(x_total{l="by (y) z_total"}) / 1e-9 + ${var}', ['x_total']],
  ];
  for (const [expr, names] of cases) test(expr, () => assert.deepEqual(metricNamesIn(expr), names));
});
