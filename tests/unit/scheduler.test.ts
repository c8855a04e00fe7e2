import { describe, expect, it } from 'vitest';
import { chooseHost, type HostCandidate, rankHosts } from '../../src/compute/scheduler.js';

const host = (name: string, over: Partial<HostCandidate> = {}): HostCandidate => ({
  host: name,
  availabilityZone: 'nova',
  runtimes: ['runc'],
  cpus: 2,
  memoryMb: 1024,
  usedCpu: 0,
  usedMemoryMb: 0,
  ...over,
});
const req = { cpu: 1, memoryMb: 512 };

describe('chooseHost (Zun filters, capacity, weighers)', () => {
  it('of equal hosts takes the first that passes, in order', () => {
    expect(chooseHost([host('a'), host('b')], req)).toBe('a');
    expect(chooseHost([], req)).toBeUndefined();
  });

  it('AvailabilityZoneFilter and RuntimeFilter', () => {
    const hosts = [host('a'), host('b', { availabilityZone: 'az2', runtimes: ['runc', 'kata'] })];
    expect(chooseHost(hosts, { ...req, availabilityZone: 'az2' })).toBe('b');
    expect(chooseHost(hosts, { ...req, availabilityZone: 'az3' })).toBeUndefined();
    expect(chooseHost(hosts, { ...req, runtime: 'kata' })).toBe('b');
    expect(chooseHost(hosts, { ...req, runtime: 'runsc' })).toBeUndefined();
    expect(chooseHost(hosts, { ...req, runtime: null })).toBe('a');
  });

  it('claims CPU (× 16) and memory (× 1.5) against what the host holds', () => {
    // 2 CPUs × 16 = 32; 1024 MiB × 1.5 = 1536 MiB.
    expect(chooseHost([host('a', { usedCpu: 31 }), host('b')], req, 'pack')).toBe('a');
    expect(chooseHost([host('a', { usedCpu: 31.5 }), host('b')], req, 'pack')).toBe('b');
    expect(chooseHost([host('a', { usedMemoryMb: 1024 }), host('b')], req, 'pack')).toBe('a');
    expect(chooseHost([host('a', { usedMemoryMb: 1025 }), host('b')], req, 'pack')).toBe('b');
    // A host that has not reported its inventory is not refused for it.
    expect(chooseHost([host('a', { cpus: 0, memoryMb: 0, usedCpu: 99 })], req, 'pack')).toBe('a');
  });

  it('an admin-requested host must still pass', () => {
    const hosts = [host('a'), host('b', { usedMemoryMb: 2000 })];
    expect(chooseHost(hosts, { ...req, host: 'a' })).toBe('a');
    expect(chooseHost(hosts, { ...req, host: 'b' })).toBeUndefined();
    expect(chooseHost(hosts, { ...req, host: 'c' })).toBeUndefined();
  });

  it('spread (default) takes the most free RAM, then the most free CPU', () => {
    const hosts = [
      host('a', { usedMemoryMb: 512 }),
      host('b', { memoryMb: 2048, usedMemoryMb: 1024 }),
      host('c', { usedMemoryMb: 256 }),
    ];
    // Free RAM: a 1024, b 2048, c 1280 MiB.
    expect(rankHosts(hosts, req).map((h) => h.host)).toEqual(['b', 'c', 'a']);
    expect(chooseHost(hosts, req)).toBe('b');
    // Equal RAM: the one with more CPU left wins.
    expect(chooseHost([host('a', { usedCpu: 4 }), host('b', { usedCpu: 1 })], req)).toBe('b');
  });

  it('pack takes the least free RAM, then the least free CPU', () => {
    const hosts = [
      host('a', { usedMemoryMb: 512 }),
      host('b', { memoryMb: 2048, usedMemoryMb: 1024 }),
      host('c', { usedMemoryMb: 256 }),
    ];
    expect(rankHosts(hosts, req, 'pack').map((h) => h.host)).toEqual(['a', 'c', 'b']);
    expect(chooseHost([host('a', { usedCpu: 1 }), host('b', { usedCpu: 4 })], req, 'pack')).toBe('b');
    // The fullest host is skipped once the request no longer fits it.
    expect(chooseHost([host('a', { usedMemoryMb: 1100 }), host('b')], req, 'pack')).toBe('b');
  });

  it('weighs a host that reported no inventory last, either way', () => {
    const hosts = [host('x', { cpus: 0, memoryMb: 0 }), host('a', { usedMemoryMb: 1000 })];
    expect(chooseHost(hosts, req)).toBe('a');
    expect(chooseHost(hosts, req, 'pack')).toBe('a');
    expect(chooseHost([hosts[0]], req)).toBe('x');
  });
});
