import { describe, expect, it } from 'vitest';
import { outsideMemberPolicy, parsePublishList, storedPorts, toView } from '../../src/compute/publish.js';
import { publishConfig } from '../../src/core/config/publish.js';
import {
  bindingsOverlap,
  chooseTransit,
  endpointPublishTable,
  hostPublishTable,
  transitPair,
  transitPeer,
  transitRange,
} from '../../src/network/publish-nat.js';

describe('publish transit pairs', () => {
  it('splits the range into /31 pairs, host end even', () => {
    expect(transitRange('169.254.64.0/18')).toEqual({ base: 0xa9fe4000, pairs: 8192 });
    expect(transitPair('169.254.64.0/18', 0)).toEqual({ host: '169.254.64.0', ns: '169.254.64.1' });
    expect(transitPair('169.254.64.0/18', 8191)).toEqual({ host: '169.254.127.254', ns: '169.254.127.255' });
    expect(transitPeer('169.254.64.254')).toBe('169.254.64.255');
    expect(() => transitRange('fd00::/64')).toThrow();
    expect(() => transitRange('10.0.0.0/32')).toThrow();
  });
  it('chooses a pair no used address falls in, and none when full', () => {
    const used = ['10.0.0.0', '10.0.0.3/24'];
    for (let i = 0; i < 20; i++) expect(chooseTransit('10.0.0.0/29', used)).toMatch(/^10\.0\.0\.[46]$/);
    expect(chooseTransit('10.0.0.0/30', ['10.0.0.1', '10.0.0.2'])).toBeUndefined();
    expect(chooseTransit('10.0.0.0/30', ['192.168.1.1'], () => 0.99)).toBe('10.0.0.2');
  });
});

describe('published-port overlap', () => {
  const b = (hostIp: string, hostPort = 8080, protocol = 'tcp') => ({ hostIp, hostPort, protocol });
  it('0.0.0.0 covers every address; protocols and ports are separate sockets', () => {
    expect(bindingsOverlap(b('127.0.0.1'), b('127.0.0.1'))).toBe(true);
    expect(bindingsOverlap(b('0.0.0.0'), b('127.0.0.1'))).toBe(true);
    expect(bindingsOverlap(b('127.0.0.1'), b('0.0.0.0'))).toBe(true);
    expect(bindingsOverlap(b('127.0.0.1'), b('127.0.0.2'))).toBe(false);
    expect(bindingsOverlap(b('0.0.0.0'), b('0.0.0.0', 8080, 'udp'))).toBe(false);
    expect(bindingsOverlap(b('0.0.0.0'), b('0.0.0.0', 8081))).toBe(false);
  });
  it('a label overlapping itself is refused', () => {
    expect(() => parsePublishList('0.0.0.0:80:80,127.0.0.1:80:81')).toThrow(/given twice/);
    expect(parsePublishList('127.0.0.1:80:80,127.0.0.2:80:81')).toHaveLength(2);
  });
});

describe('rule rendering', () => {
  it('renders both maps, the lookups in prerouting and output, masquerade on the legs', () => {
    const text = hostPublishTable('krater-ab12', 'ktab12', [
      { hostIp: '127.0.0.1', hostPort: 8080, protocol: 'tcp', target: '169.254.64.1', containerPort: 80 },
      { hostIp: '0.0.0.0', hostPort: 5353, protocol: 'udp', target: '169.254.64.3', containerPort: 53 },
    ]);
    expect(text).toMatch(/^add table ip krater-ab12\ndelete table ip krater-ab12\ntable ip krater-ab12 \{/);
    expect(text).toContain('elements = { 127.0.0.1 . 6 . 8080 : 169.254.64.1 . 80 }');
    expect(text).toContain('elements = { 17 . 5353 : 169.254.64.3 . 53 }');
    expect(text.match(/fib daddr type local dnat ip to ip daddr \. meta l4proto \. th dport map @addr/g)).toHaveLength(
      2,
    );
    expect(text).toContain('type nat hook output priority -100');
    expect(text).toContain('oifname "ktab12*" masquerade');
    // No bindings: empty maps without an elements line (nft refuses `elements = { }`).
    expect(hostPublishTable('krater-ab12', 'ktab12', [])).not.toContain('elements');
  });
  it('inside the namespace: DNAT from the leg to the fixed address, nothing without one', () => {
    expect(endpointPublishTable('krater-ab12', 'pub0', '10.0.0.5')).toContain(
      'iifname "pub0" meta l4proto { tcp, udp } dnat ip to 10.0.0.5',
    );
    expect(endpointPublishTable('krater-ab12', 'pub0', undefined)).not.toContain('dnat');
  });
});

describe('member host-port policy and the stored field', () => {
  it('defaults: 127.0.0.1 and ports >= 1024; overridable by environment', () => {
    const cfg = publishConfig({});
    expect(cfg).toEqual({
      memberHostIps: ['127.0.0.1'],
      memberPorts: { min: 1024, max: 65535 },
      transit: '169.254.64.0/18',
    });
    const ports = parsePublishList('127.0.0.1:8080:80,127.0.0.1:22:22,0.0.0.0:9000:80,9001:80');
    expect(outsideMemberPolicy(ports, cfg)).toEqual(['127.0.0.1:22/tcp', '0.0.0.0:9000/tcp', '0.0.0.0:9001/tcp']);
    const wide = publishConfig({ KRATER_PUBLISH_HOST_IPS: '127.0.0.1,0.0.0.0', KRATER_PUBLISH_PORTS: '20-30000' });
    expect(outsideMemberPolicy(ports, wide)).toEqual([]);
    expect(() => publishConfig({ KRATER_PUBLISH_PORTS: '2000-1000' })).toThrow(/KRATER_PUBLISH_PORTS/);
    expect(() => publishConfig({ KRATER_PUBLISH_HOST_IPS: '::1' })).toThrow(/KRATER_PUBLISH_HOST_IPS/);
    expect(() => publishConfig({ KRATER_PUBLISH_TRANSIT: '10.0.0.0/32' })).toThrow(/KRATER_PUBLISH_TRANSIT/);
  });
  it('round-trips through the stored form; a malformed value publishes nothing', () => {
    const ports = parsePublishList('127.0.0.1:8080:80/udp');
    expect(storedPorts(JSON.stringify(ports.map(toView)))).toEqual(ports);
    expect(storedPorts('not json')).toEqual([]);
    expect(storedPorts(null)).toEqual([]);
  });
});
