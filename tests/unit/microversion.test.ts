import { describe, expect, it } from 'vitest';
import { MicroversionError, type MicroversionSpec, negotiate } from '../../src/core/http/microversion.js';

const zun: MicroversionSpec = {
  words: ['container'],
  min: { major: 1, minor: 1 },
  max: { major: 1, minor: 40 },
  echo: 'requested',
};
const magnum: MicroversionSpec = {
  words: ['container-infra', 'container-infrastructure-management'],
  min: { major: 1, minor: 1 },
  max: { major: 1, minor: 14 },
  echo: 'canonical',
};

describe('microversions', () => {
  it('defaults to the minimum without a header', () => {
    const n = negotiate({}, zun);
    expect(n.version).toEqual({ major: 1, minor: 1 });
    expect(n.headers).toEqual({
      'OpenStack-API-Minimum-Version': 'container 1.1',
      'OpenStack-API-Maximum-Version': 'container 1.40',
      'OpenStack-API-Version': 'container 1.1',
      Vary: 'OpenStack-API-Version',
    });
  });
  it('resolves latest and exact versions, picking our entry among several', () => {
    expect(negotiate({ 'openstack-api-version': 'container latest' }, zun).headers['OpenStack-API-Version']).toBe(
      'container 1.40',
    );
    expect(negotiate({ 'openstack-api-version': 'compute 2.1, container 1.25' }, zun).version).toEqual({
      major: 1,
      minor: 25,
    });
    expect(negotiate({ 'openstack-api-version': 'compute 2.1' }, zun).version).toEqual({ major: 1, minor: 1 });
  });
  it('echoes the canonical word when asked to', () => {
    expect(
      negotiate({ 'openstack-api-version': 'container-infrastructure-management 1.5' }, magnum).headers[
        'OpenStack-API-Version'
      ],
    ).toBe('container-infra 1.5');
  });
  it('rejects out-of-range, wrong major and malformed versions with 406', () => {
    for (const v of ['container 1.41', 'container 2.1', 'container 1.0', 'container 1.x', 'container one']) {
      expect(() => negotiate({ 'openstack-api-version': v }, zun)).toThrow(MicroversionError);
    }
    try {
      negotiate({ 'openstack-api-version': 'container 1.99' }, zun);
    } catch (e) {
      expect((e as MicroversionError).status).toBe(406);
    }
  });
});
