/**
 * Neutron's exceptions as ApiErrors: the status, Neutron's exception class name as `kind` (rendered as the
 * NeutronError `type`) and Neutron's message text, so clients that match on type or message behave as with Neutron.
 */
import { ApiError } from '../../core/http/errors.js';

export const nerr = (status: number, type: string, message: string) => new ApiError(status, message, type);

export const badRequest = (message: string) => nerr(400, 'HTTPBadRequest', message);
/** Neutron's `InvalidInput`: "Invalid input for operation: …". */
export const invalidInput = (detail: string) => nerr(400, 'InvalidInput', `Invalid input for operation: ${detail}.`);
/** An attribute validator's failure, as Neutron's API layer words it. */
export const invalidAttr = (attr: string, reason: string) =>
  badRequest(`Invalid input for ${attr}. Reason: ${reason}.`);
export const policyDenied = (rule: string) => nerr(403, 'PolicyNotAuthorized', `(${rule}) is disallowed by policy`);
export const overQuota = (resource: string) => nerr(409, 'OverQuota', `Quota exceeded for resources: ['${resource}'].`);

export const notFound = {
  network: (id: string) => nerr(404, 'NetworkNotFound', `Network ${id} could not be found.`),
  subnet: (id: string) => nerr(404, 'SubnetNotFound', `Subnet ${id} could not be found.`),
  subnetpool: (id: string) => nerr(404, 'SubnetPoolNotFound', `Subnet pool ${id} could not be found.`),
  port: (id: string) => nerr(404, 'PortNotFound', `Port ${id} could not be found.`),
  security_group: (id: string) => nerr(404, 'SecurityGroupNotFound', `Security group ${id} does not exist`),
  security_group_rule: (id: string) =>
    nerr(404, 'SecurityGroupRuleNotFound', `Security group rule ${id} does not exist`),
  router: (id: string) => nerr(404, 'RouterNotFound', `Router ${id} could not be found`),
  floatingip: (id: string) => nerr(404, 'FloatingIPNotFound', `Floating IP ${id} could not be found`),
};

export const ipGenerationFailure = (networkId: string) =>
  nerr(409, 'IpAddressGenerationFailure', `No more IP addresses available on network ${networkId}.`);
