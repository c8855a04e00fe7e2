import type { IdentityRepo } from '../repo.js';
import { AppCredRepo } from './app-creds.js';
import { AssignmentRepo } from './assignments.js';
import { CatalogRepo } from './catalog.js';
import { DomainRepo } from './domains.js';
import { GroupRepo } from './groups.js';
import { ProjectRepo } from './projects.js';
import { RoleRepo } from './roles.js';
import { UserRepo } from './users.js';

/** The identity routes' data access by resource, all writing through `IdentityRepo.write` (one revision, one cache). */
export interface IdentityRepos {
  domains: DomainRepo;
  projects: ProjectRepo;
  users: UserRepo;
  groups: GroupRepo;
  roles: RoleRepo;
  assignments: AssignmentRepo;
  catalog: CatalogRepo;
  appCreds: AppCredRepo;
}

export function identityRepos(repo: IdentityRepo): IdentityRepos {
  return {
    domains: new DomainRepo(repo),
    projects: new ProjectRepo(repo),
    users: new UserRepo(repo),
    groups: new GroupRepo(repo),
    roles: new RoleRepo(repo),
    assignments: new AssignmentRepo(repo),
    catalog: new CatalogRepo(repo),
    appCreds: new AppCredRepo(repo),
  };
}
