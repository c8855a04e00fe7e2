/**
 * What every part of the network service shares: the store with its write discipline (one transaction per
 * operation, the `network_revision` marker bumped inside it, `onChange` after commit), the policy engine and who is
 * asking (the actor).
 */
import { randomUUID } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import type { AuthContext } from '../../core/auth/context.js';
import type { NetworkSettings } from '../../core/config/network.js';
import type { PolicyEngine } from '../../core/policy/engine.js';
import type { Store } from '../../core/store/db.js';
import { writeWithRevision } from '../../core/store/revision.js';
import type { Database } from '../../core/store/schema.js';
import { policyDenied } from './errors.js';

/** Who calls: a request's token, or Krater itself (the Zun facade) acting for a project. */
export interface NeutronActor {
  projectId: string;
  userId?: string;
  isAdmin: boolean;
  /** Roles for policy checks; default: admin → admin, member, reader; otherwise member, reader. */
  roles?: string[];
}

export type Trx = Transaction<Database>;
export type Db = Kysely<Database>;

/** The store marker other processes (agents) poll to notice network changes. */
export const REVISION_KEY = 'network_revision';

export function actorFromAuth(auth: AuthContext): NeutronActor {
  return { projectId: auth.projectId ?? '', userId: auth.userId, isAdmin: auth.isAdmin, roles: auth.roles };
}

/** Neutron's timestamps: seconds precision, `Z`. */
export const nowTs = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

export const newId = () => randomUUID();

const isBusy = (err: unknown) => {
  const code = (err as { code?: string })?.code ?? '';
  return code.startsWith('SQLITE_BUSY') || code === '40001' || code === '40P01';
};

export class NetContext {
  readonly db: Db;
  constructor(
    readonly store: Store,
    readonly policy: PolicyEngine,
    readonly settings: NetworkSettings,
    private readonly onChange?: () => void,
  ) {
    this.db = store.db;
  }

  get postgres(): boolean {
    return this.store.kind === 'postgres';
  }

  /**
   * Runs `fn` in one transaction and bumps `network_revision` in it; after commit, tells the agent (`onChange`).
   * SQLite writers of other processes, and PostgreSQL serialization failures, make the whole operation retry.
   */
  async write<T>(fn: (trx: Trx) => Promise<T>, opts: { notify?: boolean } = {}): Promise<T> {
    let result!: T;
    for (let attempt = 0; ; attempt++) {
      try {
        result = await writeWithRevision(this.db, REVISION_KEY, fn);
        break;
      } catch (err) {
        if (isBusy(err) && attempt < 20) {
          await new Promise((r) => setTimeout(r, 5 + Math.random() * 20 * (attempt + 1)));
          continue;
        }
        throw err;
      }
    }
    if (opts.notify !== false && this.onChange) {
      try {
        this.onChange();
      } catch {
        // A listener's failure must not fail the API call that already committed.
      }
    }
    return result;
  }

  creds(actor: NeutronActor) {
    const roles = actor.roles ?? (actor.isAdmin ? ['admin', 'member', 'reader'] : ['member', 'reader']);
    return {
      user_id: actor.userId ?? null,
      project_id: actor.projectId || null,
      tenant_id: actor.projectId || null,
      roles,
      is_admin: actor.isAdmin,
    };
  }

  allowed(actor: NeutronActor, action: string, target: Record<string, unknown>): boolean {
    return this.policy.enforce(`neutron:${action}`, target, this.creds(actor));
  }

  /** 403 PolicyNotAuthorized unless allowed; `attr` names the attribute rule (`create_port:binding:host_id`). */
  enforce(actor: NeutronActor, action: string, target: Record<string, unknown>): void {
    if (!this.allowed(actor, action, target)) {
      const base = action.split(':')[0];
      throw policyDenied(base === action ? `rule:${action}` : `rule:${base} and rule:${action}`);
    }
  }
}

/** A policy target for a resource owned by `projectId`. */
export function target(projectId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { project_id: projectId, tenant_id: projectId, ...extra };
}

export const tf = (b: boolean | number) => (b ? 'True' : 'False');
