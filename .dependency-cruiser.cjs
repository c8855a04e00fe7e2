/**
 * The layering rule, checked on the compiled tree (dist/; TypeScript 7 has no compiler API for the cruiser to
 * parse src/ with, and the import graph of the emitted ESM is the same):
 *
 *   cli → app → {services, agent, controllers} → compute → {images, engine, network, core}
 *
 * An import may only go down. core, engine and network import no sibling; images only the engine and core; one
 * service facade never imports another (they talk through the in-process ports of the domain). Known violations
 * (the restructuring of issue 11 in progress) are listed in .dependency-cruiser-known-violations.json and may only
 * shrink: `npm run check:layers` fails on any new one.
 */
const layer = (name) => `^dist/${name}/`;
const forbid = (name, from, to, comment) => ({
  name,
  comment,
  severity: 'error',
  from: { path: from },
  to: { path: to },
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'modules must not depend on each other in a cycle',
      severity: 'error',
      from: { path: '^dist/' },
      to: { circular: true },
    },
    forbid('core-is-the-floor', layer('core'), '^dist/(?!core/)', 'core imports nothing else of Krater'),
    forbid('engine-below-all', layer('engine'), '^dist/(?!engine/|core/)', 'the engine driver imports only core'),
    forbid('network-below-all', layer('network'), '^dist/(?!network/|core/)', 'the dataplane imports only core'),
    forbid('images-below-compute', layer('images'), '^dist/(?!images/|engine/|core/)', 'images: engine and core'),
    forbid(
      'compute-below-facades',
      layer('compute'),
      '^dist/(services|agent|controllers|app|cli)/',
      'the container domain never imports what is built on it',
    ),
    forbid(
      'facades-not-hosts',
      layer('services'),
      '^dist/(agent|controllers|app|cli|engine|network)/',
      'HTTP facades reach hosts and drivers only through the domain (compute)',
    ),
    {
      name: 'facade-not-facade',
      comment: 'one service facade never imports another: they use the in-process ports of the domain',
      severity: 'error',
      from: { path: '^dist/services/([^/]+)/' },
      to: { path: '^dist/services/', pathNot: '^dist/services/$1/' },
    },
    forbid('agent-not-facades', layer('agent'), '^dist/(services|controllers|app|cli)/', 'agent: the domain and below'),
    forbid(
      'controllers-not-facades',
      layer('controllers'),
      '^dist/(services|agent|app|cli)/',
      'controllers: the domain and below',
    ),
    forbid('app-not-cli', layer('app'), layer('cli'), 'the composition root does not import the command line'),
    forbid(
      'cli-thin',
      layer('cli'),
      '^dist/(services|agent|controllers|engine|network|images)/',
      'the command line starts the app or talks HTTP; it never reaches into servers',
    ),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '\\.map$' },
  },
};
