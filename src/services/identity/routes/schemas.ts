import { type Static, type TSchema, Type } from '@sinclair/typebox';

export const Name = Type.String({ minLength: 1, maxLength: 255 });
export const OptText = Type.Optional(Type.Union([Type.String({ maxLength: 65535 }), Type.Null()]));
export const Id = Type.Object({ id: Type.String({ minLength: 1, maxLength: 255 }) });
/** Identity lists filter by any attribute; values are strings on the wire. */
export const ListQuery = Type.Object(
  {},
  { additionalProperties: Type.Union([Type.String(), Type.Array(Type.String())]) },
);

/** Keystone keeps unknown attributes of domains, projects and users as "extra" and renders them back. */
export function splitExtra(body: Record<string, unknown>, known: string[]): Record<string, unknown> {
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) if (!known.includes(k) && k !== 'links' && k !== 'password') extra[k] = v;
  return extra;
}

/**
 * The static type of a body object whose schema lets unknown attributes through (`additionalProperties: true`):
 * the declared ones typed, any other one `unknown` (the routes read a few, such as an immutable `domain_id`).
 */
export type WithExtra<T extends TSchema> = Static<T> & Record<string, unknown>;
