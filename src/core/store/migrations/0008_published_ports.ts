import type { Kysely } from 'kysely';

/**
 * Published host ports as a field of the container (`published_ports`: JSON list of {host_ip, host_port,
 * container_port, protocol}, null for none) and, per binding, a claim on its host's address:port:protocol. The unique
 * index makes two claims of the same socket on one host impossible even for concurrent creates (0.0.0.0 against a
 * specific address is checked after the insert, see ContainerRepo.claimPublishedPorts). Containers made before this
 * migration had them in the `krater.publish` label only: they are carried over (a binding that collides with an
 * earlier one is dropped — only the first of them ever answered).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('containers').addColumn('published_ports', 'text').execute();
  await db.schema
    .createTable('container_published_ports')
    .addColumn('container_uuid', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('host_ip', 'text', (c) => c.notNull())
    .addColumn('host_port', 'integer', (c) => c.notNull())
    .addColumn('protocol', 'text', (c) => c.notNull())
    .addColumn('container_port', 'integer', (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('container_published_ports_socket')
    .on('container_published_ports')
    .columns(['host', 'protocol', 'host_port', 'host_ip'])
    .unique()
    .execute();
  await db.schema
    .createIndex('container_published_ports_container')
    .on('container_published_ports')
    .columns(['container_uuid'])
    .execute();
  await db.schema
    .createIndex('container_published_ports_project')
    .on('container_published_ports')
    .columns(['project_id'])
    .execute();

  const rows = await db
    .selectFrom('containers')
    .select(['uuid', 'project_id', 'host', 'labels'])
    .where('labels', 'like', '%krater.publish%')
    .orderBy('created_at')
    .execute();
  const claimed: { host: string; ip: string; port: number; proto: string }[] = [];
  for (const r of rows as { uuid: string; project_id: string; host: string | null; labels: string }[]) {
    let spec = '';
    try {
      spec = String(JSON.parse(r.labels)['krater.publish'] ?? '');
    } catch {
      continue;
    }
    const ports: { host_ip: string; host_port: number; container_port: number; protocol: string }[] = [];
    for (const one of spec.split(',')) {
      const m = /^\s*(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?\s*$/.exec(one);
      if (!m) continue;
      const p = {
        host_ip: m[1] ?? '0.0.0.0',
        host_port: Number(m[2]),
        container_port: Number(m[3]),
        protocol: m[4] ?? 'tcp',
      };
      if (p.host_port < 1 || p.host_port > 65535 || p.container_port < 1 || p.container_port > 65535) continue;
      const host = r.host ?? '';
      const clash = claimed.some(
        (c) =>
          c.host === host &&
          c.port === p.host_port &&
          c.proto === p.protocol &&
          (c.ip === p.host_ip || c.ip === '0.0.0.0' || p.host_ip === '0.0.0.0'),
      );
      if (clash) continue;
      ports.push(p);
      if (r.host) {
        claimed.push({ host, ip: p.host_ip, port: p.host_port, proto: p.protocol });
        await db
          .insertInto('container_published_ports')
          .values({ container_uuid: r.uuid, project_id: r.project_id, host, ...p })
          .execute();
      }
    }
    if (ports.length)
      await db
        .updateTable('containers')
        .set({ published_ports: JSON.stringify(ports) })
        .where('uuid', '=', r.uuid)
        .execute();
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('container_published_ports').execute();
  await db.schema.alterTable('containers').dropColumn('published_ports').execute();
}
