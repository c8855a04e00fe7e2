/**
 * Image attributes as Glance's API layer sees them: which are base, read-only or reserved, how each is validated,
 * and how a v2.1 json-patch (`add` / `replace` / `remove` on `/name`, `/tags`, `/<property>`) applies to a record.
 */

import { glanceError } from './context.js';
import type { ImageRecord } from './repo.js';
import { CONTAINER_FORMATS, DISK_FORMATS, UUID_PATTERN, VISIBILITIES } from './schemas.js';

/** Never settable by clients (Glance's `_readonly_properties` plus the link fields). */
export const READ_ONLY = new Set([
  'created_at',
  'updated_at',
  'status',
  'checksum',
  'os_hash_algo',
  'os_hash_value',
  'size',
  'virtual_size',
  'direct_url',
  'self',
  'file',
  'schema',
  'stores',
]);
/** Glance's `_reserved_properties` (and `locations`, which Krater does not expose). */
export const RESERVED = new Set(['location', 'locations', 'deleted', 'deleted_at']);
/** Base attributes a client may set. */
export const MUTABLE_BASE = new Set([
  'name',
  'visibility',
  'protected',
  'os_hidden',
  'owner',
  'container_format',
  'disk_format',
  'min_disk',
  'min_ram',
  'tags',
]);

export const UUID_RE = new RegExp(UUID_PATTERN);

const schemaError = (detail: string) => glanceError(400, `Provided object does not match schema 'image': ${detail}`);
const repr = (v: unknown) => (typeof v === 'string' ? `'${v}'` : JSON.stringify(v));

/** 403 for read-only and reserved names (`id` is read-only except on create). */
export function checkWritable(name: string, creating: boolean): void {
  if (READ_ONLY.has(name) || (!creating && name === 'id')) throw glanceError(403, `Attribute '${name}' is read-only.`);
  if (RESERVED.has(name) || name.startsWith('os_glance')) throw glanceError(403, `Attribute '${name}' is reserved.`);
}

export function validateTags(value: unknown): string[] {
  if (!Array.isArray(value)) throw schemaError(`${repr(value)} is not of type 'array'`);
  for (const t of value) validateTag(t);
  return [...new Set(value as string[])];
}

export function validateTag(t: unknown): string {
  if (typeof t !== 'string') throw schemaError(`${repr(t)} is not of type 'string'`);
  if (t.length > 255) throw schemaError(`${repr(t)} is too long`);
  if (t.length === 0) throw glanceError(400, 'Invalid tag: the tag is empty.');
  return t;
}

function nullableEnum(name: string, value: unknown, allowed: readonly string[]): string | null {
  if (value === null) return null;
  if (typeof value !== 'string') throw schemaError(`${repr(value)} is not of type 'null', 'string'`);
  if (!allowed.includes(value))
    throw schemaError(`${repr(value)} is not one of [None, ${allowed.map((a) => `'${a}'`).join(', ')}] (${name})`);
  return value;
}

function boolean(value: unknown): number {
  if (typeof value !== 'boolean') throw schemaError(`${repr(value)} is not of type 'boolean'`);
  return value ? 1 : 0;
}

function nonNegativeInt(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value))
    throw schemaError(`${repr(value)} is not of type 'integer'`);
  if (value < 0) throw glanceError(400, `Invalid value for ${name}: it must be a non-negative integer.`);
  if (value > 2 ** 31 - 1) throw glanceError(400, `Invalid value for ${name}: it is too large.`);
  return value;
}

function nullableString(value: unknown, max = 255): string | null {
  if (value === null) return null;
  if (typeof value !== 'string') throw schemaError(`${repr(value)} is not of type 'null', 'string'`);
  if (value.length > max) throw schemaError(`${repr(value)} is too long`);
  return value;
}

/** Sets a base attribute on `rec` after validating it as Glance's schema does. */
export function setBase(rec: ImageRecord, name: string, value: unknown): void {
  const r = rec.row;
  switch (name) {
    case 'name':
      r.name = nullableString(value);
      return;
    case 'owner':
      r.owner = nullableString(value);
      return;
    case 'visibility':
      if (typeof value !== 'string' || !(VISIBILITIES as readonly string[]).includes(value))
        throw schemaError(`${repr(value)} is not one of ['community', 'public', 'private', 'shared']`);
      r.visibility = value;
      return;
    case 'protected':
      r.protected = boolean(value);
      return;
    case 'os_hidden':
      r.os_hidden = boolean(value);
      return;
    case 'container_format':
      r.container_format = nullableEnum(name, value, CONTAINER_FORMATS);
      return;
    case 'disk_format':
      r.disk_format = nullableEnum(name, value, DISK_FORMATS);
      return;
    case 'min_disk':
      r.min_disk = nonNegativeInt(name, value);
      return;
    case 'min_ram':
      r.min_ram = nonNegativeInt(name, value);
      return;
    case 'tags':
      rec.tags = validateTags(value);
      return;
    default:
      throw new Error(`not a mutable base attribute: ${name}`);
  }
}

/** A custom property: any other name, with a string value (`additionalProperties: {type: string}`). */
export function validateProperty(name: string, value: unknown): string {
  if (name.length === 0 || name.length > 255) throw glanceError(400, `Invalid property name: ${repr(name)}.`);
  if (typeof value !== 'string') throw schemaError(`${repr(value)} is not of type 'string'`);
  if (value.length > 65535) throw schemaError(`${repr(value.slice(0, 32))}… is too long`);
  return value;
}

export interface PatchOp {
  op: string;
  path: string;
  value?: unknown;
}

/** `/a~1b` → `['a/b']`; rejects what is not a JSON pointer. */
export function decodePointer(path: unknown): string[] {
  if (typeof path !== 'string')
    throw glanceError(400, 'Unable to find `path` in the operation, or it is not a string.');
  if (!path.startsWith('/')) throw glanceError(400, `Pointer \`${path}\` does not start with "/".`);
  return path
    .slice(1)
    .split('/')
    .map((p) => {
      if (/~[^01]|~$/.test(p))
        throw glanceError(400, `Pointer \`${path}\` contains "~" not part of a recognized escape sequence.`);
      return p.replace(/~1/g, '/').replace(/~0/g, '~');
    });
}

/** Parses the body of a v2.1 json-patch request into operations (400 on anything malformed). */
export function parsePatch(body: unknown): PatchOp[] {
  if (!Array.isArray(body)) throw glanceError(400, 'Request body must be a JSON array of operation objects.');
  return body.map((raw) => {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
      throw glanceError(400, 'Operations must be JSON objects.');
    const o = raw as Record<string, unknown>;
    if (typeof o.op !== 'string')
      throw glanceError(400, 'Operation objects must contain exactly one member named "op".');
    if (!['add', 'replace', 'remove'].includes(o.op)) throw glanceError(400, `Invalid operation: \`${o.op}\`.`);
    if (typeof o.path !== 'string') throw glanceError(400, 'Unable to find `path` in the operation.');
    if (o.op !== 'remove' && !('value' in o))
      throw glanceError(400, `Operation "${o.op}" requires a member named "value".`);
    return { op: o.op, path: o.path, value: o.value };
  });
}

/**
 * Applies the operations to a copy of the record (Glance's `_do_add` / `_do_replace` / `_do_remove`): `add` upserts,
 * `replace` needs an existing property (409), `remove` of a base attribute is 403 and of a missing property 409.
 * `/tags/<index>` and `/tags/-` are accepted too, as openstacksdk computes list diffs with them.
 */
export function applyPatch(rec: ImageRecord, ops: PatchOp[]): ImageRecord {
  const out: ImageRecord = { row: { ...rec.row }, properties: { ...rec.properties }, tags: [...rec.tags] };
  for (const op of ops) {
    const path = decodePointer(op.path);
    const root = path[0];
    if (root === '') throw glanceError(400, `Invalid JSON pointer for this resource: '${op.path}'`);
    checkWritable(root, false);
    if (path.length > 1) {
      if (root !== 'tags' || path.length !== 2)
        throw glanceError(400, `Invalid JSON pointer for this resource: '${op.path}'`);
      patchTagIndex(out, op, path[1]);
      continue;
    }
    if (MUTABLE_BASE.has(root)) {
      if (op.op === 'remove') throw glanceError(403, `Property ${root} may not be removed.`);
      setBase(out, root, op.value);
      continue;
    }
    const exists = Object.hasOwn(out.properties, root);
    if (op.op === 'remove') {
      if (!exists) throw glanceError(409, `Property ${root} does not exist.`);
      delete out.properties[root];
    } else {
      if (op.op === 'replace' && !exists) throw glanceError(409, `Property ${root} does not exist.`);
      out.properties[root] = validateProperty(root, op.value);
    }
  }
  return out;
}

function patchTagIndex(rec: ImageRecord, op: PatchOp, index: string): void {
  const n = rec.tags.length;
  const i = index === '-' && op.op === 'add' ? n : /^(0|[1-9]\d*)$/.test(index) ? Number(index) : -1;
  if (i < 0 || i > n || (i === n && op.op !== 'add'))
    throw glanceError(400, `Invalid JSON pointer for this resource: '/tags/${index}'`);
  if (op.op === 'remove') rec.tags.splice(i, 1);
  else if (op.op === 'replace') rec.tags[i] = validateTag(op.value);
  else rec.tags.splice(i, 0, validateTag(op.value));
  rec.tags = [...new Set(rec.tags)];
}
