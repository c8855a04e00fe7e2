import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { conflict } from '../../core/http/errors.js';
import { isUniqueViolation, type Store } from '../../core/store/db.js';
import { writeWithRevision } from '../../core/store/revision.js';
import type {
  AppCredRow,
  AssignmentRow,
  Database,
  DomainRow,
  EndpointRow,
  GroupRow,
  ProjectRow,
  RegionRow,
  RevocationRow,
  RoleRow,
  ServiceRow,
  UserRow,
} from '../../core/store/schema.js';

export interface RoleRef {
  id: string;
  name: string;
  domain_id: string | null;
}
export type ScopeKind = 'project' | 'domain' | 'system';

const REVISION_KEY = 'identity_revision';

/**
 * Data access for identity, with read caches that every write invalidates. Replicas share one store, so each
 * request first compares the store's revision marker with the one its caches were built from (`sync`).
 */
export class IdentityRepo {
  readonly db: Kysely<Database>;
  private revision: string | null = null;
  private users = new Map<string, UserRow | null>();
  private projects = new Map<string, ProjectRow | null>();
  private domains = new Map<string, DomainRow | null>();
  private effective = new Map<string, RoleRef[]>();
  private appCreds = new Map<string, AppCredRow | null>();
  private allRoles: RoleRow[] | null = null;
  private implied: Map<string, string[]> | null = null;
  private revocationList: RevocationRow[] | null = null;
  catalogCache: unknown[] | null = null;

  constructor(readonly store: Store) {
    this.db = store.db;
  }

  /** Drops the caches when another replica (or this one) changed identity data. */
  async sync(): Promise<void> {
    // SQLite tells synchronously whether any other connection committed; this process's own writes clear the
    // caches directly. Only a change elsewhere (or an engine without the hint) costs a query.
    if (this.revision !== null && this.store.changedElsewhere && !this.store.changedElsewhere()) return;
    const row = await this.db.selectFrom('meta').select('value').where('key', '=', REVISION_KEY).executeTakeFirst();
    const rev = row?.value ?? '';
    if (rev !== this.revision) {
      this.clearCaches();
      this.revision = rev;
    }
  }

  private clearCaches(): void {
    this.users.clear();
    this.projects.clear();
    this.domains.clear();
    this.effective.clear();
    this.appCreds.clear();
    this.allRoles = null;
    this.implied = null;
    this.revocationList = null;
    this.catalogCache = null;
  }

  /** Runs a write in a transaction, maps unique violations to 409 and bumps the revision. */
  async write<T>(
    fn: (trx: Kysely<Database>) => Promise<T>,
    duplicateMessage = 'Conflict occurred attempting to store the resource.',
  ): Promise<T> {
    let result: T;
    try {
      result = await writeWithRevision(this.db, REVISION_KEY, fn);
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict(duplicateMessage, 'Conflict');
      throw err;
    }
    this.clearCaches();
    this.revision = null;
    return result;
  }

  // ---- domains, projects, users: cached single-row reads ----

  async domain(id: string): Promise<DomainRow | null> {
    if (!this.domains.has(id))
      this.domains.set(
        id,
        (await this.db.selectFrom('domains').selectAll().where('id', '=', id).executeTakeFirst()) ?? null,
      );
    return this.domains.get(id)!;
  }
  async domainByName(name: string): Promise<DomainRow | null> {
    return (await this.db.selectFrom('domains').selectAll().where('name', '=', name).executeTakeFirst()) ?? null;
  }
  async project(id: string): Promise<ProjectRow | null> {
    if (!this.projects.has(id))
      this.projects.set(
        id,
        (await this.db.selectFrom('projects').selectAll().where('id', '=', id).executeTakeFirst()) ?? null,
      );
    return this.projects.get(id)!;
  }
  async projectByName(domainId: string, name: string): Promise<ProjectRow | null> {
    return (
      (await this.db
        .selectFrom('projects')
        .selectAll()
        .where('domain_id', '=', domainId)
        .where('name', '=', name)
        .executeTakeFirst()) ?? null
    );
  }
  async user(id: string): Promise<UserRow | null> {
    if (!this.users.has(id))
      this.users.set(
        id,
        (await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst()) ?? null,
      );
    return this.users.get(id)!;
  }
  async userByName(domainId: string, name: string): Promise<UserRow | null> {
    return (
      (await this.db
        .selectFrom('users')
        .selectAll()
        .where('domain_id', '=', domainId)
        .where('name', '=', name)
        .executeTakeFirst()) ?? null
    );
  }
  async group(id: string): Promise<GroupRow | null> {
    return (await this.db.selectFrom('groups').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
  }
  async appCred(id: string): Promise<AppCredRow | null> {
    if (!this.appCreds.has(id))
      this.appCreds.set(
        id,
        (await this.db.selectFrom('application_credentials').selectAll().where('id', '=', id).executeTakeFirst()) ??
          null,
      );
    return this.appCreds.get(id)!;
  }

  // ---- roles ----

  async roles(): Promise<RoleRow[]> {
    if (!this.allRoles) this.allRoles = await this.db.selectFrom('roles').selectAll().orderBy('name').execute();
    return this.allRoles;
  }
  async role(id: string): Promise<RoleRow | null> {
    return (await this.roles()).find((r) => r.id === id) ?? null;
  }
  async roleByName(name: string, domainId: string | null = null): Promise<RoleRow | null> {
    return (await this.roles()).find((r) => r.name === name && r.domain_key === (domainId ?? '')) ?? null;
  }
  async impliedMap(): Promise<Map<string, string[]>> {
    if (!this.implied) {
      const rows = await this.db.selectFrom('implied_roles').selectAll().execute();
      const m = new Map<string, string[]>();
      for (const r of rows) m.set(r.prior_role_id, [...(m.get(r.prior_role_id) ?? []), r.implied_role_id]);
      this.implied = m;
    }
    return this.implied;
  }

  /** Expands role ids through implied roles (transitively, cycle-safe). Returns [roleId, priorRoleId|null]. */
  async expandImplied(roleIds: string[]): Promise<Array<[string, string | null]>> {
    const implied = await this.impliedMap();
    const seen = new Map<string, string | null>();
    const queue: Array<[string, string | null]> = roleIds.map((id) => [id, null]);
    while (queue.length) {
      const [id, prior] = queue.shift()!;
      if (seen.has(id)) continue;
      seen.set(id, prior);
      for (const next of implied.get(id) ?? []) if (!seen.has(next)) queue.push([next, id]);
    }
    return [...seen.entries()];
  }

  async groupIdsOfUser(userId: string): Promise<string[]> {
    const rows = await this.db.selectFrom('group_members').select('group_id').where('user_id', '=', userId).execute();
    return rows.map((r) => r.group_id);
  }

  /** Directly assigned role ids of a user on a target, directly or through group membership. */
  async assignedRoleIds(userId: string, kind: ScopeKind, targetId: string): Promise<string[]> {
    const groups = await this.groupIdsOfUser(userId);
    const prefix = kind === 'project' ? 'Project' : kind === 'domain' ? 'Domain' : 'System';
    let q = this.db
      .selectFrom('assignments')
      .select('role_id')
      .where('target_id', '=', targetId)
      .where('inherited', '=', 0);
    q = q.where((eb) => {
      const ors = [eb.and([eb('type', '=', `User${prefix}`), eb('actor_id', '=', userId)])];
      if (groups.length) ors.push(eb.and([eb('type', '=', `Group${prefix}`), eb('actor_id', 'in', groups)]));
      return eb.or(ors);
    });
    return [...new Set((await q.execute()).map((r) => r.role_id))];
  }

  /** The effective roles (implied included) of a user on a scope: what a token carries. */
  async effectiveRoles(userId: string, kind: ScopeKind, targetId: string): Promise<RoleRef[]> {
    const key = `${userId}|${kind}|${targetId}`;
    let cached = this.effective.get(key);
    if (!cached) {
      const direct = await this.assignedRoleIds(userId, kind, targetId);
      const expanded = await this.expandImplied(direct);
      const roles = await this.roles();
      cached = expanded
        .map(([id]) => roles.find((r) => r.id === id))
        .filter((r): r is RoleRow => !!r)
        .map((r) => ({ id: r.id, name: r.name, domain_id: r.domain_key || null }));
      this.effective.set(key, cached);
    }
    return cached;
  }

  async assignments(filter: Partial<AssignmentRow> & { types?: string[] }): Promise<AssignmentRow[]> {
    let q = this.db.selectFrom('assignments').selectAll();
    if (filter.types) q = q.where('type', 'in', filter.types);
    if (filter.actor_id) q = q.where('actor_id', '=', filter.actor_id);
    if (filter.target_id) q = q.where('target_id', '=', filter.target_id);
    if (filter.role_id) q = q.where('role_id', '=', filter.role_id);
    return q.execute();
  }

  // ---- catalog ----

  async services(): Promise<ServiceRow[]> {
    return this.db.selectFrom('services').selectAll().execute();
  }
  async endpoints(): Promise<EndpointRow[]> {
    return this.db.selectFrom('endpoints').selectAll().execute();
  }
  async regions(): Promise<RegionRow[]> {
    return this.db.selectFrom('regions').selectAll().execute();
  }

  // ---- revocation ----

  async revocations(): Promise<RevocationRow[]> {
    if (!this.revocationList) {
      const now = String(Date.now());
      // Text comparison is safe: all timestamps are 13-digit millisecond strings until the year 2286.
      this.revocationList = await this.db.selectFrom('revocations').selectAll().where('expires_at', '>', now).execute();
    }
    return this.revocationList;
  }

  async revoke(
    event: Omit<RevocationRow, 'id' | 'issued_before' | 'expires_at'>,
    maxTokenLifetimeMs: number,
  ): Promise<void> {
    const now = Date.now();
    await this.write(async (trx) => {
      await trx
        .insertInto('revocations')
        .values({
          id: randomUUID(),
          audit_id: event.audit_id ?? null,
          user_id: event.user_id ?? null,
          project_id: event.project_id ?? null,
          domain_id: event.domain_id ?? null,
          app_cred_id: event.app_cred_id ?? null,
          issued_before: String(now),
          expires_at: String(now + maxTokenLifetimeMs),
        })
        .execute();
      await trx.deleteFrom('revocations').where('expires_at', '<', String(now)).execute();
    });
  }
}
