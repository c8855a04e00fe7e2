/**
 * Zun's network records (`/v1/networks`): a Neutron network an operator registers for containers, as Zun's docker
 * driver records the docker network it makes for it. Krater's hosts realize a Neutron network on demand (the
 * dataplane keys it by the Neutron id), so the record is the registration and `network_id` is that id.
 */
import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database, ZunNetworkRow } from '../core/store/schema.js';
import { computeError } from './errors.js';

export class ZunNetworkRepo {
  constructor(readonly db: Kysely<Database>) {}

  /** The record of `neutronNetId`, made if there is none yet (a second registration answers the first record). */
  async ensure(neutronNetId: string, name: string | null, owner: { projectId: string; userId: string }) {
    const existing = await this.find(neutronNetId);
    if (existing) return existing;
    const row: ZunNetworkRow = {
      uuid: randomUUID(),
      name,
      neutron_net_id: neutronNetId,
      network_id: neutronNetId,
      project_id: owner.projectId,
      user_id: owner.userId,
      created_at: new Date().toISOString(),
    };
    // Two concurrent registrations: the unique key keeps one; the loser answers the winner's record.
    await this.db
      .insertInto('zun_networks')
      .values(row)
      .onConflict((oc) => oc.column('neutron_net_id').doNothing())
      .execute();
    return (await this.find(neutronNetId)) ?? row;
  }

  find(neutronNetId: string): Promise<ZunNetworkRow | undefined> {
    return this.db.selectFrom('zun_networks').selectAll().where('neutron_net_id', '=', neutronNetId).executeTakeFirst();
  }

  /** Removes the record; 409 while a container is still connected to the network (as docker refuses a network with endpoints). */
  async remove(neutronNetId: string): Promise<void> {
    const row = await this.find(neutronNetId);
    if (!row) throw computeError(404, 'NetworkNotFound', `Network ${neutronNetId} could not be found.`);
    // `addresses` is JSON keyed by Neutron network id (a uuid: no LIKE wildcards in it).
    const inUse = await this.db
      .selectFrom('containers')
      .select('uuid')
      .where('addresses', 'like', `%"${neutronNetId}"%`)
      .limit(1)
      .executeTakeFirst();
    if (inUse) throw computeError(409, 'Conflict', `Network ${neutronNetId} is in use by container ${inUse.uuid}.`);
    await this.db.deleteFrom('zun_networks').where('uuid', '=', row.uuid).execute();
  }
}
