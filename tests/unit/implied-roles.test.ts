import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/core/store/db.js';
import { IdentityRepo } from '../../src/services/identity/repo.js';

let store: Store;
let repo: IdentityRepo;

beforeAll(async () => {
  store = await openStore('sqlite::memory:');
  repo = new IdentityRepo(store);
  await repo.write(async (trx) => {
    await trx.insertInto('domains').values({ id: 'd', name: 'D', description: '', enabled: 1, extra: '{}' }).execute();
    await trx
      .insertInto('projects')
      .values({
        id: 'p',
        name: 'P',
        domain_id: 'd',
        parent_id: null,
        description: '',
        enabled: 1,
        tags: '[]',
        options: '{}',
        extra: '{}',
      })
      .execute();
    for (const u of ['alice', 'bob']) {
      await trx
        .insertInto('users')
        .values({
          id: u,
          name: u,
          domain_id: 'd',
          password_hash: null,
          enabled: 1,
          default_project_id: null,
          password_expires_at: null,
          description: null,
          email: null,
          options: '{}',
          extra: '{}',
          created_at: '',
        })
        .execute();
    }
    for (const r of ['admin', 'manager', 'member', 'reader', 'auditor'])
      await trx
        .insertInto('roles')
        .values({ id: r, name: r, domain_key: '', description: null, options: '{}' })
        .execute();
    const chain: Array<[string, string]> = [
      ['admin', 'manager'],
      ['manager', 'member'],
      ['member', 'reader'],
      ['auditor', 'reader'],
    ];
    for (const [prior, implied] of chain)
      await trx.insertInto('implied_roles').values({ prior_role_id: prior, implied_role_id: implied }).execute();
    await trx.insertInto('groups').values({ id: 'g', name: 'g', domain_id: 'd', description: '' }).execute();
    await trx.insertInto('group_members').values({ group_id: 'g', user_id: 'bob' }).execute();
    await trx
      .insertInto('assignments')
      .values({ type: 'UserProject', actor_id: 'alice', target_id: 'p', role_id: 'admin', inherited: 0 })
      .execute();
    await trx
      .insertInto('assignments')
      .values({ type: 'GroupProject', actor_id: 'g', target_id: 'p', role_id: 'auditor', inherited: 0 })
      .execute();
  });
});
afterAll(() => store.close());

describe('implied roles', () => {
  it('expand transitively with the hop that implied each role', async () => {
    expect(new Map(await repo.expandImplied(['admin']))).toEqual(
      new Map([
        ['admin', null],
        ['manager', 'admin'],
        ['member', 'manager'],
        ['reader', 'member'],
      ]),
    );
  });
  it('give a direct admin the whole chain', async () => {
    expect((await repo.effectiveRoles('alice', 'project', 'p')).map((r) => r.name).sort()).toEqual([
      'admin',
      'manager',
      'member',
      'reader',
    ]);
  });
  it('apply to roles held through a group', async () => {
    expect((await repo.effectiveRoles('bob', 'project', 'p')).map((r) => r.name).sort()).toEqual(['auditor', 'reader']);
  });
  it('are cycle-safe and follow writes at once', async () => {
    await repo.write((trx) =>
      trx.insertInto('implied_roles').values({ prior_role_id: 'reader', implied_role_id: 'auditor' }).execute(),
    );
    expect((await repo.expandImplied(['reader'])).map(([id]) => id).sort()).toEqual(['auditor', 'reader']);
    expect((await repo.effectiveRoles('alice', 'project', 'p')).map((r) => r.name)).toContain('auditor');
  });
  it('give nothing without an assignment', async () => {
    expect(await repo.effectiveRoles('bob', 'domain', 'd')).toEqual([]);
  });
});
