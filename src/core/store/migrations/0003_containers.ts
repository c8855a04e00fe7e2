import type { Kysely } from 'kysely';
import { autoId } from './util.js';

/** Zun's resources: containers, their actions and events, quotas, compute services and hosts. */
export async function up(db: Kysely<unknown>): Promise<void> {
  const s = db.schema;
  await s
    .createTable('containers')
    .addColumn('uuid', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('project_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('image', 'text', (c) => c.notNull())
    .addColumn('image_driver', 'text', (c) => c.notNull().defaultTo('docker'))
    .addColumn('image_pull_policy', 'text')
    .addColumn('command', 'text')
    .addColumn('entrypoint', 'text')
    .addColumn('cpu', 'real', (c) => c.notNull())
    .addColumn('memory', 'text', (c) => c.notNull())
    .addColumn('disk', 'integer')
    .addColumn('workdir', 'text')
    .addColumn('hostname', 'text')
    .addColumn('environment', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('labels', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('hints', 'text')
    .addColumn('restart_policy', 'text')
    .addColumn('interactive', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('tty', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('auto_remove', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('auto_heal', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('privileged', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('runtime', 'text')
    .addColumn('cpu_policy', 'text', (c) => c.notNull().defaultTo('shared'))
    .addColumn('registry_id', 'text')
    .addColumn('healthcheck', 'text')
    .addColumn('exposed_ports', 'text')
    .addColumn('security_groups', 'text')
    .addColumn('nets', 'text')
    .addColumn('mounts', 'text')
    .addColumn('addresses', 'text')
    .addColumn('ports', 'text')
    .addColumn('availability_zone', 'text')
    .addColumn('host', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('status_reason', 'text')
    .addColumn('task_state', 'text')
    .addColumn('health', 'text')
    .addColumn('exit_code', 'integer')
    .addColumn('restart_count', 'integer', (c) => c.notNull().defaultTo(0))
    /** What the user last asked for: 'running' or 'stopped'; the agent's restart policy works towards it. */
    .addColumn('desired', 'text', (c) => c.notNull().defaultTo('stopped'))
    .addColumn('started_at', 'text')
    .addColumn('finished_at', 'text')
    .addColumn('websocket_token', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text')
    .execute();
  await s.createIndex('containers_project').on('containers').columns(['project_id']).execute();
  await s.createIndex('containers_host').on('containers').columns(['host']).execute();
  await s
    .createTable('container_actions')
    .addColumn('id', ...autoId(db))
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('container_uuid', 'text', (c) => c.notNull())
    .addColumn('request_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text')
    .addColumn('project_id', 'text')
    .addColumn('start_time', 'text', (c) => c.notNull())
    .addColumn('finish_time', 'text')
    .addColumn('message', 'text')
    .execute();
  await s
    .createIndex('container_actions_uuid')
    .on('container_actions')
    .columns(['container_uuid', 'request_id'])
    .execute();
  await s
    .createTable('container_action_events')
    .addColumn('id', ...autoId(db))
    .addColumn('action_id', 'integer', (c) => c.notNull())
    .addColumn('event', 'text', (c) => c.notNull())
    .addColumn('start_time', 'text', (c) => c.notNull())
    .addColumn('finish_time', 'text')
    .addColumn('result', 'text')
    .addColumn('traceback', 'text')
    .execute();
  /** Work the API hands to a host's agent; the agent claims and finishes each one. */
  await s
    .createTable('agent_tasks')
    .addColumn('id', ...autoId(db))
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('container_uuid', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('params', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('action_id', 'integer')
    .addColumn('state', 'text', (c) => c.notNull().defaultTo('pending'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await s.createIndex('agent_tasks_host_state').on('agent_tasks').columns(['host', 'state']).execute();
  await s
    .createTable('quotas')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('resource', 'text', (c) => c.notNull())
    .addColumn('hard_limit', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('quotas_pk', ['scope', 'resource'])
    .execute();
  await s
    .createTable('compute_services')
    .addColumn('id', ...autoId(db))
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('binary', 'text', (c) => c.notNull())
    .addColumn('availability_zone', 'text', (c) => c.notNull().defaultTo('nova'))
    .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('disabled_reason', 'text')
    .addColumn('forced_down', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('report_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_seen_up', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text')
    .addUniqueConstraint('compute_services_host_binary', ['host', 'binary'])
    .execute();
  await s
    .createTable('compute_hosts')
    .addColumn('uuid', 'text', (c) => c.primaryKey())
    .addColumn('hostname', 'text', (c) => c.notNull().unique())
    .addColumn('info', 'text', (c) => c.notNull().defaultTo('{}'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text')
    .execute();
}
