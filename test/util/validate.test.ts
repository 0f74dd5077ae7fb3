import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  describeValue,
  finiteNumber,
  inRange,
  integer,
  integerAtLeast,
  integerInRange,
  nonNegativeInteger,
  nonNegativeNumber,
  oneOf,
  positiveInteger,
  positiveNumber,
} from '../../src/util/validate.js';

test('each check returns a valid value unchanged', () => {
  assert.equal(integer(-3, 'seed'), -3);
  assert.equal(positiveInteger(7, 'batchSize'), 7);
  assert.equal(nonNegativeInteger(0, 'step'), 0);
  assert.equal(integerInRange(4, 'rank', 0, 4), 4);
  assert.equal(integerAtLeast(8, 'size', 8), 8);
  assert.equal(positiveNumber(0.5, 'lr'), 0.5);
  assert.equal(nonNegativeNumber(0, 'momentum'), 0);
  assert.equal(finiteNumber(-2.5, 'm2'), -2.5);
  assert.equal(inRange(1, 'sampleRate', { min: 0, max: 1, minExclusive: true }), 1);
  assert.equal(oneOf('skip', 'badSamples', ['fail', 'skip'] as const), 'skip');
});

test('a rejected value throws a RangeError naming the field, the rule and the value', () => {
  const cases: [() => unknown, string][] = [
    [() => integer(1.5, 'seed'), 'seed must be an integer, got 1.5'],
    [() => positiveInteger(0, 'batchSize'), 'batchSize must be a positive integer, got 0'],
    [() => positiveInteger(2.5, 'FeatureMLP: hidden'), 'FeatureMLP: hidden must be a positive integer, got 2.5'],
    [() => positiveInteger('8', 'workers'), 'workers must be a positive integer, got "8"'],
    [() => positiveInteger(undefined, 'numClasses'), 'numClasses must be a positive integer, got undefined'],
    [() => positiveInteger(2 ** 53, 'rows'), `rows must be a positive integer, got ${2 ** 53}`],
    [() => nonNegativeInteger(-1, 'step'), 'step must be a non-negative integer, got -1'],
    [() => integerInRange(4, 'rank', 0, 3), 'rank must be an integer in [0, 3], got 4'],
    [() => integerAtLeast(7, 'size', 8), 'size must be an integer >= 8, got 7'],
    [() => inRange(-1, 'maxNorm', { min: 0, max: Infinity }), 'maxNorm must be in [0, Infinity], got -1'],
    [() => positiveNumber(0, 'lr'), 'lr must be a positive number, got 0'],
    [() => positiveNumber(Infinity, 'lr'), 'lr must be a positive number, got Infinity'],
    [() => nonNegativeNumber(NaN, 'momentum'), 'momentum must be a non-negative number, got NaN'],
    [() => finiteNumber(-Infinity, 'm2'), 'm2 must be a finite number, got -Infinity'],
    [() => inRange(1, 'dropout', { min: 0, max: 1, maxExclusive: true }), 'dropout must be in [0, 1), got 1'],
    [() => inRange(0, 'sampleRate', { min: 0, max: 1, minExclusive: true }), 'sampleRate must be in (0, 1], got 0'],
    [() => oneOf('never', 'badSamples', ['fail', 'skip']), 'badSamples must be one of fail, skip, got "never"'],
  ];
  for (const [call, message] of cases) assert.throws(call, (error: Error) => error instanceof RangeError && error.message === message, message);
});

test('a caller-supplied factory builds its own error type from the field and the problem', () => {
  class FieldError extends Error {
    constructor(
      readonly field: string,
      problem: string,
    ) {
      super(`${field}: ${problem}`);
    }
  }
  assert.throws(
    () => positiveInteger(-2, 'trainBatchSize', (field, problem) => new FieldError(field, problem)),
    (error: Error) => error instanceof FieldError && error.field === 'trainBatchSize' && error.message === 'trainBatchSize: must be a positive integer, got -2',
  );
});

test('values are shown plainly: numbers as written, strings quoted, objects as JSON', () => {
  assert.equal(describeValue(3), '3');
  assert.equal(describeValue('x'), '"x"');
  assert.equal(describeValue(null), 'null');
  assert.equal(describeValue([1, 2]), '[1,2]');
  assert.equal(describeValue(undefined), 'undefined');
  assert.equal(describeValue(10n), '10');
});
