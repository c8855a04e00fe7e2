import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hashPassword } from '../../core/auth/password.js';
import type { KraterConfig } from '../../core/config/config.js';
import { newId } from './ids.js';
import type { IdentityRepo } from './repo.js';

export interface CatalogEntry {
  type: string;
  name: string;
  /** Absolute endpoint URL. */
  url: string;
}

export interface BootstrapResult {
  /** Set only on the first start: the generated admin password, to print once. */
  generatedPassword?: string;
  adminPassword: string;
  /** The catalog's URL when this process left it as it was although its own URL differs (a `krater api` replica
   * started without `--public-url`). */
  catalogKeptAt?: string;
}

export const ADMIN_PASSWORD_FILE = 'admin-password';
/** Roles every Krater cloud has, and the implication chain admin ⇒ manager ⇒ member ⇒ reader. */
const ROLE_CHAIN = ['admin', 'manager', 'member', 'reader'];

/**
 * First start: domain Default, projects admin and service, user admin (generated password in a 0600 file), the
 * roles and their implications, admin's assignments, region and catalog. Every start: the catalog follows the
 * set of services Krater serves and the deployment's public URL — the configured one (`--public-url`, the same on
 * every replica), or, for `krater up` (`catalogFollowsBind`), the one derived from bind and port. A `krater api`
 * replica without a configured URL never moves an existing catalog to itself. Idempotent.
 */
export async function bootstrapIdentity(
  repo: IdentityRepo,
  config: KraterConfig,
  services: CatalogEntry[],
  opts: { catalogFollowsBind?: boolean } = {},
): Promise<BootstrapResult> {
  const passwordFile = join(config.dataDir, ADMIN_PASSWORD_FILE);
  let generatedPassword: string | undefined;
  const existing = await repo.db
    .selectFrom('users')
    .select('id')
    .where('domain_id', '=', 'default')
    .where('name', '=', 'admin')
    .executeTakeFirst();
  if (!existing) {
    generatedPassword = config.bootstrapAdminPassword ?? randomBytes(18).toString('base64url');
    const hash = await hashPassword(generatedPassword);
    await repo.write(async (trx) => {
      const now = new Date().toISOString();
      if (!(await trx.selectFrom('domains').select('id').where('id', '=', 'default').executeTakeFirst())) {
        await trx
          .insertInto('domains')
          .values({ id: 'default', name: 'Default', description: 'The default domain', enabled: 1, extra: '{}' })
          .execute();
      }
      const projectIds: Record<string, string> = {};
      for (const name of ['admin', 'service']) {
        const p = await trx
          .selectFrom('projects')
          .select('id')
          .where('domain_id', '=', 'default')
          .where('name', '=', name)
          .executeTakeFirst();
        projectIds[name] = p?.id ?? newId();
        if (!p)
          await trx
            .insertInto('projects')
            .values({
              id: projectIds[name],
              name,
              domain_id: 'default',
              parent_id: null,
              description: `Bootstrap project ${name}`,
              enabled: 1,
              tags: '[]',
              options: '{}',
              extra: '{}',
            })
            .execute();
      }
      const roleIds: Record<string, string> = {};
      for (const name of [...ROLE_CHAIN, 'service']) {
        const r = await trx
          .selectFrom('roles')
          .select('id')
          .where('name', '=', name)
          .where('domain_key', '=', '')
          .executeTakeFirst();
        roleIds[name] = r?.id ?? newId();
        if (!r)
          await trx
            .insertInto('roles')
            .values({ id: roleIds[name], name, domain_key: '', description: null, options: '{}' })
            .execute();
      }
      for (let i = 0; i + 1 < ROLE_CHAIN.length; i++) {
        const pair = { prior_role_id: roleIds[ROLE_CHAIN[i]], implied_role_id: roleIds[ROLE_CHAIN[i + 1]] };
        const has = await trx
          .selectFrom('implied_roles')
          .select('prior_role_id')
          .where('prior_role_id', '=', pair.prior_role_id)
          .where('implied_role_id', '=', pair.implied_role_id)
          .executeTakeFirst();
        if (!has) await trx.insertInto('implied_roles').values(pair).execute();
      }
      const userId = newId();
      await trx
        .insertInto('users')
        .values({
          id: userId,
          name: 'admin',
          domain_id: 'default',
          password_hash: hash,
          enabled: 1,
          default_project_id: null,
          password_expires_at: null,
          description: null,
          email: null,
          options: '{}',
          extra: '{}',
          created_at: now,
        })
        .execute();
      await trx
        .insertInto('assignments')
        .values({
          type: 'UserProject',
          actor_id: userId,
          target_id: projectIds.admin,
          role_id: roleIds.admin,
          inherited: 0,
        })
        .execute();
      await trx
        .insertInto('assignments')
        .values({ type: 'UserSystem', actor_id: userId, target_id: 'system', role_id: roleIds.admin, inherited: 0 })
        .execute();
      await trx
        .insertInto('assignments')
        .values({ type: 'UserDomain', actor_id: userId, target_id: 'default', role_id: roleIds.admin, inherited: 0 })
        .execute();
    });
    writeFileSync(passwordFile, `${generatedPassword}\n`, { mode: 0o600 });
    chmodSync(passwordFile, 0o600);
  }
  const authoritative = config.publicUrlConfigured || !!opts.catalogFollowsBind;
  const catalogKeptAt = await reconcileCatalog(repo, config, services, authoritative);
  const adminPassword =
    generatedPassword ?? (existsSync(passwordFile) ? readFileSync(passwordFile, 'utf8').trim() : '');
  return { generatedPassword, adminPassword, catalogKeptAt };
}

/**
 * Krater's own services: one service per type with public/internal/admin endpoints at the current URL. Not
 * `authoritative`: existing endpoints stay where they are (the URL they keep is returned when it differs).
 */
async function reconcileCatalog(
  repo: IdentityRepo,
  config: KraterConfig,
  services: CatalogEntry[],
  authoritative: boolean,
): Promise<string | undefined> {
  let keptAt: string | undefined;
  await repo.write(async (trx) => {
    keptAt = undefined;
    if (!(await trx.selectFrom('regions').select('id').where('id', '=', config.region).executeTakeFirst())) {
      await trx.insertInto('regions').values({ id: config.region, description: '', parent_region_id: null }).execute();
    }
    const managed = JSON.parse(
      (await trx.selectFrom('meta').select('value').where('key', '=', 'managed_services').executeTakeFirst())?.value ??
        '{}',
    ) as Record<string, string>;
    for (const entry of services) {
      let serviceId = managed[entry.type];
      if (
        !serviceId ||
        !(await trx.selectFrom('services').select('id').where('id', '=', serviceId).executeTakeFirst())
      ) {
        serviceId = newId();
        managed[entry.type] = serviceId;
        await trx
          .insertInto('services')
          .values({
            id: serviceId,
            type: entry.type,
            name: entry.name,
            description: `Krater ${entry.name}`,
            enabled: 1,
          })
          .execute();
      }
      for (const iface of ['public', 'internal', 'admin']) {
        const ep = await trx
          .selectFrom('endpoints')
          .selectAll()
          .where('service_id', '=', serviceId)
          .where('interface', '=', iface)
          .executeTakeFirst();
        if (!ep)
          await trx
            .insertInto('endpoints')
            .values({
              id: newId(),
              service_id: serviceId,
              interface: iface,
              region_id: config.region,
              url: entry.url,
              enabled: 1,
            })
            .execute();
        else if (!authoritative) {
          if (ep.url !== entry.url && entry.type === 'identity') keptAt = ep.url;
        } else if (ep.url !== entry.url || ep.region_id !== config.region)
          await trx
            .updateTable('endpoints')
            .set({ url: entry.url, region_id: config.region })
            .where('id', '=', ep.id)
            .execute();
      }
    }
    const value = JSON.stringify(managed);
    const updated = await trx
      .updateTable('meta')
      .set({ value })
      .where('key', '=', 'managed_services')
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) === 0)
      await trx.insertInto('meta').values({ key: 'managed_services', value }).execute();
  });
  return keptAt;
}
