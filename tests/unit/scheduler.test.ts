import { describe, expect, it } from 'vitest';
import { chooseHost, type HostCandidate } from '../../src/compute/scheduler.js';

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

describe('chooseHost (Zun filters, Placement-style claims, no weighers)', () => {
  it('takes the first host that passes, in order', () => {
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
    expect(chooseHost([host('a', { usedCpu: 31 }), host('b')], req)).toBe('a');
    expect(chooseHost([host('a', { usedCpu: 31.5 }), host('b')], req)).toBe('b');
    expect(chooseHost([host('a', { usedMemoryMb: 1024 }), host('b')], req)).toBe('a');
    expect(chooseHost([host('a', { usedMemoryMb: 1025 }), host('b')], req)).toBe('b');
    // A host that has not reported its inventory is not refused for it.
    expect(chooseHost([host('a', { cpus: 0, memoryMb: 0, usedCpu: 99 })], req)).toBe('a');
  });

  it('an admin-requested host must still pass', () => {
    const hosts = [host('a'), host('b', { usedMemoryMb: 2000 })];
    expect(chooseHost(hosts, { ...req, host: 'a' })).toBe('a');
    expect(chooseHost(hosts, { ...req, host: 'b' })).toBeUndefined();
    expect(chooseHost(hosts, { ...req, host: 'c' })).toBeUndefined();
  });
});
