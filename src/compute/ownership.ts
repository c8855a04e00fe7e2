import type { Kysely } from 'kysely';
import type { Database } from '../core/store/schema.js';
import { Status } from './states.js';

/**
 * Owner references: an object (a container today; ports and volumes as they gain the columns) may belong to another
 * — a capsule, a Magnum cluster — named by kind and id. Owned objects are ordinary objects of their project (listed,
 * shown, policed as usual); what ownership adds is that they go when their owner goes. Deletion is not cascaded
 * inline: the garbage collector (src/controllers/garbage-collector.ts) asks each owner kind whether the owner still
 * exists and deletes what it finds orphaned, so an owner deleted by a replica that crashed halfway still takes its
 * objects with it.
 */
export interface OwnerRef {
  kind: string;
  id: string;
}

/** How the collector learns whether an owner of some kind still exists. */
export interface OwnerKind {
  readonly kind: string;
  /** The ids among `ids` that still exist (an owner being deleted counts as gone once it cannot come back). */
  existing(ids: string[]): Promise<Set<string>>;
}

const KIND = /^[a-z][a-z0-9_.-]{0,63}$/;

/** Checks an owner reference's shape (kinds are code-defined names; ids are the owner's own ids). */
export function validOwnerRef(ref: OwnerRef): boolean {
  return KIND.test(ref.kind) && typeof ref.id === 'string' && ref.id.length > 0 && ref.id.length <= 255;
}

/** The owner kinds this deployment knows; an owned row whose kind nobody registered is left alone (and logged). */
export class OwnerKinds {
  private readonly kinds = new Map<string, OwnerKind>();

  register(kind: OwnerKind): void {
    if (!KIND.test(kind.kind)) throw new Error(`invalid owner kind: ${kind.kind}`);
    this.kinds.set(kind.kind, kind);
  }

  get(kind: string): OwnerKind | undefined {
    return this.kinds.get(kind);
  }
}

/** A container as an owner (a capsule's sandbox owns its members; a container may own helpers). */
export function containerOwnerKind(db: Kysely<Database>): OwnerKind {
  return {
    kind: 'container',
    async existing(ids) {
      if (!ids.length) return new Set();
      const rows = await db.selectFrom('containers').select('uuid').where('uuid', 'in', ids).execute();
      return new Set(rows.map((r) => r.uuid));
    },
  };
}

/** Owned containers not already being deleted, grouped by owner kind and owner id: what the collector checks. */
export async function ownedContainers(db: Kysely<Database>): Promise<Map<string, Map<string, string[]>>> {
  const rows = await db
    .selectFrom('containers')
    .select(['uuid', 'owner_kind', 'owner_id'])
    .where('owner_kind', 'is not', null)
    .where('owner_id', 'is not', null)
    .where('status', '!=', Status.Deleting)
    .execute();
  const byKind = new Map<string, Map<string, string[]>>();
  for (const r of rows) {
    const kind = r.owner_kind as string;
    const owners = byKind.get(kind) ?? new Map<string, string[]>();
    byKind.set(kind, owners);
    const list = owners.get(r.owner_id as string) ?? [];
    list.push(r.uuid);
    owners.set(r.owner_id as string, list);
  }
  return byKind;
}

/** Records who owns a container (set at create by in-process callers; not part of Zun's wire API). */
export async function setContainerOwner(db: Kysely<Database>, uuid: string, owner: OwnerRef | null): Promise<void> {
  if (owner && !validOwnerRef(owner)) throw new Error(`invalid owner reference ${owner.kind}/${owner.id}`);
  await db
    .updateTable('containers')
    .set({ owner_kind: owner?.kind ?? null, owner_id: owner?.id ?? null })
    .where('uuid', '=', uuid)
    .execute();
}
