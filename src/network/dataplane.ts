/**
 * The kernel dataplane: makes this host's bridges, veths, namespaces, nftables (published ports included) and
 * helper processes (dnsmasq) match a DesiredState. See src/network/README.md for the design; names are in names.ts.
 */

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readlink, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CommandError,
  inNetns,
  ipBatch,
  ipJson,
  netnsPath,
  nftApply,
  type Prepared,
  prepareIpBatch,
  prepareNft,
  run,
  runRaw,
  sysctl,
} from './exec.js';
import { killPid, livePid, processMatches, readText, stopPidFile, writeAtomic } from './files.js';
import { DNS_IFNAME, ENDPOINT_ALIAS_PREFIX, Names, POOL_IFNAME, PUBLISH_IFNAME, qgName, qrName } from './names.js';
import {
  antiSpoofChain,
  endpointFirewall,
  endpointFirewallAdd,
  hostBridgeAddPort,
  hostBridgeTable,
  hostGuardTable,
  isV6,
  replaceTable,
  routerNatTable,
  stripPrefix,
} from './nft.js';
import { PortReservations, portKey } from './port-reservations.js';
import {
  chooseTransit,
  DEFAULT_TRANSIT_CIDR,
  endpointPublishTable,
  hostPublishTable,
  type PublishBinding,
  transitPeer,
  transitRange,
} from './publish-nat.js';
import type { DesiredEndpoint, DesiredNetwork, DesiredRouter, DesiredState, EndpointPaths } from './types.js';

type LogFn = (obj: object, msg?: string) => void;
/** The subset of a pino logger the dataplane uses. */
export interface DataplaneLogger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

export interface DataplaneOptions {
  /** 4 characters [a-z0-9], unique per Krater instance on this host: every kernel object name carries it. */
  tag: string;
  /** Private directory: state file, DNS hosts files, endpoint files, pid files, logs. */
  stateDir: string;
  log: DataplaneLogger;
  /** Pre-created endpoint namespaces kept ready (default 4; 0 disables the pool). */
  poolSize?: number;
  /** IPv4 range the publish legs' point-to-point pairs come from (default 169.254.64.0/18). */
  publishTransit?: string;
}

/** One namespace the dataplane owns, as the generic reconciler sees it. */
interface LegSpec {
  hostIf: string;
  ifname: string;
  bridge: string;
  mac: string;
  mtu: number;
  addresses: string[];
}
interface RouteSpec {
  /** `default` or a prefix. */
  dst: string;
  via: string;
  dev?: string;
}
interface NsSpec {
  netns: string;
  legs: LegSpec[];
  routes: RouteSpec[];
  sysctls?: Record<string, string>;
  /** Full nft script (an atomic table replacement), applied on every reconcile. */
  nft?: string;
  /** Alias of `lo` (the endpoint id of an endpoint namespace). */
  alias?: string;
  /** Inner links the reconciler leaves alone (made apart from the legs: the publish leg). */
  keepInner?: string[];
}

interface EndpointRecord {
  netns: string;
  /** Fingerprint of what was last applied (empty: unknown, reconcile). */
  fp: string;
  /** Host ends of its veths. */
  hostIfs: string[];
  desired?: DesiredEndpoint;
  /** Host end address of its publish leg (the namespace end is the next address), when it has published ports. */
  transit?: string;
  /** Fingerprint of the publish leg last made (empty: reconcile). */
  legFp?: string;
}

interface RouterRecord {
  fp: string;
  floatingIps: string[];
}

interface StateFile {
  version: 1;
  endpoints: Record<string, { netns: string; fp: string; hostIfs: string[]; transit?: string }>;
  pool: string[];
  networks: Record<string, string>;
  routers: Record<string, RouterRecord>;
  dns: Record<string, string>;
}

interface HostLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  master?: string;
  link_index?: number;
  link_netnsid?: number;
  operstate?: string;
  address?: string;
  addr_info?: { family: string; local: string; prefixlen: number; scope: string }[];
}

interface Survey {
  links: Map<string, HostLink>;
  netns: Set<string>;
  tables: Set<string>;
}

const fp = (v: unknown): string => createHash('sha1').update(JSON.stringify(v)).digest('hex').slice(0, 16);
const normDst = (d: string): string => (d === '0.0.0.0/0' || d === '::/0' ? 'default' : d.replace(/\/(32|128)$/, ''));
const v6nodad = (cidr: string): string => (isV6(cidr) ? ' nodad' : '');

export class Dataplane {
  readonly names: Names;
  private readonly stateDir: string;
  private readonly log: DataplaneLogger;
  private readonly poolSize: number;
  private readonly transitCidr: string;
  /** Host ports held for the published ports that are bound now. */
  private readonly reservations = new PortReservations();
  /** When each endpoint's binding was last set by setPublishing (a full apply read before that does not undo it). */
  private publishingSet = new Map<string, { on: boolean; at: number }>();
  /** The host NAT table last written (undefined: rewrite). */
  private publishText: string | undefined;
  /** The host's IPv4 forwarding was off when remote published ports were last checked (warned once). */
  private forwardWarned = false;

  private endpoints = new Map<string, EndpointRecord>();
  private routers = new Map<string, RouterRecord>();
  private networkFp = new Map<string, string>();
  private dnsFp = new Map<string, string>();
  /** Ready pool entries (random ids: namespace krater-<tag>-e-<id>, host veth kp<tag><id>). */
  private pool: string[] = [];
  /** Pool entries being created (protected from garbage collection). */
  private pending = new Set<string>();
  /** Per pool entry: `ip -batch` and `nft -f` already running inside its namespace, waiting for their input. */
  private prepared = new Map<string, { ip: Prepared; nft: Prepared }>();
  /** The same for the host namespace (one of each, replaced after use). */
  private hostIp: Prepared | undefined;
  private hostNft: Prepared | undefined;
  private saving: Promise<void> = Promise.resolve();
  /** Bumped by every kernel change of the reconcilers: an apply that changed nothing reuses its first survey. */
  private mutations = 0;
  private knownBridges = new Set<string>();
  private hostBridgeText: string | undefined;
  private lock: Promise<unknown> = Promise.resolve();
  private refilling: Promise<void> | undefined;
  private started = false;
  private stopped = false;

  constructor(opts: DataplaneOptions) {
    this.names = new Names(opts.tag);
    this.stateDir = opts.stateDir;
    this.log = opts.log;
    this.poolSize = opts.poolSize ?? 4;
    this.transitCidr = opts.publishTransit ?? DEFAULT_TRANSIT_CIDR;
    transitRange(this.transitCidr);
  }

  // ------------------------------------------------------------------------------------------------ lifecycle

  /** Checks the tools, creates the host-level tables, loads the state (rediscovering from the kernel what the state
   * file does not know), and warms the pool in the background. */
  async start(): Promise<void> {
    for (const argv of [
      ['ip', '-V'],
      ['nft', '--version'],
      ['dnsmasq', '--version'],
      ['nsenter', '--version'],
    ]) {
      const r = await runRaw(argv).catch((err: Error) => ({ code: -1, stdout: '', stderr: err.message }));
      if (r.code !== 0) throw new Error(`dataplane: ${argv[0]} is required (${r.stderr.trim() || 'not found'})`);
    }
    if ((await runRaw(['conntrack', '--version']).catch(() => ({ code: -1 }))).code !== 0)
      this.log.warn({}, 'dataplane: conntrack tool missing: entries of removed floating IPs stay until they expire');
    await mkdir(this.stateDir, { recursive: true });
    await this.locked(async () => {
      await this.stopLegacyProxies();
      await this.loadState();
      const survey = await this.survey();
      await this.ensureHostTables(survey);
      await this.rediscover(survey);
      await this.saveState();
    });
    this.started = true;
    this.stopped = false;
    this.refill();
  }

  /** keep: everything stays (containers keep their network across agent restarts; the state file is saved).
   * purge: every object of this tag is removed (tests). */
  async stop(opts: { purge: boolean }): Promise<void> {
    this.stopped = true;
    await this.refilling;
    this.closePrepared();
    await this.locked(async () => {
      // keep: the DNAT rules stay (running containers keep answering); the next start holds the ports again.
      this.reservations.releaseAll();
      if (!opts.purge) {
        await this.saveState();
        return;
      }
      await this.purgeAll();
    });
    this.started = false;
  }

  // ------------------------------------------------------------------------------------------------ public API

  /** Full reconcile: the kernel matches `desired`, and every object of this tag that is not desired is removed.
   * Idempotent; cheap when nothing changed (one `ip`, one `nft` listing and a few /proc reads). The caller must
   * include every endpoint it has ensured and still wants. Errors of single objects do not stop the others; they
   * are thrown together at the end. */
  async apply(
    desired: DesiredState,
    opts: { keep?: (endpointId: string) => boolean; readAt?: number } = {},
  ): Promise<void> {
    if (this.stopped) return;
    this.assertStarted();
    const rulesOnly = await this.locked(() => {
      // A reconcile queued behind the stop must not build again what a purge removed (or change a saved state).
      if (this.stopped) return Promise.resolve([]);
      // A container started or stopped after the caller read its desired state: its binding is newer.
      if (opts.readAt !== undefined)
        for (const ep of desired.endpoints) {
          const set = this.publishingSet.get(ep.id);
          if (set && set.at >= opts.readAt) ep.publishing = set.on;
        }
      return this.applyLocked(desired, opts.keep);
    });
    // Outside the lock, so that container starts meanwhile are not held up.
    await this.rewriteRules(rulesOnly);
  }

  /** Rewrites the tables of endpoints whose rules alone changed, a few at a time (each touches only its own
   * namespace, so no lock is needed); an endpoint removed or replaced meanwhile is skipped. */
  private async rewriteRules(rulesOnly: { ep: DesiredEndpoint; rec: EndpointRecord }[]): Promise<void> {
    const errors: string[] = [];
    for (let i = 0; i < rulesOnly.length; i += 4) {
      await Promise.all(
        rulesOnly.slice(i, i + 4).map(async ({ ep, rec }) => {
          if (this.endpoints.get(ep.id) !== rec) return;
          try {
            await nftApply(endpointFirewall(this.names.table, ep.interfaces), rec.netns);
            rec.fp = this.endpointFp(ep);
            rec.desired = ep;
          } catch (err) {
            if (this.endpoints.get(ep.id) === rec) errors.push(`rules of endpoint ${ep.id}: ${(err as Error).message}`);
          }
        }),
      );
    }
    if (errors.length) throw new Error(`dataplane: ${errors.join('; ')}`);
  }

  /** The fast path for a container start: only this endpoint (and its networks' bridges when missing). */
  async ensureEndpoint(ep: DesiredEndpoint, networks: DesiredNetwork[]): Promise<EndpointPaths> {
    this.assertStarted();
    const paths = await this.locked(async () => {
      const byId = new Map(networks.map((n) => [n.id, n]));
      for (const itf of ep.interfaces) {
        const bridge = this.names.bridge(itf.networkId);
        if (this.knownBridges.has(bridge)) continue;
        const net = byId.get(itf.networkId);
        if (!net) throw new Error(`dataplane: endpoint ${ep.id}: network ${itf.networkId} not given`);
        await this.ensureBridge(net, (await this.survey(false)).links);
      }
      const rec = this.endpoints.get(ep.id);
      if (rec && existsSync(netnsPath(rec.netns))) {
        if (rec.fp !== this.endpointFp(ep)) await this.reconcileEndpoint(ep, rec, true);
      } else if (this.pool.length > 0 && ep.interfaces.length > 0) {
        await this.fastEndpoint(ep);
      } else {
        const netns = this.names.endpointNetns(this.names.newPoolId());
        const fresh: EndpointRecord = { netns, fp: '', hostIfs: [] };
        await this.reconcileEndpoint(ep, fresh, true);
      }
      const rec2 = this.endpoints.get(ep.id)!;
      await this.ensurePublishLeg(ep, rec2);
      if (ep.publishing || rec2.transit) {
        const failed = await this.syncPublished();
        const mine = failed.get(ep.id);
        if (mine) this.log.error({ endpoint: ep.id, err: mine }, 'dataplane: published ports');
      }
      // Not awaited: the namespace's `lo` alias already lets a restart rediscover this endpoint.
      void this.saveState().catch((err: Error) => this.log.error({ err: err.message }, 'dataplane: state file'));
      return this.paths(ep.id)!;
    });
    this.refill();
    return paths;
  }

  async removeEndpoint(id: string): Promise<void> {
    this.assertStarted();
    await this.locked(async () => {
      await this.removeEndpointLocked(id);
      await this.syncPublished();
      await this.saveState();
    });
  }

  /**
   * Binds (container starting) or frees (container stopped) an endpoint's published ports: one host NAT table
   * rewrite. Binding throws, leaving the ports unbound, when a host port is in use by another program (Docker:
   * "port is already allocated"). An endpoint this dataplane does not know (no network) has nothing to bind.
   */
  async setPublishing(id: string, on: boolean): Promise<void> {
    // A run's exit seen while the agent stops (a purge removes the containers) must not write the host table the
    // stop just removed or saved.
    if (this.stopped) return;
    this.assertStarted();
    this.publishingSet.set(id, { on, at: Date.now() });
    await this.locked(async () => {
      if (this.stopped) return;
      const rec = this.endpoints.get(id);
      if (!rec?.desired) return;
      // Already bound may mean a full apply that read the row after the start began (task_state
      // container_starting) bound it: its bind failures were only logged, so a start looks again.
      if (rec.desired.publishing === on && !on) return;
      rec.desired = { ...rec.desired, publishing: on };
      if (on) await this.ensurePublishLeg(rec.desired, rec);
      const failed = await this.syncPublished();
      const mine = failed.get(id);
      if (on && mine) {
        this.publishingSet.set(id, { on: false, at: Date.now() });
        rec.desired = { ...rec.desired, publishing: false };
        await this.syncPublished();
        throw new Error(mine);
      }
    });
  }

  /** Resolves when the pool is full (the refill runs in the background after every take). */
  async warm(): Promise<void> {
    for (let p = this.refilling; p; p = this.refilling) await p;
  }

  /** Pool entries ready to take. */
  get poolAvailable(): number {
    return this.pool.length;
  }

  endpointPaths(id: string): EndpointPaths | undefined {
    return this.endpoints.has(id) ? this.paths(id) : undefined;
  }

  // ------------------------------------------------------------------------------------------------ apply

  /** Returns the endpoints whose rules alone changed: `apply` rewrites their tables after the lock. */
  private async applyLocked(
    desired: DesiredState,
    keep?: (endpointId: string) => boolean,
  ): Promise<{ ep: DesiredEndpoint; rec: EndpointRecord }[]> {
    const errors: string[] = [];
    const attempt = async (what: string, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`);
        this.log.error({ err: (err as Error).message }, `dataplane: ${what}`);
      }
    };
    const tA = performance.now();
    let survey = await this.survey();
    const mutationsBefore = this.mutations;
    const tSurvey = performance.now();
    await attempt('host tables', () => this.ensureHostTables(survey));
    await this.rediscover(survey);

    const networks = new Map(desired.networks.map((n) => [n.id, n]));
    const wantedBridges = new Set(desired.networks.map((n) => this.names.bridge(n.id)));
    for (const n of desired.networks) {
      const link = survey.links.get(this.names.bridge(n.id));
      const nfp = fp([n.mtu, n.hostAddresses]);
      if (link?.flags.includes('UP') && this.networkFp.get(n.id) === nfp) continue;
      await attempt(`network ${n.id}`, async () => {
        await this.ensureBridge(n, survey.links);
        this.networkFp.set(n.id, nfp);
      });
    }

    const tNets = performance.now();
    // Endpoints no longer desired go first (their namespaces may hold names the new ones want).
    const wantedEndpoints = new Set(desired.endpoints.map((e) => e.id));
    for (const id of [...this.endpoints.keys()]) {
      // `keep`: ensured after the caller read its desired state (a container starting meanwhile).
      if (!wantedEndpoints.has(id) && !keep?.(id))
        await attempt(`remove endpoint ${id}`, () => this.removeEndpointLocked(id));
    }
    const rulesOnly: { ep: DesiredEndpoint; rec: EndpointRecord }[] = [];
    for (const ep of desired.endpoints) {
      const missing = ep.interfaces.find((i) => !networks.has(i.networkId));
      if (missing) {
        errors.push(`endpoint ${ep.id}: network ${missing.networkId} is not in the desired state`);
        continue;
      }
      const rec = this.endpoints.get(ep.id);
      if (rec && this.endpointHealthy(ep, rec, survey)) {
        if (rec.fp === this.endpointFp(ep)) {
          rec.desired = ep;
          continue;
        }
        if (rec.desired && this.shapeFp(rec.desired) === this.shapeFp(ep)) {
          // Only rules changed (typically a remote group gained or lost a member): the table alone is rewritten.
          rulesOnly.push({ ep, rec });
          continue;
        }
      }
      await attempt(`endpoint ${ep.id}`, () =>
        this.reconcileEndpoint(
          ep,
          rec ?? { netns: this.names.endpointNetns(this.names.newPoolId()), fp: '', hostIfs: [] },
          false,
        ),
      );
    }

    const tEps = performance.now();
    for (const r of desired.routers) await attempt(`router ${r.id}`, () => this.reconcileRouter(r, survey));
    for (const id of [...this.routers.keys()]) {
      if (!desired.routers.some((r) => r.id === id)) this.routers.delete(id);
    }
    for (const n of desired.networks) {
      if (n.dns) await attempt(`dns ${n.id}`, () => this.reconcileDns(n, survey));
    }
    for (const id of [...this.dnsFp.keys()]) if (!networks.get(id)?.dns) this.dnsFp.delete(id);

    const tDns = performance.now();
    // Anti-spoofing: one atomic rewrite when anything changed.
    await attempt('anti-spoofing table', async () => {
      const ports = desired.endpoints.flatMap((ep) =>
        ep.interfaces.filter((i) => i.portSecurity).map((itf) => ({ hostIf: this.names.veth(itf.portId), itf })),
      );
      const text = hostBridgeTable(this.names.table, ports);
      if (text !== this.hostBridgeText || !survey.tables.has(`bridge ${this.names.table}`)) {
        await nftApply(text);
        this.hostBridgeText = text;
      }
    });

    const survey2 = this.mutations !== mutationsBefore ? await this.survey(false) : survey;
    for (const ep of desired.endpoints) {
      const rec = this.endpoints.get(ep.id);
      if (rec) await attempt(`publish leg of ${ep.id}`, () => this.ensurePublishLeg(ep, rec, survey2.links));
    }
    if (!survey.tables.has(`ip ${this.names.table}`)) this.publishText = undefined;
    await attempt('published ports', async () => {
      const failed = await this.syncPublished();
      if (failed.size) throw new Error([...failed.values()].join('; '));
    });

    const tSpoof = performance.now();
    // Garbage: everything of this tag that nothing desired explains.
    if (this.mutations !== mutationsBefore) survey = await this.survey(false);
    const keepNetns = new Set<string>([
      ...[...this.endpoints.values()].map((r) => r.netns),
      ...[...this.pool, ...this.pending].map((id) => this.names.endpointNetns(id)),
      ...desired.routers.map((r) => this.names.routerNetns(r.id)),
      ...desired.networks.filter((n) => n.dns).map((n) => this.names.dnsNetns(n.id)),
    ]);
    const keepLinks = new Set<string>([
      ...wantedBridges,
      ...desired.endpoints.flatMap((ep) => ep.interfaces.map((i) => this.names.veth(i.portId))),
      ...desired.routers.flatMap((r) => this.routerLegs(r).map((l) => l.hostIf)),
      ...desired.networks.flatMap((n) => (n.dns ? [this.names.dnsVeth(n.dns.portId)] : [])),
      ...[...this.pool, ...this.pending].map((id) => this.names.poolVeth(id)),
      ...desired.endpoints.filter((ep) => ep.published.length).map((ep) => this.names.publishVeth(ep.id)),
    ]);
    await attempt('garbage', () => this.collectGarbage(survey, keepNetns, keepLinks, desired));
    for (const b of [...this.knownBridges]) if (!wantedBridges.has(b)) this.knownBridges.delete(b);
    for (const id of [...this.networkFp.keys()]) if (!networks.has(id)) this.networkFp.delete(id);

    const tGc = performance.now();
    this.log.debug(
      { ms: [tSurvey - tA, tNets - tSurvey, tEps - tNets, tDns - tEps, tSpoof - tDns, tGc - tSpoof].map(Math.round) },
      'dataplane: apply phases (survey, networks, endpoints, routers+dns, spoof+proxies, garbage)',
    );
    await this.saveState();
    this.refill();
    if (errors.length) throw new Error(`dataplane apply: ${errors.length} error(s): ${errors.join('; ')}`);
    return rulesOnly;
  }

  private async collectGarbage(
    survey: Survey,
    keepNetns: Set<string>,
    keepLinks: Set<string>,
    desired: DesiredState,
  ): Promise<void> {
    // Helper processes first (they hold namespaces).
    const dnsKeep = new Set(desired.networks.filter((n) => n.dns).map((n) => n.id));
    for (const f of await listDir(join(this.stateDir, 'dns'))) {
      const m = /^(.*)\.pid$/.exec(f);
      if (m && !dnsKeep.has(m[1])) await this.stopDns(m[1]);
    }
    for (const ns of survey.netns) {
      if (keepNetns.has(ns)) continue;
      this.log.info({ netns: ns }, 'dataplane: removing stray namespace');
      await this.deleteNetns(ns);
    }
    const stray = [...survey.links.keys()].filter((l) => !keepLinks.has(l));
    // Veths first: deleting a namespace may already have removed some (-force: continue past those).
    stray.sort((a, b) => Number(a.startsWith(`kb${this.names.tag}`)) - Number(b.startsWith(`kb${this.names.tag}`)));
    if (stray.length) {
      this.log.info({ links: stray }, 'dataplane: removing stray links');
      await runRaw(['ip', '-force', '-batch', '-'], `${stray.map((l) => `link del dev ${l}`).join('\n')}\n`);
    }
    const epKeep = new Set(desired.endpoints.map((e) => e.id));
    for (const d of await listDir(join(this.stateDir, 'endpoints'))) {
      if (!epKeep.has(d)) await rm(join(this.stateDir, 'endpoints', d), { recursive: true, force: true });
    }
  }

  // ------------------------------------------------------------------------------------------------ endpoints

  private endpointFp(ep: DesiredEndpoint): string {
    return fp({ ...ep, published: undefined, publishing: undefined });
  }

  /** An endpoint without its rules: equal shapes differ at most in their security group rules. */
  private shapeFp(ep: DesiredEndpoint): string {
    return fp({
      ...ep,
      published: undefined,
      publishing: undefined,
      interfaces: ep.interfaces.map((i) => ({ ...i, rules: undefined })),
    });
  }

  private endpointHealthy(ep: DesiredEndpoint, rec: EndpointRecord, survey: Survey): boolean {
    if (!survey.netns.has(rec.netns)) return false;
    return ep.interfaces.every((i) => {
      const l = survey.links.get(this.names.veth(i.portId));
      return l?.master === this.names.bridge(i.networkId) && l.flags.includes('UP') && l.link_netnsid !== undefined;
    });
  }

  private endpointSpec(ep: DesiredEndpoint, netns: string): NsSpec {
    const routes: RouteSpec[] = [];
    const gw4 = ep.interfaces.find((i) => i.gateway4);
    const gw6 = ep.interfaces.find((i) => i.gateway6);
    if (gw4) routes.push({ dst: 'default', via: gw4.gateway4!, dev: gw4.ifname });
    if (gw6) routes.push({ dst: 'default', via: gw6.gateway6!, dev: gw6.ifname });
    for (const i of ep.interfaces)
      for (const r of i.routes) routes.push({ dst: normDst(r.destination), via: r.nexthop, dev: i.ifname });
    return {
      netns,
      legs: ep.interfaces.map((i) => ({
        hostIf: this.names.veth(i.portId),
        ifname: i.ifname,
        bridge: this.names.bridge(i.networkId),
        mac: i.mac,
        mtu: i.mtu,
        addresses: i.addresses,
      })),
      routes,
      nft: endpointFirewall(this.names.table, ep.interfaces),
      alias: `${ENDPOINT_ALIAS_PREFIX}${ep.id}`,
      keepInner: [PUBLISH_IFNAME],
    };
  }

  /** Slow path (new endpoint without a pool entry, or a changed one): the generic namespace reconciler. */
  private async reconcileEndpoint(ep: DesiredEndpoint, rec: EndpointRecord, incrementalSpoof: boolean): Promise<void> {
    const spec = this.endpointSpec(ep, rec.netns);
    const before = rec.hostIfs;
    this.endpoints.set(ep.id, rec);
    await this.reconcileNs(spec, ENDPOINT_SYSCTLS);
    rec.hostIfs = spec.legs.map((l) => l.hostIf);
    if (incrementalSpoof) {
      const now = new Set(ep.interfaces.filter((i) => i.portSecurity).map((i) => this.names.veth(i.portId)));
      let script = '';
      for (const itf of ep.interfaces) {
        if (itf.portSecurity) script += hostBridgeAddPort(this.names.table, this.names.veth(itf.portId), itf);
      }
      for (const h of new Set([...before, ...rec.hostIfs])) if (!now.has(h)) script += this.spoofRemoveScript(h);
      await nftApply(script);
      this.hostBridgeText = undefined;
    }
    await this.writeEndpointFiles(ep);
    rec.fp = this.endpointFp(ep);
    rec.desired = ep;
  }

  /** The fast path: a pooled namespace whose veth's inner end is already inside; four concurrent process spawns
   * (host `ip -batch`, namespace `ip -batch`, namespace `nft`, host `nft`) plus three small files. */
  private async fastEndpoint(ep: DesiredEndpoint): Promise<void> {
    const id = this.pool.shift()!;
    const netns = this.names.endpointNetns(id);
    const kp = this.names.poolVeth(id);
    const rec: EndpointRecord = { netns, fp: '', hostIfs: ep.interfaces.map((i) => this.names.veth(i.portId)) };
    this.endpoints.set(ep.id, rec);
    const spec = this.endpointSpec(ep, netns);
    const [first, ...rest] = spec.legs;
    const host = [`link set dev ${kp} name ${first.hostIf}`];
    for (const leg of rest) {
      host.push(
        `link add ${leg.hostIf} mtu ${leg.mtu} type veth peer name ${leg.ifname} mtu ${leg.mtu} netns ${netns}`,
      );
      host.push(`link set dev ${leg.hostIf} addrgenmode none`);
    }
    for (const leg of spec.legs) host.push(`link set dev ${leg.hostIf} mtu ${leg.mtu} master ${leg.bridge} up`);
    const inner = [`link set dev ${POOL_IFNAME} name ${first.ifname}`];
    for (const leg of spec.legs) {
      inner.push(`link set dev ${leg.ifname} address ${leg.mac} mtu ${leg.mtu} up`);
      for (const a of leg.addresses) inner.push(`addr add ${a} dev ${leg.ifname}${v6nodad(a)}`);
    }
    for (const r of spec.routes) inner.push(`route replace ${r.dst} via ${r.via}${r.dev ? ` dev ${r.dev}` : ''}`);
    inner.push(`link set dev lo alias ${spec.alias}`);
    let spoof = '';
    for (const itf of ep.interfaces) {
      if (itf.portSecurity) spoof += hostBridgeAddPort(this.names.table, this.names.veth(itf.portId), itf, true);
    }
    const prep = this.prepared.get(id);
    this.prepared.delete(id);
    const hostIp = this.hostIp;
    const hostNft = this.hostNft;
    this.hostIp = this.hostNft = undefined;
    const nsNft = endpointFirewallAdd(this.names.table, ep.interfaces);
    try {
      const hostDone = hostIp ? hostIp.run(`${host.join('\n')}\n`).then(() => undefined) : ipBatch(host);
      const innerRun = (): Promise<unknown> => (prep ? prep.ip.run(`${inner.join('\n')}\n`) : ipBatch(inner, netns));
      // The inner end of the pooled veth exists already; other interfaces' inner ends appear with the host batch.
      const innerDone = rest.length ? hostDone.then(innerRun) : innerRun();
      const t0 = performance.now();
      const ms: Record<string, number> = {};
      const timed = (name: string, p: Promise<unknown>): Promise<void> =>
        p.then(() => {
          ms[name] = Math.round((performance.now() - t0) * 10) / 10;
        });
      await Promise.all([
        timed('host', hostDone),
        timed('netns', innerDone),
        timed('nft', nsNft && prep ? prep.nft.run(nsNft) : nftApply(nsNft, netns)),
        timed('spoof', spoof && hostNft ? hostNft.run(spoof) : nftApply(spoof)),
        timed('files', this.writeEndpointFiles(ep)),
      ]);
      this.log.debug({ endpoint: ep.id, netns, ms }, 'dataplane: fast path');
      if (spoof) this.hostBridgeText = undefined;
    } catch (err) {
      prep?.ip.close();
      prep?.nft.close();
      this.log.warn({ endpoint: ep.id, err: (err as Error).message }, 'dataplane: fast path failed, slow path');
      // The generic reconciler repairs whatever half of the batch went through.
      await this.reconcileEndpoint(ep, rec, true);
      return;
    }
    prep?.ip.close();
    prep?.nft.close();
    hostIp?.close();
    hostNft?.close();
    rec.fp = this.endpointFp(ep);
    rec.desired = ep;
  }

  private async removeEndpointLocked(id: string): Promise<void> {
    this.mutations++;
    const rec = this.endpoints.get(id);
    if (rec) {
      // Its published ports stop before its namespace goes (the caller rewrites the NAT table).
      if (rec.desired) rec.desired = { ...rec.desired, publishing: false };
      rec.transit = undefined;
      await runRaw(['ip', 'link', 'del', 'dev', this.names.publishVeth(id)]);
      let script = '';
      for (const h of rec.hostIfs) script += this.spoofRemoveScript(h);
      await nftApply(script).catch((err: Error) => this.log.warn({ err: err.message }, 'dataplane: anti-spoofing'));
      this.hostBridgeText = undefined;
      await this.deleteNetns(rec.netns);
      // Deleting the namespace removes its veths unless a process (the container) still holds it: delete them.
      if (rec.hostIfs.length)
        await runRaw(['ip', '-force', '-batch', '-'], `${rec.hostIfs.map((l) => `link del dev ${l}`).join('\n')}\n`);
    }
    this.endpoints.delete(id);
    this.publishingSet.delete(id);
    await rm(join(this.stateDir, 'endpoints', id), { recursive: true, force: true });
  }

  private spoofRemoveScript(hostIf: string): string {
    const t = this.names.table;
    const chain = antiSpoofChain(hostIf);
    // add-then-delete makes each step idempotent (the element or chain may not exist).
    return (
      `add chain bridge ${t} ${chain}\n` +
      `add element bridge ${t} ports { ${JSON.stringify(hostIf)} : jump ${chain} }\n` +
      `delete element bridge ${t} ports { ${JSON.stringify(hostIf)} }\n` +
      `flush chain bridge ${t} ${chain}\ndelete chain bridge ${t} ${chain}\n`
    );
  }

  private paths(id: string): EndpointPaths {
    const dir = join(this.stateDir, 'endpoints', id);
    return {
      netnsPath: netnsPath(this.endpoints.get(id)!.netns),
      hostsFile: join(dir, 'hosts'),
      resolvConf: join(dir, 'resolv.conf'),
      hostnameFile: join(dir, 'hostname'),
    };
  }

  private async writeEndpointFiles(ep: DesiredEndpoint): Promise<void> {
    const dir = join(this.stateDir, 'endpoints', ep.id);
    const own = ep.interfaces.flatMap((i) => i.addresses.map(stripPrefix));
    const names = [ep.hostname, ...ep.search.slice(0, 1).map((d) => `${ep.hostname}.${d}`)].reverse();
    const hosts =
      '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n' +
      'ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' +
      own.map((a) => `${a}\t${names.join(' ')}\n`).join('');
    const resolv =
      ep.nameservers.map((n) => `nameserver ${n}\n`).join('') +
      (ep.search.length ? `search ${ep.search.join(' ')}\n` : '') +
      'options ndots:1\n';
    await Promise.all([
      writeAtomic(join(dir, 'hosts'), hosts),
      writeAtomic(join(dir, 'resolv.conf'), resolv),
      writeAtomic(join(dir, 'hostname'), `${ep.hostname}\n`),
    ]);
  }

  // ------------------------------------------------------------------------------------------------ published ports

  /**
   * The endpoint's publish leg, when it has published ports (removed otherwise): veth `kt<tag><id>` (host, transit
   * address X/31, `route_localnet` so DNATed 127.0.0.1 traffic may leave through it) ↔ `pub0` in its namespace (Y/31),
   * and the namespace's DNAT from the leg to the container's fixed IPv4 address. Skipped when nothing changed and the
   * host end is intact (`links`: a fresh survey's).
   */
  private async ensurePublishLeg(
    ep: DesiredEndpoint,
    rec: EndpointRecord,
    links?: Map<string, HostLink>,
  ): Promise<void> {
    const hostIf = this.names.publishVeth(ep.id);
    if (ep.published.length === 0) {
      if (rec.transit || links?.has(hostIf)) {
        this.mutations++;
        await runRaw(['ip', 'link', 'del', 'dev', hostIf]);
        rec.transit = undefined;
        rec.legFp = '';
        await nftApply(replaceTable('ip', this.names.table, ''), rec.netns).catch(() => undefined);
      }
      return;
    }
    const fixed = ep.interfaces.flatMap((i) => i.addresses.map(stripPrefix)).find((a) => !isV6(a));
    const link = (links ?? (await this.survey(false)).links).get(hostIf);
    if (!rec.transit) rec.legFp = '';
    const want = fp([rec.transit, fixed, rec.netns]);
    const healthy =
      rec.transit !== undefined &&
      link?.flags.includes('UP') &&
      link.link_netnsid !== undefined &&
      (link.addr_info ?? []).some((a) => a.local === rec.transit);
    if (healthy && rec.legFp === want) return;
    this.mutations++;
    if (!rec.transit) {
      const hostAddrs = (await ipJson<HostLink>(['-4', 'addr', 'show'])).flatMap((l) =>
        (l.addr_info ?? []).map((a) => a.local),
      );
      const mine = [...this.endpoints.values()].flatMap((r) => (r.transit ? [r.transit, transitPeer(r.transit)] : []));
      const chosen = chooseTransit(this.transitCidr, [...hostAddrs, ...mine]);
      if (!chosen) throw new Error(`publish transit range ${this.transitCidr} is exhausted`);
      rec.transit = chosen;
    }
    const x = rec.transit;
    const y = transitPeer(x);
    if (link) await runRaw(['ip', 'link', 'del', 'dev', hostIf]);
    await ipBatch([
      `link add ${hostIf} type veth peer name ${PUBLISH_IFNAME} netns ${rec.netns}`,
      `link set dev ${hostIf} addrgenmode none`,
      `addr add ${x}/31 dev ${hostIf}`,
      `link set dev ${hostIf} up`,
    ]);
    await Promise.all([
      sysctl({ [`net.ipv4.conf.${hostIf}.route_localnet`]: '1' }),
      ipBatch(
        [
          `link set dev ${PUBLISH_IFNAME} addrgenmode none`,
          `addr add ${y}/31 dev ${PUBLISH_IFNAME}`,
          `link set dev ${PUBLISH_IFNAME} up`,
          // Replies of an unconnected UDP socket take their source from the route: the fixed address, so that they
          // match the DNAT's conntrack entry (from Y they would look like a new flow and be re-mapped).
          ...(fixed ? [`route replace ${x}/32 dev ${PUBLISH_IFNAME} src ${fixed}`] : []),
        ],
        rec.netns,
      ),
      nftApply(endpointPublishTable(this.names.table, PUBLISH_IFNAME, fixed), rec.netns),
    ]);
    rec.legFp = fp([x, fixed, rec.netns]);
  }

  /**
   * The host NAT table follows the endpoints whose ports are bound now (`publishing`, leg made); their host ports
   * are held (port-reservations.ts) first, and a binding whose port some other program holds is left out. Returns
   * the failures by endpoint.
   */
  private async syncPublished(): Promise<Map<string, string>> {
    const entries: { id: string; p: DesiredEndpoint['published'][number]; target: string }[] = [];
    for (const [id, rec] of this.endpoints) {
      if (!rec.desired?.publishing || !rec.transit) continue;
      for (const p of rec.desired.published) entries.push({ id, p, target: transitPeer(rec.transit) });
    }
    const failedKeys = await this.reservations.sync(entries.map((e) => e.p));
    const failed = new Map<string, string>();
    const bindings: PublishBinding[] = [];
    for (const e of entries) {
      const why = failedKeys.get(portKey(e.p));
      if (why) {
        const msg = `Bind for ${e.p.hostIp}:${e.p.hostPort}/${e.p.protocol} failed: ${why}`;
        failed.set(e.id, failed.has(e.id) ? `${failed.get(e.id)}; ${msg}` : msg);
        continue;
      }
      bindings.push({ ...e.p, target: e.target });
    }
    const text = hostPublishTable(this.names.table, this.names.publishVethPrefix, bindings);
    if (text !== this.publishText) {
      this.mutations++;
      await nftApply(text);
      this.publishText = text;
    }
    if (!this.forwardWarned && bindings.some((b) => !b.hostIp.startsWith('127.'))) {
      const forwarding = (await readText('/proc/sys/net/ipv4/ip_forward'))?.trim();
      if (forwarding === '0') {
        this.forwardWarned = true;
        this.log.warn(
          {},
          'dataplane: net.ipv4.ip_forward is 0: published ports answer the host itself but not other machines (Docker turns it on; Krater leaves that to the operator)',
        );
      }
    }
    return failed;
  }

  /** Older Krater versions ran one `port-proxy.js` process per published port (pid files in `<stateDir>/proxy`,
   * marker `krater-proxy:<tag>:` in their arguments): they are stopped, their files removed. */
  private async stopLegacyProxies(): Promise<void> {
    const dir = join(this.stateDir, 'proxy');
    const marker = `krater-proxy:${this.names.tag}:`;
    for (const f of await listDir(dir)) {
      const m = /^(.*)\.pid$/.exec(f);
      if (m) await stopPidFile(join(dir, f), `${marker}${m[1]}`);
    }
    // Ones whose pid file is lost: found by their marker.
    for (const d of await listDir('/proc')) {
      if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
      if (await processMatches(Number(d), marker)) {
        this.log.info({ pid: Number(d) }, 'dataplane: stopping a port proxy of an older version');
        await killPid(Number(d));
      }
    }
    await rm(dir, { recursive: true, force: true });
  }

  // ------------------------------------------------------------------------------------------------ routers

  private routerLegs(r: DesiredRouter): LegSpec[] {
    const legs = r.interfaces.map((i) => ({
      hostIf: this.names.routerVeth(i.portId),
      ifname: qrName(i.portId),
      bridge: this.names.bridge(i.networkId),
      mac: i.mac,
      mtu: i.mtu,
      addresses: i.addresses,
    }));
    if (r.gateway)
      legs.push({
        hostIf: this.names.routerVeth(r.gateway.portId),
        ifname: qgName(r.gateway.portId),
        bridge: this.names.bridge(r.gateway.networkId),
        mac: r.gateway.mac,
        mtu: r.gateway.mtu,
        addresses: r.gateway.addresses,
      });
    return legs;
  }

  private async reconcileRouter(r: DesiredRouter, survey: Survey): Promise<void> {
    const netns = this.names.routerNetns(r.id);
    const legs = this.routerLegs(r);
    const rfp = fp(r);
    const prev = this.routers.get(r.id);
    const healthy =
      survey.netns.has(netns) &&
      legs.every((l) => {
        const link = survey.links.get(l.hostIf);
        return link?.master === l.bridge && link.flags.includes('UP');
      });
    if (prev && prev.fp === rfp && healthy) return;
    const routes: RouteSpec[] = [];
    const g = r.gateway;
    if (g?.nexthop4) routes.push({ dst: 'default', via: g.nexthop4, dev: qgName(g.portId) });
    if (g?.nexthop6) routes.push({ dst: 'default', via: g.nexthop6, dev: qgName(g.portId) });
    for (const rt of r.routes) routes.push({ dst: normDst(rt.destination), via: rt.nexthop });
    const snatAddress = g?.snat ? g.addresses.map(stripPrefix).find((a) => !isV6(a)) : undefined;
    const nft = routerNatTable(
      this.names.table,
      g ? { gatewayIf: qgName(g.portId), snatAddress, floatingIps: r.floatingIps } : undefined,
    );
    // Floating IPs live on the gateway leg as /32 (they answer ARP there).
    if (g) {
      const gwLeg = legs[legs.length - 1];
      gwLeg.addresses = [
        ...gwLeg.addresses,
        ...r.floatingIps
          .map((f) => `${f.floatingIp}/${isV6(f.floatingIp) ? 128 : 32}`)
          .filter((a) => !gwLeg.addresses.some((x) => stripPrefix(x) === stripPrefix(a))),
      ];
    }
    await this.reconcileNs(
      { netns, legs, routes, nft },
      {
        'net.ipv4.ip_forward': '1',
        'net.ipv6.conf.all.forwarding': '1',
        'net.ipv4.conf.all.rp_filter': '0',
      },
    );
    const fips = r.floatingIps.map((f) => f.floatingIp);
    for (const gone of (prev?.floatingIps ?? []).filter((f) => !fips.includes(f))) {
      // Connections through a floating IP that is gone must not keep flowing on their old NAT entries.
      for (const flag of ['-d', '-q'])
        await runRaw(inNetns(netns, ['conntrack', '-D', flag, gone])).catch(() => undefined);
    }
    this.routers.set(r.id, { fp: rfp, floatingIps: fips });
  }

  // ------------------------------------------------------------------------------------------------ DNS

  private async reconcileDns(n: DesiredNetwork, survey: Survey): Promise<void> {
    const dns = n.dns!;
    const netns = this.names.dnsNetns(n.id);
    const leg: LegSpec = {
      hostIf: this.names.dnsVeth(dns.portId),
      ifname: DNS_IFNAME,
      bridge: this.names.bridge(n.id),
      mac: dns.mac,
      mtu: n.mtu,
      addresses: dns.addresses,
    };
    const dfp = fp([leg, dns.domain]);
    const link = survey.links.get(leg.hostIf);
    const healthy = survey.netns.has(netns) && link?.master === leg.bridge && link.flags.includes('UP');
    const dir = join(this.stateDir, 'dns');
    const hostsFile = join(dir, `${n.id}.hosts`);
    const pidFile = join(dir, `${n.id}.pid`);
    const marker = `--addn-hosts=${hostsFile}`;
    if (this.dnsFp.get(n.id) !== dfp || !healthy) {
      const nft = replaceTable(
        'inet',
        this.names.table,
        '  chain input {\n    type filter hook input priority filter; policy drop;\n    iif "lo" accept\n' +
          '    ct state established,related accept\n    meta l4proto { icmp, ipv6-icmp } accept\n' +
          '    udp dport 53 accept\n    tcp dport 53 accept\n  }\n',
      );
      await this.reconcileNs({ netns, legs: [leg], routes: [], nft }, {});
      if (this.dnsFp.get(n.id) !== dfp) await stopPidFile(pidFile, marker);
    }
    const changed = await writeAtomic(hostsFile, dnsHosts(n));
    const pid = await livePid(pidFile, marker);
    if (pid !== undefined) {
      if (changed) process.kill(pid, 'SIGHUP');
    } else {
      await run(
        inNetns(netns, [
          'dnsmasq',
          '--conf-file=/dev/null',
          '--no-resolv',
          '--no-hosts',
          '--no-poll',
          marker,
          `--domain=${dns.domain}`,
          `--local=/${dns.domain}/`,
          '--bind-interfaces',
          ...dns.addresses.map((a) => `--listen-address=${stripPrefix(a)}`),
          `--pid-file=${pidFile}`,
          `--log-facility=${join(dir, `${n.id}.log`)}`,
          '--user=root',
          '--group=root',
          '--local-ttl=5',
        ]),
      );
    }
    this.dnsFp.set(n.id, dfp);
  }

  private async stopDns(networkId: string): Promise<void> {
    const dir = join(this.stateDir, 'dns');
    await stopPidFile(join(dir, `${networkId}.pid`), `--addn-hosts=${join(dir, `${networkId}.hosts`)}`);
    await rm(join(dir, `${networkId}.hosts`), { force: true });
  }

  // ------------------------------------------------------------------------------------------------ bridges

  private async ensureBridge(n: DesiredNetwork, links: Map<string, HostLink>): Promise<void> {
    this.mutations++;
    const name = this.names.bridge(n.id);
    const link = links.get(name);
    const external = n.hostAddresses.length > 0;
    const lines: string[] = [];
    if (!link) {
      lines.push(`link add ${name} mtu ${n.mtu} type bridge stp_state 0 forward_delay 0 mcast_snooping 0`);
      // Tenant bridges: no host presence at all (no IPv6 link-local either).
      if (!external) lines.push(`link set dev ${name} addrgenmode none`);
    }
    lines.push(`link set dev ${name} mtu ${n.mtu} up`);
    const have = (link?.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`);
    for (const a of have) if (!n.hostAddresses.includes(a)) lines.push(`addr del ${a} dev ${name}`);
    for (const a of n.hostAddresses) if (!have.includes(a)) lines.push(`addr add ${a} dev ${name}${v6nodad(a)}`);
    await ipBatch(lines);
    this.knownBridges.add(name);
  }

  // ------------------------------------------------------------------------------------------------ namespaces

  /** Makes one namespace match `spec`: creates it if missing, creates/renames/deletes veths, sets MACs, MTUs,
   * addresses and routes (removing what is not desired), sysctls and the nft table. */
  private async reconcileNs(spec: NsSpec, sysctls: Record<string, string>): Promise<void> {
    this.mutations++;
    const { netns } = spec;
    if (!existsSync(netnsPath(netns))) {
      await run(['ip', 'netns', 'add', netns]);
      await ipBatch(['link set dev lo up'], netns);
    }
    await sysctl(sysctls, netns);
    // Fresh: an apply's survey may predate earlier steps of the same apply.
    const hostLinks = (await this.survey(false)).links;
    let inner = await ipJson<HostLink>(['addr', 'show'], netns);
    const byIndex = new Map(inner.map((l) => [l.ifindex, l]));
    const hostBatch: string[] = [];
    const matched = new Map<string, HostLink | string>(); // hostIf → inner link (or the temp name just created)
    let tmp = 0;
    for (const leg of spec.legs) {
      const h = hostLinks.get(leg.hostIf);
      const peer = h?.link_index !== undefined ? byIndex.get(h.link_index) : undefined;
      if (h && peer && peer.link_index === h.ifindex) {
        matched.set(leg.hostIf, peer);
        continue;
      }
      if (h) hostBatch.push(`link del dev ${leg.hostIf}`);
      const t = `knew${tmp++}`;
      hostBatch.push(`link add ${leg.hostIf} mtu ${leg.mtu} type veth peer name ${t} mtu ${leg.mtu} netns ${netns}`);
      hostBatch.push(`link set dev ${leg.hostIf} addrgenmode none`);
      matched.set(leg.hostIf, t);
    }
    for (const leg of spec.legs) hostBatch.push(`link set dev ${leg.hostIf} mtu ${leg.mtu} master ${leg.bridge} up`);
    const keepInner = new Set([...matched.values()].flatMap((v) => (typeof v === 'string' ? [] : [v.ifindex])));
    const nsBatch: string[] = [];
    for (const l of inner)
      if (l.ifname !== 'lo' && !keepInner.has(l.ifindex) && !spec.keepInner?.includes(l.ifname))
        nsBatch.push(`link del dev ${l.ifname}`);
    await ipBatch(nsBatch, netns);
    await ipBatch(hostBatch);
    if ([...matched.values()].some((v) => typeof v === 'string'))
      inner = await ipJson<HostLink>(['addr', 'show'], netns);
    const byName = new Map(inner.map((l) => [l.ifname, l]));
    const batch: string[] = [];
    // Renames in two steps (a temporary name first), so swapping eth0/eth1 works.
    const renames: [string, string][] = [];
    for (const leg of spec.legs) {
      const m = matched.get(leg.hostIf)!;
      const cur = typeof m === 'string' ? m : m.ifname;
      if (cur !== leg.ifname) renames.push([cur, leg.ifname]);
    }
    for (const [i, [cur]] of renames.entries())
      batch.push(`link set dev ${cur} down`, `link set dev ${cur} name kren${i}`);
    for (const [i, [, want]] of renames.entries()) batch.push(`link set dev kren${i} name ${want}`);
    for (const leg of spec.legs) {
      const m = matched.get(leg.hostIf)!;
      const cur = byName.get(typeof m === 'string' ? m : m.ifname);
      batch.push(`link set dev ${leg.ifname} address ${leg.mac} mtu ${leg.mtu} up`);
      const have = (cur?.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`);
      for (const a of have) if (!leg.addresses.includes(a)) batch.push(`addr del ${a} dev ${leg.ifname}`);
      for (const a of leg.addresses) if (!have.includes(a)) batch.push(`addr add ${a} dev ${leg.ifname}${v6nodad(a)}`);
    }
    batch.push('link set dev lo up');
    if (spec.alias) batch.push(`link set dev lo alias ${spec.alias}`);
    await ipBatch(batch, netns);
    // Routes: everything not made by the kernel (connected, RA) that is not desired goes.
    const [r4, r6] = await Promise.all([
      ipJson<{ dst: string; gateway?: string; protocol?: string; dev?: string }>(['route', 'show'], netns),
      ipJson<{ dst: string; gateway?: string; protocol?: string; dev?: string }>(['-6', 'route', 'show'], netns),
    ]);
    const want = new Set(spec.routes.map((r) => `${r.dst}|${r.via}`));
    const routeBatch: string[] = [];
    for (const r of [...r4, ...r6]) {
      if (r.protocol === 'kernel' || r.protocol === 'ra' || !r.gateway) continue;
      if (!want.has(`${normDst(r.dst)}|${r.gateway}`))
        routeBatch.push(`route del ${r.dst} via ${r.gateway}${r.dev ? ` dev ${r.dev}` : ''}`);
    }
    for (const r of spec.routes) routeBatch.push(`route replace ${r.dst} via ${r.via}${r.dev ? ` dev ${r.dev}` : ''}`);
    await ipBatch(routeBatch, netns);
    if (spec.nft) await nftApply(spec.nft, netns);
  }

  private async deleteNetns(netns: string): Promise<void> {
    // Router and DNS namespaces hold only our processes (dnsmasq; a lost pid file must not leak it).
    if (netns.startsWith(this.names.dnsNetns('')) || netns.startsWith(this.names.routerNetns(''))) {
      for (const pid of await pidsInNetns(netns)) await killPid(pid);
    }
    const r = await runRaw(['ip', 'netns', 'del', netns]);
    if (r.code !== 0 && existsSync(netnsPath(netns)))
      throw new CommandError(['ip', 'netns', 'del', netns], r.code, r.stderr);
  }

  // ------------------------------------------------------------------------------------------------ pool

  private refill(): void {
    if (this.refilling || this.stopped || !this.started) return;
    // Deferred a little: spawning blocks the thread for a moment and takes CPU from the container the caller of
    // ensureEndpoint is starting right now.
    // Not unref'd: a stop awaits this, and with everything else closed an unref'd timer would let the process end
    // before the stop (a purge) has run.
    this.refilling = new Promise<void>((resolve) => setTimeout(resolve, REFILL_DELAY_MS)).then(async () => {
      if (this.stopped) {
        this.refilling = undefined;
        return;
      }
      try {
        if (!this.hostIp?.usable) this.hostIp = prepareIpBatch();
        if (!this.hostNft?.usable) this.hostNft = prepareNft();
        for (const id of this.pool) {
          if (!this.prepared.has(id)) this.prepared.set(id, this.prepare(id));
        }
        while (!this.stopped && this.pool.length + this.pending.size < this.poolSize) await this.createPoolEntry();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'dataplane: pool refill failed');
      } finally {
        this.refilling = undefined;
      }
    });
  }

  private prepare(id: string): { ip: Prepared; nft: Prepared } {
    const netns = this.names.endpointNetns(id);
    return { ip: prepareIpBatch(netns), nft: prepareNft(netns) };
  }

  private closePrepared(): void {
    for (const p of this.prepared.values()) {
      p.ip.close();
      p.nft.close();
    }
    this.prepared.clear();
    this.hostIp?.close();
    this.hostNft?.close();
    this.hostIp = this.hostNft = undefined;
  }

  private async createPoolEntry(): Promise<void> {
    this.mutations++;
    const id = this.names.newPoolId();
    const netns = this.names.endpointNetns(id);
    const kp = this.names.poolVeth(id);
    this.pending.add(id);
    try {
      await ipBatch([
        `netns add ${netns}`,
        `link add ${kp} type veth peer name ${POOL_IFNAME} netns ${netns}`,
        `link set dev ${kp} addrgenmode none`,
      ]);
      // The firewall's skeleton is loaded now (with a `ct` match, so the namespace's conntrack is initialised
      // here): taking the entry only replaces it, which is markedly cheaper than a first load.
      await Promise.all([
        ipBatch(['link set dev lo up'], netns),
        sysctl(ENDPOINT_SYSCTLS, netns),
        nftApply(endpointFirewall(this.names.table, []), netns),
      ]);
      if (this.stopped) throw new Error('stopped');
      this.prepared.set(id, this.prepare(id));
      this.pool.push(id);
    } catch (err) {
      await runRaw(['ip', 'netns', 'del', netns]);
      await runRaw(['ip', 'link', 'del', 'dev', kp]);
      if ((err as Error).message !== 'stopped') throw err;
    } finally {
      this.pending.delete(id);
    }
  }

  // ------------------------------------------------------------------------------------------------ kernel survey, state

  /** One `ip -j addr show` (all host links with their addresses), the namespace names and (optionally) the nft
   * tables: what exists of this tag. */
  private async survey(withTables = true): Promise<Survey> {
    const [links, ns, tables] = await Promise.all([
      ipJson<HostLink>(['addr', 'show']),
      listDir('/run/netns'),
      withTables ? run(['nft', '-j', 'list', 'tables']) : Promise.resolve(''),
    ]);
    const tableSet = new Set<string>();
    if (tables) {
      for (const item of JSON.parse(tables).nftables ?? []) {
        if (item.table?.name === this.names.table) tableSet.add(`${item.table.family} ${item.table.name}`);
      }
    }
    return {
      links: new Map(links.filter((l) => this.names.ownsLink(l.ifname)).map((l) => [l.ifname, l])),
      netns: new Set(ns.filter((n) => this.names.ownsNetns(n))),
      tables: tableSet,
    };
  }

  private async ensureHostTables(survey: Survey): Promise<void> {
    if (!survey.tables.has(`inet ${this.names.table}`))
      await nftApply(hostGuardTable(this.names.table, this.names.tag));
    if (!survey.tables.has(`bridge ${this.names.table}`)) {
      const text = hostBridgeTable(this.names.table, []);
      await nftApply(text);
      this.hostBridgeText = undefined;
    }
  }

  /** Namespaces of ours that the state does not explain: an endpoint namespace's `lo` alias names its endpoint
   * (adopted, to be reconciled); pool entries listed in the state whose veth is intact are kept; everything else
   * (a half-made pool entry after a crash) is deleted. */
  private async rediscover(survey: Survey): Promise<void> {
    const known = new Set([...this.endpoints.values()].map((r) => r.netns));
    const prefix = `${this.names.netnsPrefix}e-`;
    const poolIds = new Set(this.pool);
    this.pool = [];
    for (const ns of survey.netns) {
      if (!ns.startsWith(prefix) || known.has(ns)) continue;
      const id = ns.slice(prefix.length);
      if (this.pending.has(id)) continue;
      if (poolIds.has(id) && survey.links.has(this.names.poolVeth(id))) {
        this.pool.push(id);
        continue;
      }
      const lo = (await ipJson<{ ifalias?: string }>(['link', 'show', 'dev', 'lo'], ns).catch(() => []))[0];
      const alias = lo?.ifalias ?? '';
      if (alias.startsWith(ENDPOINT_ALIAS_PREFIX)) {
        const epId = alias.slice(ENDPOINT_ALIAS_PREFIX.length);
        if (!this.endpoints.has(epId)) {
          this.log.info({ endpoint: epId, netns: ns }, 'dataplane: rediscovered endpoint namespace');
          // Which veths are its own is settled by the reconcile (by peer index).
          this.endpoints.set(epId, { netns: ns, fp: '', hostIfs: [] });
          continue;
        }
      }
      this.log.info({ netns: ns }, 'dataplane: removing unclaimed namespace');
      await this.deleteNetns(ns);
      survey.netns.delete(ns);
      await runRaw(['ip', 'link', 'del', 'dev', this.names.poolVeth(id)]);
    }
    for (const [id, p] of this.prepared) {
      if (this.pool.includes(id)) continue;
      p.ip.close();
      p.nft.close();
      this.prepared.delete(id);
    }
    for (const [id, rec] of this.endpoints) {
      if (!survey.netns.has(rec.netns)) {
        // The namespace is gone (reboot, manual cleanup): recreated by the next apply.
        rec.fp = '';
        this.log.info({ endpoint: id }, 'dataplane: endpoint namespace missing');
      }
    }
    for (const b of survey.links.keys()) if (b.startsWith(`kb${this.names.tag}`)) this.knownBridges.add(b);
  }

  private get stateFile(): string {
    return join(this.stateDir, 'state.json');
  }

  private async loadState(): Promise<void> {
    const text = await readText(this.stateFile);
    if (!text) return;
    try {
      const s = JSON.parse(text) as StateFile;
      for (const [id, e] of Object.entries(s.endpoints ?? {}))
        this.endpoints.set(id, { netns: e.netns, fp: e.fp, hostIfs: e.hostIfs ?? [], transit: e.transit, legFp: '' });
      this.pool = s.pool ?? [];
      for (const [id, f] of Object.entries(s.networks ?? {})) this.networkFp.set(id, f);
      for (const [id, r] of Object.entries(s.routers ?? {})) this.routers.set(id, r);
      for (const [id, f] of Object.entries(s.dns ?? {})) this.dnsFp.set(id, f);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'dataplane: unreadable state file, rediscovering');
    }
  }

  /** Serialised; each write takes its snapshot when it runs, so the last write has the latest state. */
  private saveState(): Promise<void> {
    const next = this.saving.then(() => this.writeState());
    this.saving = next.catch(() => undefined);
    return next;
  }

  private async writeState(): Promise<void> {
    const s: StateFile = {
      version: 1,
      endpoints: Object.fromEntries(
        [...this.endpoints].map(([id, r]) => [
          id,
          { netns: r.netns, fp: r.fp, hostIfs: r.hostIfs, transit: r.transit },
        ]),
      ),
      pool: [...this.pool],
      networks: Object.fromEntries(this.networkFp),
      routers: Object.fromEntries(this.routers),
      dns: Object.fromEntries(this.dnsFp),
    };
    await writeAtomic(this.stateFile, `${JSON.stringify(s, null, 1)}\n`, 0o600);
  }

  private async purgeAll(): Promise<void> {
    for (const f of await listDir(join(this.stateDir, 'dns'))) {
      const m = /^(.*)\.pid$/.exec(f);
      if (m)
        await stopPidFile(join(this.stateDir, 'dns', f), `--addn-hosts=${join(this.stateDir, 'dns', `${m[1]}.hosts`)}`);
    }
    this.reservations.releaseAll();
    this.publishText = undefined;
    const survey = await this.survey();
    this.closePrepared();
    for (const ns of survey.netns) await this.deleteNetns(ns).catch(() => undefined);
    const links = [...(await this.survey(false)).links.keys()];
    if (links.length)
      await runRaw(['ip', '-force', '-batch', '-'], `${links.map((l) => `link del dev ${l}`).join('\n')}\n`);
    for (const t of survey.tables) await runRaw(['nft', 'delete', 'table', ...t.split(' ')]);
    for (const sub of ['dns', 'endpoints', 'state.json'])
      await rm(join(this.stateDir, sub), { recursive: true, force: true });
    this.endpoints.clear();
    this.routers.clear();
    this.networkFp.clear();
    this.dnsFp.clear();
    this.pool = [];
    this.knownBridges.clear();
    this.hostBridgeText = undefined;
  }

  // ------------------------------------------------------------------------------------------------ misc

  private assertStarted(): void {
    if (!this.started) throw new Error('dataplane: not started');
  }

  /** Serialises kernel changes (apply, ensure, remove): they read and write the same objects. */
  private locked<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => undefined);
    return next;
  }
}

const REFILL_DELAY_MS = 200;

/** The name server's hosts file of a network: each record's addresses with its short and qualified name. */
function dnsHosts(n: DesiredNetwork): string {
  const dns = n.dns!;
  const lines = dns.records.flatMap((r) =>
    r.addresses.map((a) => `${stripPrefix(a)}\t${r.name}.${dns.domain} ${r.name}\n`),
  );
  return `# krater: names on network ${n.id}\n${lines.join('')}`;
}

/** Inside endpoint namespaces: unprivileged ICMP echo (runc's default capabilities lack NET_RAW), like Docker. */
const ENDPOINT_SYSCTLS: Record<string, string> = { 'net.ipv4.ping_group_range': '0 2147483647' };

/** Processes whose network namespace is the named one (compared by inode). */
async function pidsInNetns(netns: string): Promise<number[]> {
  let ino: number;
  try {
    ino = (await stat(netnsPath(netns))).ino;
  } catch {
    return [];
  }
  const want = `net:[${ino}]`;
  const pids: number[] = [];
  for (const d of await listDir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const link = await readlink(`/proc/${d}/ns/net`).catch(() => '');
    if (link === want && Number(d) !== process.pid) pids.push(Number(d));
  }
  return pids;
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}
