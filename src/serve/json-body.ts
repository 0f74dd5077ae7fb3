// JSON request bodies: parse errors and keys that could poison prototypes are reported as such, with
// where they are (Fastify's own parser answers both with one "not valid JSON" message).
import { BadInputError } from './preprocess.js';

function locationName(path: string): string {
  return path === '' ? "the JSON body's top-level object" : `the JSON body at ${path}`;
}

/** Throws BadInputError for a '__proto__' key or a 'constructor' key whose value has 'prototype'. */
function refusePoisoningKeys(root: unknown): void {
  // An explicit stack: V8 parses nesting deeper than a recursive walk could follow.
  const stack: { value: unknown; path: string }[] = [{ value: root, path: '' }];
  while (stack.length > 0) {
    const { value, path } = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (Array.isArray(value)) {
      value.forEach((item: unknown, i) => stack.push({ value: item, path: `${path}[${i}]` }));
      continue;
    }
    const record = value as Record<string, unknown>;
    const own = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);
    let refused: string | undefined;
    if (own(record, '__proto__')) refused = '__proto__';
    else if (own(record, 'constructor') && typeof record.constructor === 'object' && record.constructor !== null && own(record.constructor, 'prototype')) {
      refused = 'constructor.prototype';
    }
    if (refused) {
      throw new BadInputError(`refused key '${refused}' in ${locationName(path)}: '__proto__' and 'constructor.prototype' keys are refused (prototype poisoning); remove it`);
    }
    for (const key of Object.keys(record)) stack.push({ value: record[key], path: path === '' ? key : `${path}.${key}` });
  }
}

/** Parse a JSON request body; BadInputError (400) for an empty or malformed body and for poisoning keys. */
export function parseJsonBody(text: string): unknown {
  if (text.trim().length === 0) throw new BadInputError('body is empty: send a JSON object like {"images": ["<base64 image>", ...]}');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new BadInputError(`malformed JSON body: ${(error as Error).message}`);
  }
  refusePoisoningKeys(value);
  return value;
}
