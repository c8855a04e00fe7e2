import { describe, expect, test } from 'vitest';
import {
  allocatePrefix,
  checkPools,
  contains,
  defaultGateway,
  defaultPools,
  eui64,
  formatCidr,
  formatIp,
  freeAddresses,
  normalizeCidr,
  normalizeIp,
  normalizeMac,
  overlaps,
  parseCidr,
  parseIp,
  poolsSize,
  subtract,
} from '../../src/services/network/ipam.js';

const cidr = (s: string) => parseCidr(s)!;
const ip = (s: string) => parseIp(s)!.value;
const pools = (c: string, gw: string | null) =>
  defaultPools(cidr(c), gw === null ? null : ip(gw)).map((r) => [
    formatIp(cidr(c).version, r.start),
    formatIp(cidr(c).version, r.end),
  ]);

describe('addresses', () => {
  test('IPv4 parse and format', () => {
    expect(normalizeIp('10.0.0.1')).toBe('10.0.0.1');
    expect(normalizeIp('255.255.255.255')).toBe('255.255.255.255');
    for (const bad of ['10.0.0', '10.0.0.256', '010.0.0.1', '1.2.3.4.5', '', 'a.b.c.d', ' 1.2.3.4'])
      expect(normalizeIp(bad), bad).toBeNull();
  });

  test('IPv6 parse and RFC 5952 format', () => {
    expect(normalizeIp('2001:DB8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(normalizeIp('::')).toBe('::');
    expect(normalizeIp('::1')).toBe('::1');
    expect(normalizeIp('fe80::')).toBe('fe80::');
    expect(normalizeIp('2001:db8:0:1:0:0:1:1')).toBe('2001:db8:0:1::1:1');
    expect(normalizeIp('2001:0:0:1:0:0:0:1')).toBe('2001:0:0:1::1');
    expect(normalizeIp('1:0:1:1:1:1:1:1')).toBe('1:0:1:1:1:1:1:1');
    expect(normalizeIp('::ffff:10.1.2.3')).toBe('::ffff:a01:203');
    for (const bad of ['1::2::3', '12345::', ':::', '1:2:3:4:5:6:7:8:9', 'g::1', 'fe80::1%eth0'])
      expect(normalizeIp(bad), bad).toBeNull();
  });

  test('CIDRs: normalisation, host bits, bare addresses', () => {
    expect(normalizeCidr('10.0.0.5/24')).toBe('10.0.0.0/24');
    expect(parseCidr('10.0.0.5/24')!.hostBits).toBe(true);
    expect(parseCidr('10.0.0.0/24')!.hostBits).toBe(false);
    expect(normalizeCidr('1.2.3.4')).toBe('1.2.3.4/32');
    expect(normalizeCidr('2001:db8::1/64')).toBe('2001:db8::/64');
    expect(normalizeCidr('0.0.0.0/0')).toBe('0.0.0.0/0');
    for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/-1', 'fd00::/129', 'x/24', '10.0.0.0/24/1'])
      expect(normalizeCidr(bad), bad).toBeNull();
  });

  test('containment and overlap', () => {
    expect(contains(cidr('10.0.0.0/24'), parseIp('10.0.0.255')!)).toBe(true);
    expect(contains(cidr('10.0.0.0/24'), parseIp('10.0.1.0')!)).toBe(false);
    expect(contains(cidr('10.0.0.0/24'), parseIp('::1')!)).toBe(false);
    expect(overlaps(cidr('10.0.0.0/16'), cidr('10.0.3.0/24'))).toBe(true);
    expect(overlaps(cidr('10.0.0.0/24'), cidr('10.0.1.0/24'))).toBe(false);
    expect(overlaps(cidr('10.0.0.0/8'), cidr('fd00::/8'))).toBe(false);
  });

  test('MACs', () => {
    expect(normalizeMac('FA-16-3E-00-11-22')).toBe('fa:16:3e:00:11:22');
    expect(normalizeMac('fa:16:3e:0:11:22')).toBeNull();
    expect(normalizeMac('zz:16:3e:00:11:22')).toBeNull();
  });
});

describe('Neutron subnet defaults', () => {
  test('IPv4: gateway is the first address, pools exclude network, gateway and broadcast', () => {
    expect(formatIp(4, defaultGateway(cidr('10.0.0.0/24'))!)).toBe('10.0.0.1');
    expect(pools('10.0.0.0/24', '10.0.0.1')).toEqual([['10.0.0.2', '10.0.0.254']]);
    expect(pools('10.0.0.0/24', null)).toEqual([['10.0.0.1', '10.0.0.254']]);
    expect(pools('10.0.0.0/24', '10.0.0.100')).toEqual([
      ['10.0.0.1', '10.0.0.99'],
      ['10.0.0.101', '10.0.0.254'],
    ]);
    expect(poolsSize(defaultPools(cidr('10.0.0.0/27'), ip('10.0.0.1')))).toBe(29n);
    expect(pools('10.0.0.0/31', null)).toEqual([['10.0.0.0', '10.0.0.1']]);
  });

  test('IPv6: pools keep the last address, drop the subnet-router anycast address', () => {
    expect(formatIp(6, defaultGateway(cidr('fd00::/64'))!)).toBe('fd00::1');
    expect(pools('fd00::/64', 'fd00::1')).toEqual([['fd00::2', 'fd00::ffff:ffff:ffff:ffff']]);
  });

  test('pool validation', () => {
    const c = cidr('10.0.0.0/24');
    expect(checkPools(c, [{ start: ip('10.0.0.10'), end: ip('10.0.0.5') }], null)?.kind).toBe('invalid');
    expect(checkPools(c, [{ start: ip('10.0.0.10'), end: ip('10.0.1.5') }], null)?.kind).toBe('outside');
    expect(
      checkPools(
        c,
        [
          { start: ip('10.0.0.10'), end: ip('10.0.0.20') },
          { start: ip('10.0.0.20'), end: ip('10.0.0.30') },
        ],
        null,
      )?.kind,
    ).toBe('overlap');
    expect(checkPools(c, [{ start: ip('10.0.0.1'), end: ip('10.0.0.20') }], ip('10.0.0.1'))?.kind).toBe('gateway');
    expect(checkPools(c, [{ start: ip('10.0.0.2'), end: ip('10.0.0.20') }], ip('10.0.0.1'))).toBeNull();
  });

  test('free addresses skip taken ones and walk only as far as needed', () => {
    const p = defaultPools(cidr('10.0.0.0/24'), ip('10.0.0.1'));
    const taken = new Set([ip('10.0.0.2'), ip('10.0.0.4')]);
    expect(freeAddresses(p, taken, 3).map((a) => formatIp(4, a))).toEqual(['10.0.0.3', '10.0.0.5', '10.0.0.6']);
    const huge = defaultPools(cidr('fd00::/64'), ip('fd00::1'));
    expect(freeAddresses(huge, new Set(), 2).map((a) => formatIp(6, a))).toEqual(['fd00::2', 'fd00::3']);
    expect(freeAddresses(subtract(p, ip('10.0.0.3')), taken, 1).map((a) => formatIp(4, a))).toEqual(['10.0.0.5']);
  });

  test('EUI-64 (SLAAC) address from a MAC', () => {
    expect(formatIp(6, eui64(cidr('2001:db8::/64'), 'fa:16:3e:11:22:33'))).toBe('2001:db8::f816:3eff:fe11:2233');
  });
});

describe('subnet pools', () => {
  test('allocates aligned, non-overlapping prefixes and reports exhaustion', () => {
    const prefixes = [cidr('10.10.0.0/22')];
    const used = [cidr('10.10.0.0/24')];
    const a = allocatePrefix(prefixes, used, 24)!;
    expect(formatCidr(a)).toBe('10.10.1.0/24');
    used.push(a);
    expect(formatCidr(allocatePrefix(prefixes, used, 23)!)).toBe('10.10.2.0/23');
    used.push(cidr('10.10.2.0/23'));
    expect(allocatePrefix(prefixes, used, 24)).toBeNull();
    expect(formatCidr(allocatePrefix(prefixes, used, 24) ?? cidr('0.0.0.0/0'))).toBe('0.0.0.0/0');
    expect(allocatePrefix([cidr('10.0.0.0/24')], [], 16)).toBeNull();
    expect(formatCidr(allocatePrefix([cidr('fd00::/48')], [cidr('fd00::/64')], 64)!)).toBe('fd00:0:0:1::/64');
  });
});
