// Attestation conditions as the config compiles them: CEL that parses, names only `predicate`,
// `statement` and its own macro variables, calls functions that exist with arguments that fit,
// and can give a bool; everything else is a problem that says what and where.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_CONDITION_CHARS, compileCondition, type Condition } from './condition.js';

function problems(text: string): readonly string[] {
  const c = compileCondition(text);
  return 'problems' in c ? c.problems : [];
}

function compiled(text: string): Condition {
  const c = compileCondition(text);
  if ('problems' in c) throw new Error(`${text}: ${c.problems.join('; ')}`);
  return c;
}

describe('conditions that compile', () => {
  for (const text of [
    'true',
    'predicate.runDetails.builder.id.startsWith("https://github.com/acme/")',
    'predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/acme/app"',
    'statement.subject.all(s, s.digest.sha256.size() == 64)',
    'predicate.materials.exists(m, m.uri.matches("^git\\\\+https://github\\\\.com/acme/"))',
    'has(predicate.runDetails) && type(predicate.runDetails) == map',
    'predicate.level in ["L2", "L3"] && !(predicate.level == "L0")',
    'size(predicate.list) > 2 && predicate.list[0] == 1 && predicate.list.exists_one(x, x > 1.5)',
    'timestamp(predicate.metadata.finishedOn) < timestamp("2030-01-01T00:00:00Z")',
    '{"a": 1}["a"] == 1 ? true : false',
  ]) {
    test(`compiles: ${text}`, () => {
      assert.equal(compiled(text).text, text);
    });
  }

  test('the plan evaluates with the variables bound', () => {
    const c = compiled('predicate.id.startsWith("https://github.com/acme/") && statement.predicateType == "t"');
    const statement = new Map<string, unknown>([['predicateType', 't']]);
    assert.equal(c.evaluate({ predicate: new Map([['id', 'https://github.com/acme/x']]), statement } as never), true);
    assert.equal(c.evaluate({ predicate: new Map([['id', 'https://github.com/evil/x']]), statement } as never), false);
  });
});

describe('conditions refused, each problem saying what and where', () => {
  const cases: Array<[string, RegExp]> = [
    ['predicate.( ==', /^is not a valid CEL expression: at 1:\d+: /],
    ['predicat.runDetails == 1', /^unknown name "predicat": the variables are predicate and statement \(at character 1\)$/],
    ['predicate.a.exists(x, x == y)', /^unknown name "y"/],
    ['predicate.id.startswith("x")', /^unknown function \.startswith\(\)/],
    ['predicate.id.startsWith()', /^\.startsWith\(\) with a receiver and 0 argument\(s\) does not exist; it is string\.startsWith\(string\)/],
    ['"a" + 1 == "b"', /^operator \+ does not apply to \(string, int\)/],
    ['size(predicate.list)', /^gives an int, not a bool/],
    ['predicate.list.map(x, x)', /^gives a list, not a bool/],
    ['"true"', /^gives a string, not a bool/],
    ['google.protobuf.Timestamp{seconds: 1} == predicate.t', /^message google\.protobuf\.Timestamp\{…\}: conditions work on JSON/],
    ['predicate.x == optional', /^unknown name "optional"/],
  ];
  for (const [text, want] of cases) {
    test(`${text} → ${want.source}`, () => {
      const found = problems(text);
      assert.equal(found.length, 1, found.join('\n'));
      assert.match(found[0], want);
    });
  }

  test('every problem of one condition is reported, not just the first', () => {
    assert.equal(problems('predicat.a == 1 && predicate.b.startswith("x") && statment.c').length, 3);
  });

  test(`longer than MAX_CONDITION_CHARS (${MAX_CONDITION_CHARS}): refused before it is parsed`, () => {
    const text = `predicate.a == "${'x'.repeat(MAX_CONDITION_CHARS)}"`;
    assert.deepEqual(problems(text), [`is ${text.length} characters long, more than ${MAX_CONDITION_CHARS} (MAX_CONDITION_CHARS)`]);
  });

  test('nesting that would overflow the parser is a problem, not a crash', () => {
    const text = `${'('.repeat(2000)}true${')'.repeat(2000)}`;
    assert.equal(text.length <= MAX_CONDITION_CHARS, true);
    const found = problems(text);
    assert.equal(found.length, 1);
    assert.match(found[0], /^is not a valid CEL expression: /);
  });
});
