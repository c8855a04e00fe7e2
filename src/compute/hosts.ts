import type { Kysely, Selectable } from 'kysely';
import type { ComputeHostRow, ComputeServiceRow, Database } from '../core/store/schema.js';
import { type HostUse, hostUsage } from './scheduler.js';

/** The hosts and their `zun-compute` services as the admin API shows and changes them. */
export class HostRepo {
  constructor(readonly db: Kysely<Database>) {}

  listHosts(): Promise<ComputeHostRow[]> {
    return this.db.selectFrom('compute_hosts').selectAll().orderBy('hostname').execute();
  }

  /** By uuid or hostname. */
  findHost(id: string): Promise<ComputeHostRow | undefined> {
    return this.db
      .selectFrom('compute_hosts')
      .selectAll()
      .where((eb) => eb.or([eb('uuid', '=', id), eb('hostname', '=', id)]))
      .executeTakeFirst();
  }

  /** What the containers placed on each host claim (of `hosts` only, when given). */
  usage(hosts?: string[]): Promise<Map<string, HostUse>> {
    return hostUsage(this.db, hosts);
  }

  listServices(): Promise<Selectable<ComputeServiceRow>[]> {
    return this.db.selectFrom('compute_services').selectAll().orderBy('id').execute();
  }

  findService(host: string, binary: string): Promise<Selectable<ComputeServiceRow> | undefined> {
    return this.db
      .selectFrom('compute_services')
      .selectAll()
      .where('host', '=', host)
      .where('binary', '=', binary)
      .executeTakeFirst();
  }

  async deleteService(id: number): Promise<void> {
    await this.db.deleteFrom('compute_services').where('id', '=', id).execute();
  }

  async updateService(
    id: number,
    values: Partial<Pick<ComputeServiceRow, 'forced_down' | 'disabled' | 'disabled_reason'>>,
  ): Promise<void> {
    await this.db
      .updateTable('compute_services')
      .set({ ...values, updated_at: new Date().toISOString() })
      .where('id', '=', id)
      .execute();
  }

  async availabilityZones(): Promise<string[]> {
    return (await this.db.selectFrom('compute_services').select('availability_zone').distinct().execute()).map(
      (z) => z.availability_zone,
    );
  }
}
