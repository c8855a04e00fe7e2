/**
 * Pieces the resource modules share: tags, standard-attribute bumps, quota checks, the resource handler shape.
 */

import type { QuotaResource } from '../../../core/config/network.js';
import type { ApiError } from '../../../core/http/errors.js';
import type { Database } from '../../../core/store/schema.js';
import type { Db, NetContext, NeutronActor, Trx } from '../context.js';
import { nowTs } from '../context.js';
import { overQuota } from '../errors.js';
import type { CustomFilter, View } from '../list-query.js';

/** One Neutron collection, as the generic routes and the programmatic API drive it. */
export interface ResourceHandler {
  singular: string;
  plural: string;
  /** URL path segment under /v2.0 (`security-groups`). */
  path: string;
  /** `net_tags.resource_type`; absent when Neutron does not tag the resource. */
  tagType?: string;
  /** Table holding the resource (for tag revision bumps). */
  table?: StdTable;
  notFound(id: string): ApiError;
  /** Attributes usable as filters and sort keys. */
  known: Set<string>;
  custom?: Record<string, CustomFilter>;
  /** Every view visible to the actor; `hint` may narrow the SQL (the caller filters again). */
  list(actor: NeutronActor, hint: Map<string, string[]>): Promise<View[]>;
  show(actor: NeutronActor, id: string): Promise<View>;
  create(actor: NeutronActor, body: Record<string, unknown>): Promise<View>;
  update?(actor: NeutronActor, id: string, body: Record<string, unknown>): Promise<View>;
  remove(actor: NeutronActor, id: string): Promise<void>;
  /** Checks the actor may change the resource (tags follow the update rule); returns it. */
  updatable?(actor: NeutronActor, id: string): Promise<View>;
}

export type StdTable =
  | 'net_networks'
  | 'net_subnets'
  | 'net_subnetpools'
  | 'net_ports'
  | 'net_security_groups'
  | 'net_routers'
  | 'net_floatingips';

export async function loadTags(db: Db | Trx, type: string, ids: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (!ids.length) return out;
  for (const chunk of chunks(ids)) {
    const rows = await db
      .selectFrom('net_tags')
      .select(['resource_id', 'tag'])
      .where('resource_type', '=', type)
      .where('resource_id', 'in', chunk)
      .orderBy('tag')
      .execute();
    for (const r of rows) {
      const list = out.get(r.resource_id) ?? [];
      list.push(r.tag);
      out.set(r.resource_id, list);
    }
  }
  return out;
}

export async function setTags(trx: Trx, type: string, id: string, tags: string[]): Promise<void> {
  await trx.deleteFrom('net_tags').where('resource_id', '=', id).execute();
  const unique = [...new Set(tags)];
  if (unique.length)
    await trx
      .insertInto('net_tags')
      .values(unique.map((tag) => ({ resource_type: type, resource_id: id, tag })))
      .execute();
}

export async function deleteTags(trx: Trx, id: string): Promise<void> {
  await trx.deleteFrom('net_tags').where('resource_id', '=', id).execute();
}

/** Every change of a resource bumps its revision_number and updated_at (Neutron's standard attributes). */
export async function bump(trx: Trx, table: StdTable, id: string, set: Record<string, unknown> = {}): Promise<void> {
  await (trx as unknown as import('kysely').Kysely<any>)
    .updateTable(table)
    .set((eb: any) => ({ ...set, revision_number: eb('revision_number', '+', 1), updated_at: nowTs() }))
    .where('id', '=', id)
    .execute();
}

/** SQLite caps bound parameters: split long IN lists. */
export function chunks<T>(items: T[], size = 500): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

const QUOTA_TABLE: Record<Exclude<QuotaResource, 'rbac_policy'>, keyof Database> = {
  network: 'net_networks',
  subnet: 'net_subnets',
  subnetpool: 'net_subnetpools',
  port: 'net_ports',
  router: 'net_routers',
  floatingip: 'net_floatingips',
  security_group: 'net_security_groups',
  security_group_rule: 'net_security_group_rules',
};

export async function quotaLimit(db: Db | Trx, nx: NetContext, projectId: string, resource: QuotaResource) {
  const row = await db
    .selectFrom('net_quotas')
    .select('hard_limit')
    .where('project_id', '=', projectId)
    .where('resource', '=', resource)
    .executeTakeFirst();
  return row ? Number(row.hard_limit) : nx.settings.quotas[resource];
}

export async function quotaUsage(db: Db | Trx, projectId: string, resource: QuotaResource): Promise<number> {
  if (resource === 'rbac_policy') return 0;
  const row = (await (db as unknown as import('kysely').Kysely<any>)
    .selectFrom(QUOTA_TABLE[resource])
    .select((eb: any) => eb.fn.countAll().as('n'))
    .where('project_id', '=', projectId)
    .executeTakeFirst()) as { n?: number | string } | undefined;
  return Number(row?.n ?? 0);
}

/** 409 OverQuota when `adding` more would exceed the project's limit (-1: unlimited). */
export async function checkQuota(
  trx: Trx,
  nx: NetContext,
  projectId: string,
  resource: QuotaResource,
  adding = 1,
): Promise<void> {
  if (!projectId) return;
  const limit = await quotaLimit(trx, nx, projectId, resource);
  if (limit < 0) return;
  const used = await quotaUsage(trx, projectId, resource);
  if (used + adding > limit) throw overQuota(resource);
}

export const isNetworkDevice = (owner: string) => owner.startsWith('network:');

/** The JSON text stored for list/dict columns. */
export const j = (v: unknown) => JSON.stringify(v);

export const present = (o: Record<string, unknown>, k: string) => Object.hasOwn(o, k);
