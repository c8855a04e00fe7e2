import type { EndpointRow, RegionRow, ServiceRow } from '../../../core/store/schema.js';
import type { IdentityRepo } from '../repo.js';

/** Writes of the service catalog (services, endpoints, regions). Reads: `IdentityRepo.services`/`endpoints`/`regions`. */
export class CatalogRepo {
  constructor(private readonly repo: IdentityRepo) {}

  async createService(service: ServiceRow): Promise<void> {
    await this.repo.write((trx) => trx.insertInto('services').values(service).execute());
  }

  async updateService(id: string, changes: Partial<Omit<ServiceRow, 'id'>>): Promise<void> {
    await this.repo.write((trx) => trx.updateTable('services').set(changes).where('id', '=', id).execute());
  }

  /** Deletes a service with its endpoints. */
  async deleteService(id: string): Promise<void> {
    await this.repo.write(async (trx) => {
      await trx.deleteFrom('endpoints').where('service_id', '=', id).execute();
      await trx.deleteFrom('services').where('id', '=', id).execute();
    });
  }

  async createEndpoint(endpoint: EndpointRow): Promise<void> {
    await this.repo.write((trx) => trx.insertInto('endpoints').values(endpoint).execute());
  }

  async updateEndpoint(id: string, changes: Partial<Omit<EndpointRow, 'id'>>): Promise<void> {
    await this.repo.write((trx) => trx.updateTable('endpoints').set(changes).where('id', '=', id).execute());
  }

  async deleteEndpoint(id: string): Promise<void> {
    await this.repo.write((trx) => trx.deleteFrom('endpoints').where('id', '=', id).execute());
  }

  /** Without `duplicateMessage`, a region that exists is Keystone's generic 409. */
  async createRegion(region: RegionRow, duplicateMessage?: string): Promise<void> {
    await this.repo.write((trx) => trx.insertInto('regions').values(region).execute(), duplicateMessage);
  }

  async updateRegion(id: string, changes: Partial<Omit<RegionRow, 'id'>>): Promise<void> {
    await this.repo.write((trx) => trx.updateTable('regions').set(changes).where('id', '=', id).execute());
  }

  async deleteRegion(id: string): Promise<void> {
    await this.repo.write((trx) => trx.deleteFrom('regions').where('id', '=', id).execute());
  }
}
