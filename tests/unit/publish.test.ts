import { describe, expect, it } from 'vitest';
import { parsePublishSpec, publishedPorts } from '../../src/compute/publish.js';

describe('published ports (krater run -p)', () => {
  it('parses Docker forms', () => {
    expect(parsePublishSpec('8080:80')).toEqual({
      hostIp: '0.0.0.0',
      hostPort: 8080,
      containerPort: 80,
      protocol: 'tcp',
    });
    expect(parsePublishSpec('127.0.0.1:53:5353/udp')).toEqual({
      hostIp: '127.0.0.1',
      hostPort: 53,
      containerPort: 5353,
      protocol: 'udp',
    });
    expect(() => parsePublishSpec('[::1]:8080:80')).toThrow(/IPv6 host addresses are not supported/);
  });
  it.each(['80', '0:80', '8080:65536', 'a:80', '1.2.3:80:80', '8080:80/sctp', '8080:80/tcp/x', '1:2:3:4'])(
    'refuses %s',
    (spec) => {
      expect(() => parsePublishSpec(spec)).toThrow(/Invalid published port/);
    },
  );
  it('reads the label, refusing a host port given twice', () => {
    expect(publishedPorts({})).toEqual([]);
    expect(publishedPorts({ 'krater.publish': '8080:80,8081:81/udp' })).toHaveLength(2);
    expect(() => publishedPorts({ 'krater.publish': '8080:80,8080:81' })).toThrow(/given twice/);
    expect(publishedPorts({ 'krater.publish': '8080:80,8080:80/udp' })).toHaveLength(2);
  });
});
