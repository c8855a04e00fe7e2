import { randomBytes } from 'node:crypto';
import type { AuthContext, TokenValidator } from '../../core/auth/context.js';
import { hashPassword, verifyPassword } from '../../core/auth/password.js';
import type { TokenKeySource } from '../../core/auth/stored-keys.js';
import {
  decodeToken,
  encodeToken,
  newAuditId,
  primaryKey,
  TokenError,
  type TokenPayload,
} from '../../core/auth/token-format.js';
import { ApiError, badRequest, forbidden, notFound, unauthorized } from '../../core/http/errors.js';
import type { AppCredRow, DomainRow, ProjectRow, UserRow } from '../../core/store/schema.js';
import { keystoneTime } from './ids.js';
import { Lockout } from './lockout.js';
import type { IdentityRepo, RoleRef } from './repo.js';

/** A token that decrypted, has not expired or been revoked, and whose user and scope still exist and are enabled. */
export interface ValidToken {
  payload: TokenPayload;
  user: UserRow;
  userDomain: DomainRow;
  project?: ProjectRow;
  projectDomain?: DomainRow;
  domain?: DomainRow;
  roles: RoleRef[];
  appCred?: AppCredRow;
}

export interface AuthRequest {
  identity?: {
    methods?: unknown;
    password?: { user?: { id?: string; name?: string; password?: string; domain?: { id?: string; name?: string } } };
    token?: { id?: string };
    application_credential?: {
      id?: string;
      name?: string;
      secret?: string;
      user?: { id?: string; name?: string; domain?: { id?: string; name?: string } };
    };
  };
  scope?: unknown;
}

/** How often tokens naming a key id this process does not know may make it re-read the keys from the store. */
const UNKNOWN_KEY_RELOAD_MS = 1000;
/** Keys older than this are re-read before a validation, so a key pruned by a rotation elsewhere stops working here. */
const KEY_MAX_AGE_MS = 30_000;

/** Issues, validates and revokes tokens; gives every service its request context (in-process keystonemiddleware). */
export class TokenService implements TokenValidator {
  private lastKeyReload = Date.now();
  private reloading: Promise<void> | undefined;
  constructor(
    private repo: IdentityRepo,
    private keySource: TokenKeySource,
    readonly ttlMs: number,
    private catalog: () => Promise<unknown[]>,
    readonly lockout: Lockout = new Lockout(repo.db, { failureAttempts: 0, durationMs: 0 }),
  ) {}

  /**
   * Re-reads the keys from the store (a rotation on another replica, or `krater token-keys rotate`), at most once per
   * UNKNOWN_KEY_RELOAD_MS: callers within the interval wait for the next read, so a flood of tokens naming unknown
   * key ids costs one store read per interval and a genuine new key is never refused.
   */
  private reloadKeys(): Promise<void> {
    this.reloading ??= (async () => {
      const wait = this.lastKeyReload + UNKNOWN_KEY_RELOAD_MS - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      this.lastKeyReload = Date.now();
      try {
        await this.keySource.refresh();
      } finally {
        this.reloading = undefined;
      }
    })();
    return this.reloading;
  }

  // ---------------------------------------------------------------- issue

  async issue(auth: AuthRequest): Promise<{ token: string; valid: ValidToken }> {
    await this.repo.sync();
    const identity = auth.identity;
    const methods = identity?.methods;
    if (!Array.isArray(methods) || methods.length === 0 || !methods.every((m) => typeof m === 'string'))
      throw badRequest("Invalid input for field 'identity/methods': a non-empty list of strings is required.");
    const known = ['password', 'token', 'application_credential'];
    const unknown = methods.find((m) => !known.includes(m));
    if (unknown) throw unauthorized(`Attempted to authenticate with an unsupported method: ${unknown}.`);
    if (methods.length > 1) throw unauthorized('Authenticating with more than one method is not supported.');
    const method = methods[0] as string;
    const now = Date.now();

    let userId: string;
    let outMethods: string[] = [method];
    let expiresAt = now + this.ttlMs;
    let auditIds = [newAuditId()];
    let appCred: AppCredRow | undefined;
    let inheritedAppCred: string | undefined;

    if (method === 'password') {
      userId = await this.checkPassword(identity?.password?.user);
    } else if (method === 'token') {
      const id = identity?.token?.id;
      if (typeof id !== 'string' || !id)
        throw badRequest("Invalid input for field 'identity/token/id': a token id is required.");
      let parent: ValidToken;
      try {
        parent = await this.validate(id);
      } catch (err) {
        if (err instanceof TokenError) throw unauthorized('The token used to rescope is invalid, expired or revoked.');
        throw err;
      }
      if (parent.payload.appCredId) {
        if (auth.scope !== undefined) throw forbidden('Application credential tokens cannot be rescoped.');
        inheritedAppCred = parent.payload.appCredId;
      }
      userId = parent.user.id;
      outMethods = [...new Set([...parent.payload.methods, 'token'])];
      expiresAt = parent.payload.expiresAt;
      auditIds = [newAuditId(), parent.payload.auditIds[0]];
      if (auth.scope === undefined && parent.payload.appCredId) {
        auth = { ...auth, scope: { project: { id: parent.payload.projectId } } };
      }
    } else {
      appCred = await this.checkAppCred(identity?.application_credential);
      if (auth.scope !== undefined) throw unauthorized('Application credentials cannot request a scope.');
      userId = appCred.user_id;
      if (appCred.expires_at && Number(appCred.expires_at) < expiresAt) expiresAt = Number(appCred.expires_at);
    }

    const user = (await this.repo.user(userId))!;
    const payload: TokenPayload = { userId, methods: outMethods, issuedAt: now, expiresAt, auditIds };
    if (appCred) {
      payload.projectId = appCred.project_id;
      payload.appCredId = appCred.id;
    } else if (inheritedAppCred) {
      payload.projectId = (await this.repo.appCred(inheritedAppCred))?.project_id;
      payload.appCredId = inheritedAppCred;
    } else {
      await this.resolveScope(auth.scope, user, payload);
    }
    const valid = await this.check(payload, 'issue');
    // The primary key as of now (one row): a replica that missed a rotation would sign with a key the others may
    // already have pruned. Negligible next to the password hash an issue checks.
    await this.keySource.refresh();
    return { token: encodeToken(payload, primaryKey(this.keySource.current())), valid };
  }

  private async checkPassword(
    u: NonNullable<NonNullable<AuthRequest['identity']>['password']>['user'],
  ): Promise<string> {
    if (!u || typeof u !== 'object')
      throw badRequest("Invalid input for field 'identity/password/user': an object is required.");
    if (typeof u.password !== 'string')
      throw badRequest("Invalid input for field 'identity/password/user/password': a string is required.");
    let user: UserRow | null = null;
    if (typeof u.id === 'string') {
      user = await this.repo.user(u.id);
    } else if (typeof u.name === 'string') {
      const domain = await this.findDomain(u.domain, 'user');
      user = domain ? await this.repo.userByName(domain.id, u.name) : null;
    } else {
      throw badRequest("Invalid input for field 'identity/password/user': 'id' or 'name' is required.");
    }
    if (!user) {
      // Spend the time a real check would take, so the response time does not reveal which users exist.
      await verifyPassword(u.password, await DUMMY_HASH_PROMISE());
      throw unauthorized();
    }
    const failuresOnRecord = await this.lockout.check(user);
    const ok = await verifyPassword(u.password, user.password_hash);
    if (!ok) {
      await this.lockout.failed(user);
      throw unauthorized();
    }
    if (failuresOnRecord) await this.lockout.reset(user.id);
    if (user.password_expires_at && Number(user.password_expires_at) < Date.now())
      throw unauthorized(`The password is expired and needs to be changed for user: ${user.id}.`);
    return user.id;
  }

  private async checkAppCred(ac: NonNullable<AuthRequest['identity']>['application_credential']): Promise<AppCredRow> {
    if (!ac || typeof ac.secret !== 'string')
      throw badRequest("Invalid input for field 'identity/application_credential': 'secret' is required.");
    let row: AppCredRow | null = null;
    if (typeof ac.id === 'string') {
      row = await this.repo.appCred(ac.id);
    } else if (typeof ac.name === 'string' && ac.user) {
      let userId = ac.user.id;
      if (!userId && ac.user.name) {
        const domain = await this.findDomain(ac.user.domain, 'user');
        userId = domain ? (await this.repo.userByName(domain.id, ac.user.name))?.id : undefined;
      }
      if (userId)
        row =
          (await this.repo.db
            .selectFrom('application_credentials')
            .selectAll()
            .where('user_id', '=', userId)
            .where('name', '=', ac.name)
            .executeTakeFirst()) ?? null;
    } else {
      throw badRequest(
        "Invalid input for field 'identity/application_credential': 'id', or 'name' and 'user', is required.",
      );
    }
    if (!row) {
      await verifyPassword(ac.secret, await DUMMY_HASH_PROMISE());
      throw unauthorized();
    }
    // Stricter than Keystone (which applies lockout to passwords only): a secret may be chosen by its user, so
    // wrong secrets count against the owner too, and a locked user's credentials are refused like its password.
    const owner = await this.repo.user(row.user_id);
    if (owner) await this.lockout.check(owner);
    if (!(await verifyPassword(ac.secret, row.secret_hash))) {
      if (owner) await this.lockout.failed(owner);
      throw unauthorized();
    }
    if (row.expires_at && Number(row.expires_at) <= Date.now())
      throw unauthorized('The application credential has expired.');
    return row;
  }

  private async findDomain(ref: { id?: string; name?: string } | undefined, what: string): Promise<DomainRow | null> {
    if (!ref || (typeof ref.id !== 'string' && typeof ref.name !== 'string'))
      throw badRequest(`Invalid input: a domain ('id' or 'name') is required to find a ${what} by name.`);
    return typeof ref.id === 'string' ? this.repo.domain(ref.id) : this.repo.domainByName(ref.name!);
  }

  private async resolveScope(scope: unknown, user: UserRow, payload: TokenPayload): Promise<void> {
    if (scope === undefined || scope === null) {
      // Keystone scopes an unscoped request to the user's default project when the user has a role there.
      if (user.default_project_id) {
        const p = await this.repo.project(user.default_project_id);
        if (p?.enabled && (await this.repo.effectiveRoles(user.id, 'project', p.id)).length) payload.projectId = p.id;
      }
      return;
    }
    if (typeof scope !== 'object' || Array.isArray(scope))
      throw badRequest("Invalid input for field 'scope': an object is required.");
    const s = scope as {
      project?: { id?: string; name?: string; domain?: { id?: string; name?: string } };
      domain?: { id?: string; name?: string };
      system?: { all?: boolean };
    };
    const kinds = ['project', 'domain', 'system', 'OS-TRUST:trust'].filter((k) => k in s);
    if (kinds.length !== 1) throw badRequest('Specify exactly one of project, domain or system as the scope.');
    if (s.project) {
      let project: ProjectRow | null;
      if (typeof s.project.id === 'string') project = await this.repo.project(s.project.id);
      else if (typeof s.project.name === 'string') {
        const d = await this.findDomain(s.project.domain, 'project');
        project = d ? await this.repo.projectByName(d.id, s.project.name) : null;
      } else throw badRequest("Invalid input for field 'scope/project': 'id' or 'name' is required.");
      if (!project) throw unauthorized('Could not find the requested project.');
      payload.projectId = project.id;
    } else if (s.domain) {
      const d = await this.findDomain(s.domain, 'scope');
      if (!d) throw unauthorized('Could not find the requested domain.');
      payload.domainId = d.id;
    } else if (s.system) {
      if (s.system.all !== true)
        throw badRequest('Invalid input for field \'scope/system\': only {"all": true} is supported.');
      payload.system = true;
    } else {
      throw forbidden('Trusts are not supported.');
    }
  }

  // ---------------------------------------------------------------- validate

  /** Full validation; throws TokenError when the token must be treated as nonexistent. */
  async validate(token: string, opts: { allowExpired?: boolean } = {}): Promise<ValidToken> {
    let payload: TokenPayload;
    if (Date.now() - this.lastKeyReload > KEY_MAX_AGE_MS) await this.reloadKeys();
    try {
      payload = decodeToken(token, this.keySource.current());
    } catch (err) {
      // Another replica may have rotated keys: re-read them and retry once.
      if (!(err instanceof TokenError) || !/unknown key/.test(err.message)) throw err;
      await this.reloadKeys();
      payload = decodeToken(token, this.keySource.current());
    }
    if (!opts.allowExpired && payload.expiresAt <= Date.now()) throw new TokenError('token expired');
    await this.repo.sync();
    return this.check(payload, 'validate');
  }

  /** Checks the parts of a token that live in the store: revocations, user, scope, roles, app credential. */
  private async check(payload: TokenPayload, phase: 'issue' | 'validate'): Promise<ValidToken> {
    const fail = (msg: string): never => {
      if (phase === 'issue') throw unauthorized(msg);
      throw new TokenError(msg);
    };
    if (phase === 'validate') {
      for (const ev of await this.repo.revocations()) {
        if (payload.issuedAt > Number(ev.issued_before)) continue;
        if (ev.audit_id && !payload.auditIds.includes(ev.audit_id)) continue;
        if (ev.user_id && ev.user_id !== payload.userId) continue;
        if (ev.project_id && ev.project_id !== payload.projectId) continue;
        if (ev.domain_id && ev.domain_id !== payload.domainId) continue;
        if (ev.app_cred_id && ev.app_cred_id !== payload.appCredId) continue;
        fail('token revoked');
      }
    }
    const user = await this.repo.user(payload.userId);
    if (!user) return fail('Could not find the user.');
    if (!user.enabled) return fail(`User ${user.id} is disabled.`);
    const userDomain = await this.repo.domain(user.domain_id);
    if (!userDomain?.enabled) return fail(`The domain of user ${user.id} is disabled.`);
    const valid: ValidToken = { payload, user, userDomain, roles: [] };
    if (payload.projectId) {
      const project = await this.repo.project(payload.projectId);
      if (!project) return fail('Could not find the project.');
      if (!project.enabled) return fail(`Project ${project.id} is disabled.`);
      const projectDomain = await this.repo.domain(project.domain_id);
      if (!projectDomain?.enabled) return fail(`The domain of project ${project.id} is disabled.`);
      valid.project = project;
      valid.projectDomain = projectDomain;
      valid.roles = await this.repo.effectiveRoles(user.id, 'project', project.id);
    } else if (payload.domainId) {
      const domain = await this.repo.domain(payload.domainId);
      if (!domain) return fail('Could not find the domain.');
      if (!domain.enabled) return fail(`Domain ${domain.id} is disabled.`);
      valid.domain = domain;
      valid.roles = await this.repo.effectiveRoles(user.id, 'domain', domain.id);
    } else if (payload.system) {
      valid.roles = await this.repo.effectiveRoles(user.id, 'system', 'system');
    }
    if (payload.appCredId) {
      const ac = await this.repo.appCred(payload.appCredId);
      if (!ac) return fail('The application credential no longer exists.');
      if (ac.expires_at && Number(ac.expires_at) <= Date.now()) return fail('The application credential has expired.');
      // The token carries the credential's roles that the user still holds on the project.
      const granted = new Set((JSON.parse(ac.roles) as Array<{ id: string }>).map((r) => r.id));
      const expandedGranted = new Set((await this.repo.expandImplied([...granted])).map(([id]) => id));
      valid.roles = valid.roles.filter((r) => expandedGranted.has(r.id));
      valid.appCred = ac;
    }
    const scoped = payload.projectId || payload.domainId || payload.system;
    if (scoped && valid.roles.length === 0) {
      const where = payload.projectId
        ? `project ${payload.projectId}`
        : payload.domainId
          ? `domain ${payload.domainId}`
          : 'the system';
      return fail(`User ${user.id} has no access to ${where}.`);
    }
    return valid;
  }

  /** The TokenValidator every protected route calls: a 401 for anything but a valid token. */
  async validateForRequest(token: string): Promise<AuthContext> {
    let v: ValidToken;
    try {
      v = await this.validate(token);
    } catch (err) {
      if (err instanceof TokenError || err instanceof SyntaxError)
        throw unauthorized('The request you have made requires authentication.');
      throw err;
    }
    return toAuthContext(token, v);
  }

  /** Validation of a subject token by a caller (GET/HEAD /v3/auth/tokens): invalid → 404. */
  async validateSubject(token: string, allowExpired: boolean): Promise<ValidToken> {
    try {
      return await this.validate(token, { allowExpired });
    } catch (err) {
      if (err instanceof TokenError || err instanceof SyntaxError)
        throw notFound('Failed to validate token', 'TokenNotFound');
      if (err instanceof ApiError) throw err;
      throw err;
    }
  }

  /** Revokes one token (its audit chain): the token and every token rescoped from it. */
  async revoke(token: ValidToken): Promise<void> {
    await this.repo.revoke(
      { audit_id: token.payload.auditIds[0], user_id: null, project_id: null, domain_id: null, app_cred_id: null },
      this.ttlMs,
    );
  }

  // ---------------------------------------------------------------- render

  async render(v: ValidToken, withCatalog: boolean): Promise<Record<string, unknown>> {
    const p = v.payload;
    const token: Record<string, unknown> = {
      methods: p.methods,
      user: {
        domain: { id: v.userDomain.id, name: v.userDomain.name },
        id: v.user.id,
        name: v.user.name,
        password_expires_at: v.user.password_expires_at ? keystoneTime(Number(v.user.password_expires_at)) : null,
      },
      audit_ids: p.auditIds,
      expires_at: keystoneTime(p.expiresAt),
      issued_at: keystoneTime(p.issuedAt),
    };
    if (v.project) {
      token.project = {
        domain: { id: v.projectDomain!.id, name: v.projectDomain!.name },
        id: v.project.id,
        name: v.project.name,
      };
      token.is_domain = false;
    } else if (v.domain) {
      token.domain = { id: v.domain.id, name: v.domain.name };
    } else if (p.system) {
      token.system = { all: true };
    }
    if (v.project || v.domain || p.system) {
      token.roles = v.roles.map((r) =>
        r.domain_id ? { id: r.id, name: r.name, domain_id: r.domain_id } : { id: r.id, name: r.name },
      );
      if (withCatalog) token.catalog = await this.catalog();
    }
    if (v.appCred) {
      token.application_credential = { id: v.appCred.id, name: v.appCred.name, restricted: !v.appCred.unrestricted };
    }
    return { token };
  }
}

export function toAuthContext(token: string, v: ValidToken): AuthContext {
  const roles = v.roles.map((r) => r.name);
  return {
    token,
    userId: v.user.id,
    userName: v.user.name,
    userDomainId: v.userDomain.id,
    userDomainName: v.userDomain.name,
    projectId: v.project?.id,
    projectName: v.project?.name,
    projectDomainId: v.projectDomain?.id,
    projectDomainName: v.projectDomain?.name,
    domainId: v.domain?.id,
    domainName: v.domain?.name,
    systemScope: v.payload.system ? 'all' : undefined,
    roles,
    roleIds: v.roles.map((r) => r.id),
    isAdmin: roles.includes('admin'),
    appCredentialId: v.payload.appCredId,
    methods: v.payload.methods,
    auditIds: v.payload.auditIds,
    issuedAt: v.payload.issuedAt,
    expiresAt: v.payload.expiresAt,
  };
}

/** A hash of a random string at full cost, so failures for unknown users take as long as wrong passwords. */
let dummyHash: Promise<string> | null = null;
const DUMMY_HASH_PROMISE = () => {
  dummyHash ??= hashPassword(randomBytes(16).toString('hex'));
  return dummyHash;
};
