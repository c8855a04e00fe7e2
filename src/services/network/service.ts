/**
 * The Neutron core: every resource handler, wired to each other (ports need networks and default security groups,
 * routers and floating IPs make ports). HTTP routes and the in-process API both call these, so they share one code
 * path.
 */
import type { NetContext, Trx } from './context.js';
import { floatingIpsHandler } from './resources/floatingips.js';
import { networksHandler } from './resources/networks.js';
import { portsHandler } from './resources/ports.js';
import { routersHandler } from './resources/routers.js';
import { securityGroupsHandler } from './resources/security-groups.js';
import type { ResourceHandler } from './resources/shared.js';
import { subnetPoolsHandler } from './resources/subnetpools.js';
import { type SubnetInsert, subnetsHandler } from './resources/subnets.js';

export class Neutron {
  readonly networks: ReturnType<typeof networksHandler>;
  readonly subnets: ReturnType<typeof subnetsHandler>;
  readonly subnetpools: ResourceHandler;
  readonly ports: ReturnType<typeof portsHandler>;
  readonly securityGroups: ReturnType<typeof securityGroupsHandler>['groups'];
  readonly securityGroupRules: ResourceHandler;
  readonly routers: ReturnType<typeof routersHandler>;
  readonly floatingips: ResourceHandler;
  /** Every collection, for the generic routes. */
  readonly all: ResourceHandler[];

  constructor(readonly nx: NetContext) {
    this.networks = networksHandler(this);
    this.subnets = subnetsHandler(this);
    this.subnetpools = subnetPoolsHandler(this);
    this.ports = portsHandler(this);
    const sg = securityGroupsHandler(this);
    this.securityGroups = sg.groups;
    this.securityGroupRules = sg.rules;
    this.routers = routersHandler(this);
    this.floatingips = floatingIpsHandler(this);
    this.all = [
      this.networks,
      this.subnets,
      this.subnetpools,
      this.ports,
      this.securityGroups,
      this.securityGroupRules,
      this.routers,
      this.floatingips,
    ];
  }

  ensureDefaultSecurityGroup(projectId: string): Promise<string | undefined> {
    return this.securityGroups.ensureDefault(projectId);
  }

  insertSubnet(trx: Trx, actor: Parameters<Neutron['subnets']['insertSubnet']>[1], s: SubnetInsert): Promise<string> {
    return this.subnets.insertSubnet(trx, actor, s);
  }

  deleteSubnetRows(trx: Trx, id: string): Promise<void> {
    return this.subnets.deleteSubnetRows(trx, id);
  }

  deletePortRows(trx: Trx, id: string): Promise<void> {
    return this.ports.deletePortRows(trx, id);
  }
}
