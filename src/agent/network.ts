import { performance } from 'node:perf_hooks';
import type { FastifyBaseLogger } from 'fastify';
import type { ContainerNetworking, NeutronClient } from '../compute/networking.js';
import type { Store } from '../core/store/db.js';
import type { ContainerRow } from '../core/store/schema.js';
import type { OciMount } from '../engine/oci-spec.js';
import type { DesiredEndpoint, DesiredNetwork, DesiredState, EndpointPaths } from '../network/types.js';
import { computeDesired, DHCP_OWNER, dhcpDeviceId } from './network-desired.js';

/** The kernel dataplane as the agent drives it (src/network/dataplane.ts implements it). */
export interface DataplaneDriver {
  start(): Promise<void>;
  apply(desired: DesiredState, opts?: { keep?: (endpointId: string) => boolean; readAt?: number }): Promise<void>;
  ensureEndpoint(ep: DesiredEndpoint, networks: DesiredNetwork[]): Promise<EndpointPaths>;
  removeEndpoint(id: string): Promise<void>;
  setPublishing(id: string, on: boolean): Promise<void>;
  stop(opts: { purge: boolean }): Promise<void>;
}

const REVISION_KEY = 'network_revision';
const POLL_MS = 2_000;
const APPLY_DELAY_MS = 600;
const MAX_DELAY_MS = 3_000;

/**
 * The agent's network side (Kuryr's role): plugs a container's Neutron ports into its namespace before the engine
 * creates it, reports them bound and ACTIVE, gives ports back when the container goes, and keeps the kernel in line
 * with the store — after every Neutron change (in-process hint or the store's `network_revision` moving) and on
 * start (reconcile after a crash or reboot).
 */
export class AgentNetwork {
  private revision: string | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private applying: Promise<void> | null = null;
  private again = false;
  private debounce: NodeJS.Timeout | undefined;
  private firstRequest: number | undefined;
  /** Containers whose plug has begun (they are in every full reconcile from then on, even while `Creating`). */
  private plugged = new Set<string>();
  private dhcpPending = new Map<string, Promise<void>>();

  constructor(
    private opts: {
      store: Store;
      host: string;
      dataplane: DataplaneDriver;
      neutron: NeutronClient;
      networking: ContainerNetworking;
      log: FastifyBaseLogger;
    },
  ) {}

  async start(): Promise<void> {
    await this.opts.dataplane.start();
    await this.applyNow();
    this.timer = setInterval(() => void this.pollRevision(), POLL_MS);
  }

  async stop(purge: boolean): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    await this.applying?.catch(() => undefined);
    await this.opts.dataplane.stop({ purge });
  }

  /**
   * Before engine create/start: the container's namespace with its ports, and the files the engine bind-mounts.
   * Returns undefined for a container without ports (it gets an empty namespace of its own).
   */
  async plug(c: ContainerRow): Promise<{ netnsPath: string; mounts: OciMount[] } | undefined> {
    const db = this.opts.store.db;
    const ports = await db
      .selectFrom('net_ports')
      .select(['id', 'network_id'])
      .where('device_id', '=', c.uuid)
      .execute();
    if (!ports.length) return undefined;
    // From here a full reconcile counts this container in (and never removes what the plug makes).
    this.plugged.add(c.uuid);
    await Promise.all([...new Set(ports.map((p) => p.network_id))].map((n) => this.ensureDhcpPort(n)));
    const desired = await computeDesired(db, this.opts.host, { only: [c.uuid], routersHere: false });
    const ep = desired.endpoints.find((e) => e.id === c.uuid);
    if (!ep) return undefined;
    const t0 = performance.now();
    const paths = await this.opts.dataplane.ensureEndpoint(ep, desired.networks);
    this.opts.log.debug({ container: c.uuid, ms: Math.round(performance.now() - t0) }, 'network plug');
    await this.markBound(ports.map((p) => p.id));
    // Other containers learn this one's name and address (DNS records, remote-group members) with the next full
    // reconcile, which waits for a pause in starts (as Neutron's agents, asynchronously).
    this.requestApply();
    return {
      netnsPath: paths.netnsPath,
      mounts: [
        { destination: '/etc/hosts', type: 'bind', source: paths.hostsFile, options: ['rbind', 'rw'] },
        { destination: '/etc/resolv.conf', type: 'bind', source: paths.resolvConf, options: ['rbind', 'rw'] },
        { destination: '/etc/hostname', type: 'bind', source: paths.hostnameFile, options: ['rbind', 'rw'] },
      ],
    };
  }

  /** After the engine removed the container: its namespace goes, its ports are deleted or unbound. */
  async unplug(c: ContainerRow): Promise<void> {
    this.plugged.delete(c.uuid);
    await this.opts.dataplane.removeEndpoint(c.uuid);
    await this.opts.networking.releaseAll(c);
    this.requestApply();
  }

  /**
   * Binds (before the container's task starts; throws when a host port is taken by another program) or frees (once
   * it stopped) the container's published ports. A container without published ports or network: nothing to do.
   */
  async publish(c: Pick<ContainerRow, 'uuid' | 'published_ports'>, on: boolean): Promise<void> {
    if (!c.published_ports) return;
    await this.opts.dataplane.setPublishing(c.uuid, on);
  }

  /** Ports a network_detach took away: given back, then the kernel follows. */
  async detach(c: ContainerRow, ports: { id: string; preserve: boolean }[]): Promise<void> {
    for (const p of ports) await this.opts.networking.releasePort(c.project_id, p.id, p.preserve);
    await this.applyNow();
  }

  /** A port network_attach added: plugged into the running container's namespace. */
  async attach(portIds: string[]): Promise<void> {
    const ports = await this.opts.store.db
      .selectFrom('net_ports')
      .select(['network_id'])
      .where('id', 'in', portIds)
      .execute();
    for (const p of ports) await this.ensureDhcpPort(p.network_id);
    await this.applyNow();
    await this.markBound(portIds);
  }

  /**
   * Debounced full reconcile: it waits until changes pause (at most MAX_DELAY_MS), so that container starts, which
   * take the dataplane's lock for their fast path, are not queued behind it; requests while one runs collapse
   * into one more run.
   */
  requestApply(): void {
    // A revision poll that was under way when the agent stopped must not schedule a reconcile after the stop.
    if (this.stopped) return;
    const now = Date.now();
    this.firstRequest ??= now;
    if (this.debounce) clearTimeout(this.debounce);
    const wait = Math.max(0, Math.min(APPLY_DELAY_MS, this.firstRequest + MAX_DELAY_MS - now));
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.firstRequest = undefined;
      this.runApply();
    }, wait);
    this.debounce.unref();
  }

  private runApply(): void {
    if (this.applying) {
      this.again = true;
      return;
    }
    this.applying = (async () => {
      do {
        this.again = false;
        await this.applyOnce().catch((err) => this.opts.log.warn({ err }, 'network reconcile failed'));
      } while (this.again);
    })().finally(() => {
      this.applying = null;
    });
  }

  async applyNow(): Promise<void> {
    while (this.applying) await this.applying;
    await this.applyOnce();
  }

  private async applyOnce(): Promise<void> {
    const t0 = performance.now();
    const db = this.opts.store.db;
    this.revision = await this.readRevision();
    // Networks in use on this host need their name server port before the desired state is read.
    const nets = await db
      .selectFrom('net_ports')
      .select('network_id')
      .distinct()
      .where('device_owner', '=', 'compute:zun')
      .where('binding_host_id', '=', this.opts.host)
      .execute();
    for (const n of nets) await this.ensureDhcpPort(n.network_id);
    const readAt = Date.now();
    const desired = await computeDesired(db, this.opts.host, { routersHere: true, plugged: this.plugged });
    const t1 = performance.now();
    await this.opts.dataplane.apply(desired, { keep: (id) => this.plugged.has(id), readAt });
    this.opts.log.debug(
      {
        computeMs: Math.round(t1 - t0),
        applyMs: Math.round(performance.now() - t1),
        endpoints: desired.endpoints.length,
      },
      'network reconcile',
    );
    await db
      .updateTable('net_floatingips')
      .set({ status: 'ACTIVE' })
      .where('port_id', 'is not', null)
      .where('router_id', 'is not', null)
      .where('status', '!=', 'ACTIVE')
      .execute();
    await db.updateTable('net_floatingips').set({ status: 'DOWN' }).where('port_id', 'is', null).execute();
    // The DHCP and L3 agents' report: the name server and router legs just applied are up.
    await db
      .updateTable('net_ports')
      .set({ status: 'ACTIVE' })
      .where('status', '!=', 'ACTIVE')
      .where((eb) =>
        eb.or([
          eb.and([eb('device_owner', '=', DHCP_OWNER), eb('binding_host_id', '=', this.opts.host)]),
          eb('device_owner', 'in', ['network:router_interface', 'network:router_gateway']),
        ]),
      )
      .execute();
  }

  private async readRevision(): Promise<string | undefined> {
    const row = await this.opts.store.db
      .selectFrom('meta')
      .select('value')
      .where('key', '=', REVISION_KEY)
      .executeTakeFirst();
    return row?.value;
  }

  private async pollRevision(): Promise<void> {
    try {
      if ((await this.readRevision()) !== this.revision) this.requestApply();
    } catch (err) {
      this.opts.log.warn({ err }, 'network revision check failed');
    }
  }

  /**
   * Neutron's DHCP port: one per network with a DHCP-enabled subnet on each host that serves it. Its addresses
   * are where the network's name server listens.
   */
  private ensureDhcpPort(networkId: string): Promise<void> {
    const pending = this.dhcpPending.get(networkId);
    if (pending) return pending;
    const p = (async () => {
      const db = this.opts.store.db;
      const existing = await db
        .selectFrom('net_ports')
        .select('id')
        .where('network_id', '=', networkId)
        .where('device_owner', '=', DHCP_OWNER)
        .where('binding_host_id', '=', this.opts.host)
        .executeTakeFirst();
      if (existing) return;
      const net = await db
        .selectFrom('net_networks')
        .select('project_id')
        .where('id', '=', networkId)
        .executeTakeFirst();
      const subnets = await db
        .selectFrom('net_subnets')
        .select('id')
        .where('network_id', '=', networkId)
        .where('enable_dhcp', '=', 1)
        .execute();
      if (!net || !subnets.length) return;
      await this.opts.neutron.createPort(
        { projectId: net.project_id, isAdmin: true },
        {
          network_id: networkId,
          project_id: net.project_id,
          device_owner: DHCP_OWNER,
          device_id: dhcpDeviceId(this.opts.host, networkId),
          'binding:host_id': this.opts.host,
          fixed_ips: subnets.map((s) => ({ subnet_id: s.id })),
          port_security_enabled: false,
        },
      );
    })().finally(() => this.dhcpPending.delete(networkId));
    this.dhcpPending.set(networkId, p);
    return p;
  }

  /** The L2 agent's report: the port is plugged on this host (Neutron's `binding:vif_type` bridge, ACTIVE). */
  private async markBound(portIds: string[]): Promise<void> {
    if (!portIds.length) return;
    const db = this.opts.store.db;
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const ports = await db.selectFrom('net_ports').select(['id', 'network_id']).where('id', 'in', portIds).execute();
    for (const p of ports)
      await db
        .updateTable('net_ports')
        .set((eb) => ({
          status: 'ACTIVE',
          binding_host_id: this.opts.host,
          binding_vif_type: 'bridge',
          binding_vif_details: JSON.stringify({ port_filter: true }),
          revision_number: eb('revision_number', '+', 1),
          updated_at: now,
        }))
        .where('id', '=', p.id)
        .execute();
  }
}
