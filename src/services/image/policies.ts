/**
 * Glance's default policies (`glance/policies/image.py`, `member.py`; the secure-RBAC defaults), in the shared
 * policy engine's language. The target of an image rule is Glance's ImageTarget: `project_id` and `owner` are the
 * image's owner, `visibility` its visibility and `member_id` the caller's project when it is a member of the image.
 */
const ADMIN = 'rule:context_is_admin';
const PROJECT_MEMBER = 'role:member and project_id:%(project_id)s';
const PROJECT_READER = 'role:reader and project_id:%(project_id)s';
const READER_OR_SHARED = `role:reader and (project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s)`;
const MEMBER_OR_SHARED = `role:member and (project_id:%(project_id)s or project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s)`;

export const imagePolicies: Record<string, string> = {
  context_is_admin: 'role:admin',

  add_image: `${ADMIN} or (role:member and project_id:%(project_id)s and project_id:%(owner)s)`,
  get_image: `${ADMIN} or (${READER_OR_SHARED})`,
  get_images: `${ADMIN} or (${PROJECT_READER})`,
  modify_image: `${ADMIN} or (${PROJECT_MEMBER})`,
  delete_image: `${ADMIN} or (${PROJECT_MEMBER})`,
  publicize_image: 'role:admin',
  communitize_image: `${ADMIN} or (${PROJECT_MEMBER})`,
  upload_image: `${ADMIN} or (${PROJECT_MEMBER})`,
  download_image: `${ADMIN} or (${MEMBER_OR_SHARED})`,
  deactivate: ADMIN,
  reactivate: ADMIN,

  add_member: `${ADMIN} or (${PROJECT_MEMBER})`,
  delete_member: `${ADMIN} or (${PROJECT_MEMBER})`,
  get_member: `${ADMIN} or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))`,
  get_members: `${ADMIN} or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))`,
  modify_member: `${ADMIN} or (role:member and project_id:%(member_id)s)`,
};
